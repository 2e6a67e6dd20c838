// W2A8 with AVX-512 VNNI: one vpdpbusd multiplies 16 rows × 4 inputs of 2-bit codes (unsigned)
// by 4 broadcast int8 activations and adds them into 16 int32 sums.

#include <immintrin.h>

#include <cstring>

#include "cc/kernels/a8_isa.h"
#include "cc/kernels/a8_layout.h"

namespace tvlm {
namespace internal {
namespace {

inline __m512i Broadcast4(const int8_t* q) {
  int32_t v;
  std::memcpy(&v, q, 4);
  return _mm512_set1_epi32(v);
}

// One 16-row block against activation rows [i0, i0 + MR). Each row keeps one accumulator per
// shift g, so even MR = 1 has 4 independent vpdpbusd chains in flight.
template <int MR>
void Tile(const A8Layout& l, const uint8_t* block, const A8Rows& rows, size_t i0, __mmask16 mask,
          float* y) {
  __m512i acc[MR][4];
  #pragma GCC unroll 4
  for (int i = 0; i < MR; ++i) {
    #pragma GCC unroll 4
    for (int g = 0; g < 4; ++g) acc[i][g] = _mm512_setzero_si512();
  }
  const __m512i three = _mm512_set1_epi8(3);
  const int8_t* q = rows.q + i0 * rows.stride;
  for (size_t c = 0; c < l.chunks; ++c, block += A8Layout::kChunkBytes, q += A8Layout::kChunk) {
    const __m512i v = _mm512_loadu_si512(block);
    #pragma GCC unroll 4
    for (int g = 0; g < 4; ++g) {
      // 16-bit shifts move bits across bytes, but the mask keeps only each byte's own low pair.
      const __m512i codes = _mm512_and_si512(g == 0 ? v : _mm512_srli_epi16(v, 2 * g), three);
      #pragma GCC unroll 4
      for (int i = 0; i < MR; ++i) {
        acc[i][g] = _mm512_dpbusd_epi32(acc[i][g], codes, Broadcast4(q + i * rows.stride + 4 * g));
      }
    }
  }
  #pragma GCC unroll 4
  for (int i = 0; i < MR; ++i) {
    __m512i total = _mm512_add_epi32(_mm512_add_epi32(acc[i][0], acc[i][1]),
                                     _mm512_add_epi32(acc[i][2], acc[i][3]));
    total = _mm512_sub_epi32(total, _mm512_set1_epi32(rows.sum[i0 + i]));
    const __m512 out = _mm512_mul_ps(_mm512_cvtepi32_ps(total), _mm512_set1_ps(rows.scale[i0 + i]));
    _mm512_mask_storeu_ps(y + (i0 + i) * l.n, mask, out);
  }
}

}  // namespace

void A8DotAvx512Vnni(const A8Layout& layout, const uint8_t* packed, const A8Rows& rows, size_t m,
                     size_t row_begin, size_t row_end, float* y) {
  for (size_t r0 = row_begin; r0 < row_end; r0 += A8Layout::kRows) {
    const size_t valid = row_end - r0;
    const __mmask16 mask = valid >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << valid) - 1);
    const uint8_t* block = packed + (r0 / A8Layout::kRows) * layout.block_bytes();
    // The block (K/4 bytes) stays in L1 while every activation row passes over it.
    size_t i = 0;
    for (; i + 4 <= m; i += 4) Tile<4>(layout, block, rows, i, mask, y + r0);
    for (; i < m; ++i) Tile<1>(layout, block, rows, i, mask, y + r0);
  }
}

}  // namespace internal
}  // namespace tvlm
