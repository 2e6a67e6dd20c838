// W2A8 with AVX2: vpmaddubsw multiplies 8 rows × 4 inputs of 2-bit codes (unsigned) by 4 broadcast
// int8 activations into pairwise int16 sums (at most 2 · 2 · 127, no saturation); four shifts'
// worth are added in int16 (at most 2032) before vpmaddwd widens them to per-row int32 sums.

#include <immintrin.h>

#include <cstring>

#include "cc/kernels/a8/isa.h"
#include "cc/kernels/a8/layout.h"

namespace tvlm {
namespace internal {
namespace {

// A single activation row (decode) streams the weights once: prefetching this far ahead keeps enough
// lines in flight for one core (same measurement as avx512.cc's).
constexpr size_t kPrefetchBytes = 8192;

inline __m256i Broadcast4(const int8_t* q) {
  int32_t v;
  std::memcpy(&v, q, 4);
  return _mm256_set1_epi32(v);
}

// One 16-row block (two 8-row halves) against activation rows [i0, i0 + MR).
template <int MR>
void Tile(const A8Layout& l, const uint8_t* block, const A8Rows& rows, size_t i0, size_t valid,
          float* y) {
  __m256i acc[MR][2];
  #pragma GCC unroll 4
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_si256();
  const __m256i three = _mm256_set1_epi8(3);
  const __m256i ones = _mm256_set1_epi16(1);
  const int8_t* q = rows.q + i0 * rows.stride;
  for (size_t c = 0; c < l.chunks; ++c, block += A8Layout::kChunkBytes, q += A8Layout::kChunk) {
    if (MR == 1) _mm_prefetch(reinterpret_cast<const char*>(block) + kPrefetchBytes, _MM_HINT_T0);
    #pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 32 * h));
      __m256i codes[4];
      #pragma GCC unroll 4
      for (int g = 0; g < 4; ++g) {
        codes[g] = _mm256_and_si256(g == 0 ? v : _mm256_srli_epi16(v, 2 * g), three);
      }
      #pragma GCC unroll 4
      for (int i = 0; i < MR; ++i) {
        const int8_t* qi = q + i * rows.stride;
        __m256i pairs = _mm256_maddubs_epi16(codes[0], Broadcast4(qi));
        #pragma GCC unroll 3
        for (int g = 1; g < 4; ++g) {
          pairs = _mm256_add_epi16(pairs, _mm256_maddubs_epi16(codes[g], Broadcast4(qi + 4 * g)));
        }
        acc[i][h] = _mm256_add_epi32(acc[i][h], _mm256_madd_epi16(pairs, ones));
      }
    }
  }
  #pragma GCC unroll 4
  for (int i = 0; i < MR; ++i) {
    const __m256i sum = _mm256_set1_epi32(rows.sum[i0 + i]);
    const __m256 scale = _mm256_set1_ps(rows.scale[i0 + i]);
    float out[16];
    #pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      const __m256i total = _mm256_sub_epi32(acc[i][h], sum);
      _mm256_storeu_ps(out + 8 * h, _mm256_mul_ps(_mm256_cvtepi32_ps(total), scale));
    }
    std::memcpy(y + (i0 + i) * l.n, out, valid * sizeof(float));
  }
}

}  // namespace

void A8DotAvx2(const A8Layout& layout, const uint8_t* packed, const A8Rows& rows, size_t m,
               size_t row_begin, size_t row_end, float* y) {
  for (size_t r0 = row_begin; r0 < row_end; r0 += A8Layout::kRows) {
    const size_t valid = row_end - r0 < A8Layout::kRows ? row_end - r0 : A8Layout::kRows;
    const uint8_t* block = layout.block(packed, r0);
    size_t i = 0;
    for (; i + 4 <= m; i += 4) Tile<4>(layout, block, rows, i, valid, y + r0);
    for (; i < m; ++i) Tile<1>(layout, block, rows, i, valid, y + r0);
  }
}

}  // namespace internal
}  // namespace tvlm
