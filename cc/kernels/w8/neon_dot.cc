// The int8-weight loop with the ARMv8.2 dot product: vdotq_s32 adds, per 32-bit lane, 4 products of
// signed bytes, so weights and activations go in as they are. K past the last whole 16 bytes is summed
// in scalar code. One weight row at a time, front to back, against up to 4 activation rows (why:
// w8/avx512.cc). Picked at run time only where getauxval(AT_HWCAP) reports ASIMDDP.

#if !defined(__ARM_FEATURE_DOTPROD)
#error "w8/neon_dot.cc needs the dot-product extension (-march=armv8.2-a+dotprod)"
#endif

#include <arm_neon.h>

#include "cc/kernels/a8/layout.h"
#include "cc/kernels/w8/isa.h"

namespace tvlm {
namespace internal {
namespace {

template <int MR>
void Row(const int8_t* wr, size_t k, const A8Rows& rows, size_t i0, size_t r, size_t n, float* y) {
  int32x4_t acc[MR];
  for (int i = 0; i < MR; ++i) acc[i] = vdupq_n_s32(0);
  const int8_t* q = rows.q + i0 * rows.stride;
  const size_t whole = k / 16 * 16;
  for (size_t c = 0; c < whole; c += 16) {
    const int8x16_t wv = vld1q_s8(wr + c);
    for (int i = 0; i < MR; ++i) acc[i] = vdotq_s32(acc[i], wv, vld1q_s8(q + i * rows.stride + c));
  }
  for (int i = 0; i < MR; ++i) {
    const int8_t* qi = q + i * rows.stride;
    int32_t sum = vaddvq_s32(acc[i]);
    for (size_t c = whole; c < k; ++c) sum += int32_t{qi[c]} * int32_t{wr[c]};
    y[(i0 + i) * n + r] = rows.scale[i0 + i] * static_cast<float>(sum);
  }
}

}  // namespace

void W8DotNeonDot(const int8_t* w, size_t k, const int32_t*, const A8Rows& rows, size_t m, size_t row_begin,
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
