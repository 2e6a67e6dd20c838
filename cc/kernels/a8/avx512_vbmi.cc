// W2A8 over the dense 1.6-bit layout (A8DenseLayout, 5 weights per byte) with AVX-512 VBMI + VNNI.
// Decode streams 20 % fewer bytes than the 2-bit layout; each 64-byte chunk is turned back into the
// 2-bit form by two 256-entry byte lookups (vpermi2b on each half of the table, a blend on the byte's
// top bit), then multiplied exactly as in avx512.cc.

#include <immintrin.h>

#include <array>
#include <cstdint>
#include <cstring>

#include "cc/kernels/a8/isa.h"
#include "cc/kernels/a8/layout.h"

namespace tvlm {
namespace internal {
namespace {

// byte -> the A8Layout byte of its digits 0-3 (digit g in bits 2g..2g+1), and -> its digit 4.
struct Tables {
  alignas(64) std::array<uint8_t, 256> low4;
  alignas(64) std::array<uint8_t, 256> digit4;
};

Tables MakeTables() {
  Tables t{};
  for (unsigned byte = 0; byte < 256; ++byte) {
    unsigned v = byte < 243 ? byte : 121;  // 243+ never occurs (121: five zero weights)
    unsigned packed = 0;
    for (unsigned g = 0; g < 4; ++g, v /= 3) packed |= (v % 3) << (2 * g);
    t.low4[byte] = static_cast<uint8_t>(packed);
    t.digit4[byte] = static_cast<uint8_t>(v);
  }
  return t;
}

struct Lookup {
  __m512i low[4], digit[4];  // each table in four 64-byte quarters
};

Lookup LoadLookup() {
  static const Tables tables = MakeTables();
  Lookup l;
  for (int i = 0; i < 4; ++i) {
    l.low[i] = _mm512_load_si512(tables.low4.data() + 64 * i);
    l.digit[i] = _mm512_load_si512(tables.digit4.data() + 64 * i);
  }
  return l;
}

inline __m512i Table(const __m512i* quarters, __m512i v, __mmask64 high) {
  return _mm512_mask_blend_epi8(high, _mm512_permutex2var_epi8(quarters[0], v, quarters[1]),
                                _mm512_permutex2var_epi8(quarters[2], v, quarters[3]));
}

inline __m512i Broadcast4(const int8_t* q) {
  int32_t v;
  std::memcpy(&v, q, 4);
  return _mm512_set1_epi32(v);
}

inline __mmask16 RowMask(size_t valid) {
  return valid >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << valid) - 1);
}

constexpr size_t kPrefetchBytes = 8192;  // as avx512.cc (measured there)

// One 16-row block against activation rows [i0, i0 + MR). A single row masks the codes in place
// (accumulator g ends at 4^g times its sum, as avx512.cc's decode path) and gives the fifth digit an
// accumulator of its own, so no vpdpbusd chain is longer than one per chunk; several rows shift the
// codes down once and share them.
template <int MR>
void Tile(const A8DenseLayout& l, const Lookup& lut, const uint8_t* block, const A8Rows& rows,
          size_t i0, size_t r0, size_t row_end, float* y) {
  constexpr bool kInPlace = MR == 1;
  constexpr int S = kInPlace ? 5 : 1;  // the fifth: digit 4
  __m512i acc[MR][S];
  for (int i = 0; i < MR; ++i) {
    for (int s = 0; s < S; ++s) acc[i][s] = _mm512_setzero_si512();
  }
  const __m512i three = _mm512_set1_epi8(3);
  const int8_t* q = rows.q + i0 * rows.stride;
  for (size_t c = 0; c < l.chunks; ++c, block += A8DenseLayout::kChunkBytes, q += A8DenseLayout::kChunk) {
    if (kInPlace) _mm_prefetch(reinterpret_cast<const char*>(block) + kPrefetchBytes, _MM_HINT_T0);
    const __m512i v = _mm512_loadu_si512(block);
    const __mmask64 high = _mm512_movepi8_mask(v);
    const __m512i low4 = Table(lut.low, v, high);
    const __m512i digit4 = Table(lut.digit, v, high);
    #pragma GCC unroll 4
    for (int g = 0; g < 4; ++g) {
      const __m512i codes = kInPlace ? _mm512_and_si512(low4, _mm512_set1_epi8(static_cast<char>(3 << (2 * g))))
                                     : _mm512_and_si512(g == 0 ? low4 : _mm512_srli_epi16(low4, 2 * g), three);
      #pragma GCC unroll 4
      for (int i = 0; i < MR; ++i) {
        acc[i][g % S] = _mm512_dpbusd_epi32(acc[i][g % S], codes, Broadcast4(q + i * rows.stride + 4 * g));
      }
    }
    #pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) {
      acc[i][S - 1] = _mm512_dpbusd_epi32(acc[i][S - 1], digit4, Broadcast4(q + i * rows.stride + 16));
    }
  }
  for (int i = 0; i < MR; ++i) {
    __m512i total = acc[i][0];
    for (int s = 1; s < 4 && s < S; ++s) total = _mm512_add_epi32(total, _mm512_srai_epi32(acc[i][s], 2 * s));
    if (S == 5) total = _mm512_add_epi32(total, acc[i][S - 1]);
    total = _mm512_sub_epi32(total, _mm512_set1_epi32(rows.sum[i0 + i]));
    const __m512 out = _mm512_mul_ps(_mm512_cvtepi32_ps(total), _mm512_set1_ps(rows.scale[i0 + i]));
    _mm512_mask_storeu_ps(y + (i0 + i) * l.n + r0, RowMask(row_end - r0), out);
  }
}

}  // namespace

void A8DenseDotAvx512Vbmi(const A8DenseLayout& layout, const uint8_t* packed, const A8Rows& rows,
                          size_t m, size_t row_begin, size_t row_end, float* y) {
  const Lookup lut = LoadLookup();
  for (size_t r0 = row_begin; r0 < row_end; r0 += A8DenseLayout::kRows) {
    const uint8_t* block = layout.block(packed, r0);
    size_t i = 0;
    for (; i + 4 <= m; i += 4) Tile<4>(layout, lut, block, rows, i, r0, row_end, y);
    for (; i < m; ++i) Tile<1>(layout, lut, block, rows, i, r0, row_end, y);
  }
}

}  // namespace internal
}  // namespace tvlm
