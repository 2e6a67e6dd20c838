// The int8-weight loop with AVX2: vpmaddubsw multiplies unsigned by signed bytes and adds pairs into
// int16, which saturates for (q + 128) · w. Instead |w| (unsigned) meets q carrying w's sign
// (vpsignb), so a pair is at most 2 · 128 · 127 < 2^15 and the sums stay exact; vpmaddwd then adds
// pairs of those into int32. K past the last whole 32 bytes is summed in scalar code. One weight row at
// a time, front to back, against up to 4 activation rows (why: w8/avx512.cc).

#include <immintrin.h>

#include "cc/kernels/a8/layout.h"
#include "cc/kernels/w8/isa.h"

namespace tvlm {
namespace internal {
namespace {

inline int32_t Sum8(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

template <int MR>
void Row(const int8_t* wr, size_t k, const A8Rows& rows, size_t i0, size_t r, size_t n, float* y) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc[MR];
  for (int i = 0; i < MR; ++i) acc[i] = _mm256_setzero_si256();
  const int8_t* q = rows.q + i0 * rows.stride;
  const size_t whole = k / 32 * 32;
  for (size_t c = 0; c < whole; c += 32) {
    const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr + c));
    const __m256i wabs = _mm256_abs_epi8(wv);
    for (int i = 0; i < MR; ++i) {
      const __m256i qv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + i * rows.stride + c));
      const __m256i pairs = _mm256_maddubs_epi16(wabs, _mm256_sign_epi8(qv, wv));
      acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(pairs, ones));
    }
  }
  for (int i = 0; i < MR; ++i) {
    const int8_t* qi = q + i * rows.stride;
    int32_t sum = Sum8(acc[i]);
    for (size_t c = whole; c < k; ++c) sum += int32_t{qi[c]} * int32_t{wr[c]};
    y[(i0 + i) * n + r] = rows.scale[i0 + i] * static_cast<float>(sum);
  }
}

}  // namespace

void W8DotAvx2(const int8_t* w, size_t k, const int32_t*, const A8Rows& rows, size_t m, size_t row_begin,
               size_t row_end, size_t n, float* y) {
  for (size_t r = row_begin; r < row_end; ++r) {
    const int8_t* wr = w + r * k;
    size_t i = 0;
    for (; i + 4 <= m; i += 4) Row<4>(wr, k, rows, i, r, n, y);
    switch (m - i) {
      case 3: Row<3>(wr, k, rows, i, r, n, y); break;
      case 2: Row<2>(wr, k, rows, i, r, n, y); break;
      case 1: Row<1>(wr, k, rows, i, r, n, y); break;
      default: break;
    }
  }
}

}  // namespace internal
}  // namespace tvlm
