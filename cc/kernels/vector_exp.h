#ifndef TERNARY_VLM_CC_KERNELS_VECTOR_EXP_H_
#define TERNARY_VLM_CC_KERNELS_VECTOR_EXP_H_

// e^v on eight lanes (vector_clones.h's F32x8), branch-free, for the loops glibc's scalar expf would keep scalar
// (SiLU, softmax). Build with -ffp-contract=off so that every clone rounds alike.

#include <cstring>

#include "cc/kernels/vector_clones.h"

namespace tvlm {

// e^v for v in [-88, 88] (callers clamp): v = n·ln2 + r with |r| <= ln2/2, e^r by its degree-6 Taylor polynomial
// (truncation below r^7/7! < 1.3e-7 relative, plus ~6 roundings of 2^-24: within 2^-21 of e^v relative), 2^n
// built in the exponent bits (n in [-127, 127]: a normal float for n > -127, and 2^-127 exactly as a subnormal).
TVLM_INLINE F32x8 Exp(F32x8 v) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693145751953125f;  // ln 2 in 16 bits: n · kLn2Hi is exact for |n| < 2^8
  constexpr float kLn2Lo = 1.42860682030941723212e-6f;
  constexpr float kRound = 12582912.0f;  // 1.5 · 2^23: adding and subtracting it rounds to an integer
  const F32x8 n = (v * kLog2e + kRound) - kRound;
  const F32x8 r = (v - n * kLn2Hi) - n * kLn2Lo;
  F32x8 p = r * (1.0f / 720) + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const I32x8 e = __builtin_convertvector(n, I32x8) + 127;
  const I32x8 bits = e > 0 ? e << 23 : I32x8{} + (1 << 22);  // 2^-127: subnormal
  F32x8 scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

}  // namespace tvlm

#endif  // TERNARY_VLM_CC_KERNELS_VECTOR_EXP_H_
