// NEON bit-plane sums: vtstq turns each weight bit into a lane mask that keeps x where it is set.
// Only ARMv7 NEON intrinsics, so the same code serves AArch64 and 32-bit ARM.

#if !defined(__ARM_NEON)
#error "f32/bitplane_neon.cc needs NEON (on 32-bit ARM: -mfpu=neon or neon-vfpv4)"
#endif

#include <arm_neon.h>

#include "cc/kernels/f32/bitplane_layout.h"

namespace tvlm {
namespace internal {
namespace {

struct Neon {
  template <int R, int P>
  static void Sums(const float* x, const uint32_t* w, size_t words, float (*sums)[2]) {
    static const uint32_t kLaneBits[4] = {1u, 2u, 4u, 8u};
    const uint32x4_t lane_bits = vld1q_u32(kLaneBits);
    float32x4_t acc[R][P];
    for (int r = 0; r < R; ++r) {
      for (int p = 0; p < P; ++p) acc[r][p] = vdupq_n_f32(0.0f);
    }
    for (size_t d = 0; d < words; ++d, x += 32) {
      uint32x4_t bits[R][P];
      for (int r = 0; r < R; ++r) {
        for (int p = 0; p < P; ++p) bits[r][p] = vdupq_n_u32(w[(r * words + d) * P + p]);
      }
      for (int s = 0; s < 8; ++s) {
        const uint32x4_t xv = vreinterpretq_u32_f32(vld1q_f32(x + 4 * s));
        for (int r = 0; r < R; ++r) {
          for (int p = 0; p < P; ++p) {
            const uint32x4_t m = vtstq_u32(bits[r][p], lane_bits);
            acc[r][p] = vaddq_f32(acc[r][p], vreinterpretq_f32_u32(vandq_u32(m, xv)));
            bits[r][p] = vshrq_n_u32(bits[r][p], 4);  // next four weights into the low bits
          }
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      for (int p = 0; p < P; ++p) {
        const float32x2_t h = vadd_f32(vget_low_f32(acc[r][p]), vget_high_f32(acc[r][p]));
        sums[r][p] = vget_lane_f32(vpadd_f32(h, h), 0);
      }
    }
  }
};

}  // namespace

void BitPlaneDotNeon(const BitPlaneArgs& a, size_t m, size_t begin, size_t end, float* y) {
  BitPlaneLoop<Neon>(a, m, begin, end, y);
}

}  // namespace internal
}  // namespace tvlm
