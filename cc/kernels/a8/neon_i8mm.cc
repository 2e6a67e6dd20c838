// W2A8 with the Armv8.6 int8 matrix-multiply extension (i8mm; Cortex-A510/A710/X2, Neoverse V1/N2
// and later): vmmlaq_s32 multiplies a 2×8 block of activations by a 2×8 block of codes into a 2×2
// block of int32 sums — 32 multiply-adds an instruction, twice sdot's 16 — so pairs of activation
// rows (prefill) go through it. A quarter of a chunk holds rows 4p..4p+3 with inputs 4g..4g+3 of
// pair g in each 32-bit lane (layout.h); zipping the lanes of pairs 0 and 1 (2 and 3) gives each row's
// 8 consecutive inputs, the operand vmmlaq_s32 wants. A single row (decode, or the odd last one)
// goes to the dot-product kernel, which every i8mm core also has. Picked at run time only where
// getauxval(AT_HWCAP2) reports I8MM and AT_HWCAP ASIMDDP (matmul.cc).

#if !defined(__ARM_FEATURE_MATMUL_INT8)
#error "a8/neon_i8mm.cc needs the int8 matrix-multiply extension (-march=armv8.2-a+dotprod+i8mm)"
#endif

#include <arm_neon.h>

#include "cc/kernels/a8/isa.h"
#include "cc/kernels/a8/layout.h"

namespace tvlm {
namespace internal {
namespace {

// One 16-row block against activation rows i0, i0 + 1.
void RowPair(const A8Layout& l, const uint8_t* block, const A8Rows& rows, size_t i0, size_t valid,
             float* y) {
  // acc[p][h] = [row i0 · w(4p + 2h), row i0 · w(4p + 2h + 1), row i0+1 · w(4p + 2h), row i0+1 · ...].
  int32x4_t acc[4][2];
  for (int p = 0; p < 4; ++p) acc[p][0] = acc[p][1] = vdupq_n_s32(0);
  const uint8x16_t three = vdupq_n_u8(3);
  const int8_t* q0 = rows.q + i0 * rows.stride;
  const int8_t* q1 = q0 + rows.stride;
  for (size_t c = 0; c < l.chunks; ++c, block += A8Layout::kChunkBytes) {
    const size_t at = c * A8Layout::kChunk;
    const int8x16_t a_lo = vcombine_s8(vld1_s8(q0 + at), vld1_s8(q1 + at));          // inputs 0-7
    const int8x16_t a_hi = vcombine_s8(vld1_s8(q0 + at + 8), vld1_s8(q1 + at + 8));  // inputs 8-15
    for (int p = 0; p < 4; ++p) {
      const uint8x16_t v = vld1q_u8(block + 16 * p);
      const int32x4_t c0 = vreinterpretq_s32_u8(vandq_u8(v, three));
      const int32x4_t c1 = vreinterpretq_s32_u8(vandq_u8(vshrq_n_u8(v, 2), three));
      const int32x4_t c2 = vreinterpretq_s32_u8(vandq_u8(vshrq_n_u8(v, 4), three));
      const int32x4_t c3 = vreinterpretq_s32_u8(vshrq_n_u8(v, 6));
      // Bytes 0-7: one row's inputs 0-7 (or 8-15), bytes 8-15: the next row's.
      acc[p][0] = vmmlaq_s32(acc[p][0], a_lo, vreinterpretq_s8_s32(vzip1q_s32(c0, c1)));
      acc[p][0] = vmmlaq_s32(acc[p][0], a_hi, vreinterpretq_s8_s32(vzip1q_s32(c2, c3)));
      acc[p][1] = vmmlaq_s32(acc[p][1], a_lo, vreinterpretq_s8_s32(vzip2q_s32(c0, c1)));
      acc[p][1] = vmmlaq_s32(acc[p][1], a_hi, vreinterpretq_s8_s32(vzip2q_s32(c2, c3)));
    }
  }
  for (int i = 0; i < 2; ++i) {
    const int32x4_t sum = vdupq_n_s32(rows.sum[i0 + i]);
    const float32x4_t scale = vdupq_n_f32(rows.scale[i0 + i]);
    float out[16];
    for (int p = 0; p < 4; ++p) {
      const int32x4_t total = i == 0 ? vcombine_s32(vget_low_s32(acc[p][0]), vget_low_s32(acc[p][1]))
                                     : vcombine_s32(vget_high_s32(acc[p][0]), vget_high_s32(acc[p][1]));
      vst1q_f32(out + 4 * p, vmulq_f32(vcvtq_f32_s32(vsubq_s32(total, sum)), scale));
    }
    for (size_t r = 0; r < valid; ++r) y[(i0 + i) * l.n + r] = out[r];
  }
}

}  // namespace

void A8DotNeonI8mm(const A8Layout& layout, const uint8_t* packed, const A8Rows& rows, size_t m,
                   size_t row_begin, size_t row_end, float* y) {
  const size_t pairs = m / 2 * 2;
  for (size_t r0 = row_begin; pairs && r0 < row_end; r0 += A8Layout::kRows) {
    const size_t valid = row_end - r0 < A8Layout::kRows ? row_end - r0 : A8Layout::kRows;
    const uint8_t* block = layout.block(packed, r0);
    for (size_t i = 0; i < pairs; i += 2) RowPair(layout, block, rows, i, valid, y + r0);
  }
  if (pairs < m) {  // the last row alone: the dot-product kernel on a view starting at it
    const size_t i = m - 1;
    const A8Rows last = {rows.q + i * rows.stride, rows.scale + i, rows.sum + i, rows.offset + i, rows.stride};
    A8DotNeonDot(layout, packed, last, 1, row_begin, row_end, y + i * layout.n);
  }
}

}  // namespace internal
}  // namespace tvlm
