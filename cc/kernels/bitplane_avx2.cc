// AVX2 bit-plane sums: each weight bit is shifted into the sign bit of its lane, and blendv
// (which reads only sign bits) keeps x where the bit is set.

#include <immintrin.h>

#include "cc/kernels/bitplane_layout.h"

namespace tvlm {
namespace internal {
namespace {

struct Avx2 {
  template <int R, int P>
  static void Sums(const float* x, const uint32_t* w, size_t words, float (*sums)[2]) {
    // Lane l of sub-block s tests bit 8s + l: shift it left by 31 - (8s + l).
    const __m256i base = _mm256_setr_epi32(31, 30, 29, 28, 27, 26, 25, 24);
    const __m256 zero = _mm256_setzero_ps();
    __m256 acc[R][P];
    for (int r = 0; r < R; ++r) {
      for (int p = 0; p < P; ++p) acc[r][p] = zero;
    }
    for (size_t d = 0; d < words; ++d, x += 32) {
      __m256i bits[R][P];
      for (int r = 0; r < R; ++r) {
        for (int p = 0; p < P; ++p) bits[r][p] = _mm256_set1_epi32(w[(r * words + d) * P + p]);
      }
      for (int s = 0; s < 4; ++s) {
        const __m256 xv = _mm256_loadu_ps(x + 8 * s);
        const __m256i shift = _mm256_sub_epi32(base, _mm256_set1_epi32(8 * s));
        for (int r = 0; r < R; ++r) {
          for (int p = 0; p < P; ++p) {
            const __m256 m = _mm256_castsi256_ps(_mm256_sllv_epi32(bits[r][p], shift));
            acc[r][p] = _mm256_add_ps(acc[r][p], _mm256_blendv_ps(zero, xv, m));
          }
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      for (int p = 0; p < P; ++p) {
        const __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc[r][p]),
                                    _mm256_extractf128_ps(acc[r][p], 1));
        const __m128 q = _mm_add_ps(h, _mm_movehl_ps(h, h));
        sums[r][p] = _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)));
      }
    }
  }
};

}  // namespace

void BitPlaneDotAvx2(const BitPlaneArgs& a, size_t m, size_t begin, size_t end, float* y) {
  BitPlaneLoop<Avx2>(a, m, begin, end, y);
}

}  // namespace internal
}  // namespace tvlm
