#include "cc/kernels/rms_norm.h"

#include <cmath>

#include "cc/kernels/vector_clones.h"

namespace tvlm {

// Built with -ffp-contract=off (BUILD): an FMA in one clone and not in another would change bits.
TVLM_VECTOR_CLONES void RmsNorm(const float* __restrict x, size_t m, size_t k, const float* __restrict gamma,
                                float eps, float* __restrict out) {
  constexpr size_t kLanes = 16;
  for (size_t i = 0; i < m; ++i) {
    const float* xi = x + i * k;
    float lanes[kLanes] = {};
    size_t c = 0;
    for (; c + kLanes <= k; c += kLanes) {
      for (size_t j = 0; j < kLanes; ++j) lanes[j] += xi[c + j] * xi[c + j];
    }
    for (size_t j = 0; c + j < k; ++j) lanes[j] += xi[c + j] * xi[c + j];
    float sum = 0.0f;
    for (size_t j = 0; j < kLanes; ++j) sum += lanes[j];
    const float r = 1.0f / std::sqrt(sum / static_cast<float>(k) + eps);
    float* oi = out + i * k;
    for (size_t j = 0; j < k; ++j) oi[j] = (xi[j] * r) * gamma[j];
  }
}

}  // namespace tvlm
