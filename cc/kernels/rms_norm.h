#ifndef TERNARY_VLM_CC_KERNELS_RMS_NORM_H_
#define TERNARY_VLM_CC_KERNELS_RMS_NORM_H_

// The RMSNorm of a Llama layer, computed where the projections after it read their input (so the graph needs no
// MUL, SUM, ADD, RSQRT and MULs before them), row by row:
//   out[i, c] = (x[i, c] · r_i) · gamma[c],   r_i = 1 / sqrt(Σ_c x[i, c]² / k + eps)
// The sum of squares runs in 16 lanes (input c into lane c % 16, lanes added in order at the end): every x86
// clone rounds the same sums, and the result is within (k / 16 + 16) · 2^-24 relative of the exact sum, so out is
// within RmsNormBound(k) relative of the exact value. Non-finite inputs go as in the graph this replaces: an inf
// makes r = 0, so its row is 0 but NaN where the inf was; a NaN makes its row NaN.

#include <cstddef>

namespace tvlm {

void RmsNorm(const float* x, size_t m, size_t k, const float* gamma, float eps, float* out);

// The relative error bound above: half the sum's (the square root), plus the division, the square root and the
// two products (one rounding each, 2^-24).
inline double RmsNormBound(size_t k) { return (static_cast<double>(k) / 32 + 8 + 4) / 16777216.0; }

}  // namespace tvlm

#endif  // TERNARY_VLM_CC_KERNELS_RMS_NORM_H_
