#include "cc/kernels/glu.h"

#include <cstdint>
#include <cstring>

#include "cc/kernels/vector_clones.h"

namespace tvlm {
namespace {

// e^v for v in [-88, 88] (callers clamp): v = n·ln2 + r with |r| <= ln2/2, e^r by its degree-6 Taylor polynomial
// (truncation below r^7/7! < 1.3e-7 relative, plus ~6 roundings of 2^-24), 2^n built in the exponent bits
// (n in [-127, 127]: a normal float for n > -127, and 2^-127 exactly as a subnormal).
inline float Exp(float v) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693145751953125f;  // ln 2 in 16 bits: n · kLn2Hi is exact for |n| < 2^8
  constexpr float kLn2Lo = 1.42860682030941723212e-6f;
  constexpr float kRound = 12582912.0f;  // 1.5 · 2^23: adding and subtracting it rounds to an integer
  const float n = (v * kLog2e + kRound) - kRound;
  const float r = (v - n * kLn2Hi) - n * kLn2Lo;
  float p = 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t e = static_cast<int32_t>(n) + 127;
  const uint32_t bits = e > 0 ? static_cast<uint32_t>(e) << 23 : uint32_t{1} << 22;  // 2^-127: subnormal
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

}  // namespace

// Built with -ffp-contract=off (BUILD): an FMA in one clone and not in another would change bits.
TVLM_VECTOR_CLONES void SiluMul(const float* __restrict gate, const float* __restrict up, size_t count,
                                float* __restrict out) {
  for (size_t i = 0; i < count; ++i) {
    const float g = gate[i];
    float minus = -g;
    minus = minus < -88.0f ? -88.0f : minus;  // e^-88 is still normal
    minus = minus > 88.0f ? 88.0f : minus;    // e^88 < FLT_MAX: g / (1 + e^88) is finite for finite g
    out[i] = g / (1.0f + Exp(minus)) * up[i];
  }
}

}  // namespace tvlm
