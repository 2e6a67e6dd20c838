#include "cc/kernels/glu.h"

#include <cstring>

#include "cc/kernels/vector_clones.h"
#include "cc/kernels/vector_exp.h"

namespace tvlm {
namespace {

// Eight outputs; NaN compares false, so a NaN gate passes both clamps and gives NaN.
TVLM_INLINE F32x8 SiluMul8(F32x8 g, F32x8 up) {
  F32x8 minus = -g;
  minus = minus < -88.0f ? F32x8{} - 88.0f : minus;  // e^-88 is still normal
  minus = minus > 88.0f ? F32x8{} + 88.0f : minus;   // e^88 < FLT_MAX: g / (1 + e^88) is finite for finite g
  return g / (1.0f + Exp(minus)) * up;
}

}  // namespace

// Built with -ffp-contract=off (BUILD): an FMA in one clone and not in another would change bits.
TVLM_VECTOR_CLONES void SiluMul(const float* __restrict gate, const float* __restrict up, size_t count,
                                float* __restrict out) {
  constexpr size_t kLanes = 8;
  F32x8 g, u;
  size_t i = 0;
  for (; i + kLanes <= count; i += kLanes) {
    std::memcpy(&g, gate + i, sizeof(g));
    std::memcpy(&u, up + i, sizeof(u));
    const F32x8 y = SiluMul8(g, u);
    std::memcpy(out + i, &y, sizeof(y));
  }
  if (i < count) {  // the last count % 8: the same lanes, zero-padded
    const size_t rest = count - i;
    g = F32x8{};
    u = F32x8{};
    std::memcpy(&g, gate + i, rest * sizeof(float));
    std::memcpy(&u, up + i, rest * sizeof(float));
    const F32x8 y = SiluMul8(g, u);
    std::memcpy(out + i, &y, rest * sizeof(float));
  }
}

}  // namespace tvlm
