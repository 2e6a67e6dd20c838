#ifndef TERNARY_VLM_CC_KERNELS_GLU_H_
#define TERNARY_VLM_CC_KERNELS_GLU_H_

// The gated linear unit of a Llama MLP, computed where the down projection reads its input (so the graph needs no
// LOGISTIC and MULs between the projections): out[i] = silu(gate[i]) · up[i], silu(g) = g / (1 + e^-g).
//
// e^-g comes from vector_exp.h's branch-free polynomial, eight lanes at once: within 2^-21 of
// the true value relative, so out is within 2^-20 relative of silu(g)·up in exact arithmetic (the quotient, the
// sum and the product each add at most one more rounding, 2^-24). Every x86 clone gives the same bits. A NaN gate
// or up gives NaN; g = +inf gives up·inf; below g = -88, e^-g is clamped at e^88, so the result (exactly
// g·e^g·up, below 1e-36·|up| there) comes out as g·up / (1 + e^88), at most |g·up|·e^-88 from it.

#include <cstddef>

namespace tvlm {

void SiluMul(const float* gate, const float* up, size_t count, float* out);

}  // namespace tvlm

#endif  // TERNARY_VLM_CC_KERNELS_GLU_H_
