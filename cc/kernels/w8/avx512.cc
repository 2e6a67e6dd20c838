// The int8-weight loop with AVX-512 VNNI: vpdpbusd multiplies 64 unsigned bytes by 64 signed bytes and
// adds each group of 4 products into one of 16 int32 lanes. Weights are the signed operand as they
// are; activations q become unsigned as q + 128 (one XOR), which adds 128 · Σ w to every sum, taken
// back with the row's precomputed sum (AVX-512 has no byte sign instruction to do otherwise).
//
// One weight row at a time, read front to back, against up to 4 activation rows: streaming rows in
// order is what reaches the memory's bandwidth. Interleaving the chunks of even 2 rows (576 bytes
// apart, as a register tile over output rows would) took 2.6 ms instead of 1.0-1.2 for SmolLM2's LM
// head (49152 x 576, 1 thread, Zen 5). No software prefetch: 2 KB ahead 1.13-1.23 ms, 8 KB 1.50, none
// 1.12 (the hardware prefetcher follows one stream; a plain read of the same bytes takes 1.0).
// One activation row (decode) takes rows four at a time, still one after the other, with two
// accumulator chains each and one reduction of the four sums: 1.16-1.27x the read floor against
// 1.26-1.34x with a chain and a reduction per row (kernel_bench, same run).

#include <immintrin.h>

#include "cc/kernels/a8/layout.h"
#include "cc/kernels/w8/isa.h"

namespace tvlm {
namespace internal {
namespace {

template <int MR>
void Row(const int8_t* wr, size_t k, int32_t row_sum, const A8Rows& rows, size_t i0, size_t r, size_t n,
         float* y) {
  const __m512i flip = _mm512_set1_epi8(-128);
  __m512i acc[MR];
  for (int i = 0; i < MR; ++i) acc[i] = _mm512_setzero_si512();
  const int8_t* q = rows.q + i0 * rows.stride;
  size_t c = 0;
  for (; c + 64 <= k; c += 64) {
    const __m512i wv = _mm512_loadu_si512(wr + c);
    for (int i = 0; i < MR; ++i) {
      const __m512i a = _mm512_xor_si512(_mm512_loadu_si512(q + i * rows.stride + c), flip);
      acc[i] = _mm512_dpbusd_epi32(acc[i], a, wv);
    }
  }
  if (c < k) {  // the last partial chunk: a masked load never reads past the row (nor the matrix)
    const __m512i wv = _mm512_maskz_loadu_epi8((__mmask64{1} << (k - c)) - 1, wr + c);
    for (int i = 0; i < MR; ++i) {
      const __m512i a = _mm512_xor_si512(_mm512_loadu_si512(q + i * rows.stride + c), flip);
      acc[i] = _mm512_dpbusd_epi32(acc[i], a, wv);
    }
  }
  for (int i = 0; i < MR; ++i) {
    const int32_t sum = _mm512_reduce_add_epi32(acc[i]) - 128 * row_sum;
    y[(i0 + i) * n + r] = rows.scale[i0 + i] * static_cast<float>(sum);
  }
}

// The 4 horizontal sums of a, b, c, d as one vector [Σa, Σb, Σc, Σd].
inline __m128i Sum4(__m512i a, __m512i b, __m512i c, __m512i d) {
  const __m512i ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
  const __m512i cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
  const __m512i abcd = _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
  const __m256i half = _mm256_add_epi32(_mm512_extracti64x4_epi64(abcd, 0), _mm512_extracti64x4_epi64(abcd, 1));
  return _mm_add_epi32(_mm256_castsi256_si128(half), _mm256_extracti128_si256(half, 1));
}

// Four consecutive weight rows against one activation row, each row read front to back before the next;
// their four sums are reduced together.
void FourRows(const int8_t* w, size_t k, const int32_t* row_sums, const A8Rows& rows, size_t r, float* y) {
  const __m512i flip = _mm512_set1_epi8(-128);
  __m512i acc[4];
  for (int b = 0; b < 4; ++b) {
    const int8_t* wr = w + (r + b) * k;
    __m512i sum = _mm512_setzero_si512(), odd = _mm512_setzero_si512();  // two chains: half the latency
    size_t c = 0;
    for (; c + 128 <= k; c += 128) {
      sum = _mm512_dpbusd_epi32(sum, _mm512_xor_si512(_mm512_loadu_si512(rows.q + c), flip),
                                _mm512_loadu_si512(wr + c));
      odd = _mm512_dpbusd_epi32(odd, _mm512_xor_si512(_mm512_loadu_si512(rows.q + c + 64), flip),
                                _mm512_loadu_si512(wr + c + 64));
    }
    for (; c + 64 <= k; c += 64) {
      sum = _mm512_dpbusd_epi32(sum, _mm512_xor_si512(_mm512_loadu_si512(rows.q + c), flip),
                                _mm512_loadu_si512(wr + c));
    }
    if (c < k) {
      odd = _mm512_dpbusd_epi32(odd, _mm512_xor_si512(_mm512_loadu_si512(rows.q + c), flip),
                                _mm512_maskz_loadu_epi8((__mmask64{1} << (k - c)) - 1, wr + c));
    }
    acc[b] = _mm512_add_epi32(sum, odd);
  }
  const __m128i sums = _mm_sub_epi32(Sum4(acc[0], acc[1], acc[2], acc[3]),
                                     _mm_slli_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row_sums + r)), 7));
  _mm_storeu_ps(y + r, _mm_mul_ps(_mm_set1_ps(rows.scale[0]), _mm_cvtepi32_ps(sums)));
}

}  // namespace

void W8DotAvx512Vnni(const int8_t* w, size_t k, const int32_t* row_sums, const A8Rows& rows, size_t m,
                     size_t row_begin, size_t row_end, size_t n, float* y) {
  size_t r = row_begin;
  if (m == 1) {
    for (; r + 4 <= row_end; r += 4) FourRows(w, k, row_sums, rows, r, y);
  }
  for (; r < row_end; ++r) {
    const int8_t* wr = w + r * k;
    size_t i = 0;
    for (; i + 4 <= m; i += 4) Row<4>(wr, k, row_sums[r], rows, i, r, n, y);
    switch (m - i) {
      case 3: Row<3>(wr, k, row_sums[r], rows, i, r, n, y); break;
      case 2: Row<2>(wr, k, row_sums[r], rows, i, r, n, y); break;
      case 1: Row<1>(wr, k, row_sums[r], rows, i, r, n, y); break;
      default: break;
    }
  }
}

}  // namespace internal
}  // namespace tvlm
