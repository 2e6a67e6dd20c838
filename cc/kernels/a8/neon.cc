// W2A8 with NEON (ARMv7 / ARMv8.0 instructions, so every AArch64 core and our armv7 target run it):
// a 16-byte quarter of a chunk holds 4 rows × 4 inputs; vmull_s8 / vmlal_s8 multiply them by the 4
// broadcast activations and add the four shifts' products in int16 (at most 4 · 2 · 127 = 1016),
// then vpadalq_s16 adds adjacent pairs into int32: lanes (row, inputs 0-1) and (row, inputs 2-3),
// folded into one sum per row at the end.

#if !defined(__ARM_NEON)
#error "a8/neon.cc needs NEON (on 32-bit ARM: -mfpu=neon or neon-vfpv4)"
#endif

#include <arm_neon.h>

#include <cstring>

#include "cc/kernels/a8/isa.h"
#include "cc/kernels/a8/layout.h"

namespace tvlm {
namespace internal {
namespace {

inline int8x8_t Broadcast4(const int8_t* q) {
  int32_t v;
  std::memcpy(&v, q, 4);
  return vreinterpret_s8_s32(vdup_n_s32(v));
}

// Per-row sums from lanes (r0: 0-1, r0: 2-3, r1: 0-1, r1: 2-3) and the same for r2, r3.
inline int32x4_t FoldPairs(int32x4_t lo, int32x4_t hi) {
  return vcombine_s32(vpadd_s32(vget_low_s32(lo), vget_high_s32(lo)),
                      vpadd_s32(vget_low_s32(hi), vget_high_s32(hi)));
}

// One 16-row block against activation row i.
void Row(const A8Layout& l, const uint8_t* block, const A8Rows& rows, size_t i, size_t valid,
         float* y) {
  int32x4_t acc[4][2];
  for (int p = 0; p < 4; ++p) acc[p][0] = acc[p][1] = vdupq_n_s32(0);
  const uint8x16_t three = vdupq_n_u8(3);
  const int8_t* q = rows.q + i * rows.stride;
  for (size_t c = 0; c < l.chunks; ++c, block += A8Layout::kChunkBytes, q += A8Layout::kChunk) {
    int8x8_t a[4];
    for (int g = 0; g < 4; ++g) a[g] = Broadcast4(q + 4 * g);
    for (int p = 0; p < 4; ++p) {  // rows 4p..4p+3
      const uint8x16_t v = vld1q_u8(block + 16 * p);
      const int8x16_t c0 = vreinterpretq_s8_u8(vandq_u8(v, three));
      const int8x16_t c1 = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(v, 2), three));
      const int8x16_t c2 = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(v, 4), three));
      const int8x16_t c3 = vreinterpretq_s8_u8(vshrq_n_u8(v, 6));
      int16x8_t lo = vmull_s8(vget_low_s8(c0), a[0]);
      int16x8_t hi = vmull_s8(vget_high_s8(c0), a[0]);
      lo = vmlal_s8(lo, vget_low_s8(c1), a[1]);
      hi = vmlal_s8(hi, vget_high_s8(c1), a[1]);
      lo = vmlal_s8(lo, vget_low_s8(c2), a[2]);
      hi = vmlal_s8(hi, vget_high_s8(c2), a[2]);
      lo = vmlal_s8(lo, vget_low_s8(c3), a[3]);
      hi = vmlal_s8(hi, vget_high_s8(c3), a[3]);
      acc[p][0] = vpadalq_s16(acc[p][0], lo);
      acc[p][1] = vpadalq_s16(acc[p][1], hi);
    }
  }
  const int32x4_t sum = vdupq_n_s32(rows.sum[i]);
  const float32x4_t scale = vdupq_n_f32(rows.scale[i]);
  float out[16];
  for (int p = 0; p < 4; ++p) {
    const int32x4_t total = vsubq_s32(FoldPairs(acc[p][0], acc[p][1]), sum);
    vst1q_f32(out + 4 * p, vmulq_f32(vcvtq_f32_s32(total), scale));
  }
  std::memcpy(y + i * l.n, out, valid * sizeof(float));
}

}  // namespace

void A8DotNeon(const A8Layout& layout, const uint8_t* packed, const A8Rows& rows, size_t m,
               size_t row_begin, size_t row_end, float* y) {
  for (size_t r0 = row_begin; r0 < row_end; r0 += A8Layout::kRows) {
    const size_t valid = row_end - r0 < A8Layout::kRows ? row_end - r0 : A8Layout::kRows;
    const uint8_t* block = layout.block(packed, r0);
    for (size_t i = 0; i < m; ++i) Row(layout, block, rows, i, valid, y + r0);
  }
}

}  // namespace internal
}  // namespace tvlm
