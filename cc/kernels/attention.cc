#include "cc/kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

namespace tvlm {

KVCache::KVCache(int heads, int dim, int max_len)
    : heads_(heads),
      dim_(dim),
      max_len_(max_len),
      k_(static_cast<size_t>(heads) * dim * max_len, 0.0f),
      v_(static_cast<size_t>(heads) * dim * max_len, 0.0f) {}

namespace {

Status CheckSpan(int t, int start, int max_len) {
  if (t <= 0 || start < 0 || start > max_len - t) {
    return Status::Error("positions " + std::to_string(start) + ".." + std::to_string(start + t - 1) +
                         " are outside the KV cache of " + std::to_string(max_len) + " positions");
  }
  return Status::Ok();
}

// Both products, compiled per x86 ISA (GCC picks the clone at load time). Their inner loops run over
// contiguous memory (positions, resp. dimensions), so they vectorize without reassociating a sum.
#if defined(__x86_64__) && defined(__GNUC__)
#define TVLM_VECTOR_CLONES __attribute__((target_clones("arch=skylake-avx512", "arch=haswell", "default")))
#else
#define TVLM_VECTOR_CLONES
#endif

// scores[s] = sum_j q[j] * keys[j * stride + s] for s < n.
TVLM_VECTOR_CLONES void Scores(const float* __restrict q, const float* __restrict keys, int dim, int stride,
                               int n, float* __restrict scores) {
  for (int s = 0; s < n; ++s) scores[s] = 0.0f;
  for (int j = 0; j < dim; ++j) {
    const float a = q[j];
    const float* row = keys + static_cast<size_t>(j) * stride;
    for (int s = 0; s < n; ++s) scores[s] += a * row[s];
  }
}

// out[j] = sum_s p[s] * values[s * dim + j].
TVLM_VECTOR_CLONES void WeightedSum(const float* __restrict p, const float* __restrict values, int n, int dim,
                                    float* __restrict out) {
  for (int j = 0; j < dim; ++j) out[j] = 0.0f;
  for (int s = 0; s < n; ++s) {
    const float a = p[s];
    const float* row = values + static_cast<size_t>(s) * dim;
    for (int j = 0; j < dim; ++j) out[j] += a * row[j];
  }
}

}  // namespace

Status KVCache::Write(const float* new_k, const float* new_v, int t, int start) {
  Status span = CheckSpan(t, start, max_len_);
  if (!span.ok()) return span;
  const size_t plane = static_cast<size_t>(dim_) * max_len_;
  for (int h = 0; h < heads_; ++h) {
    for (int j = 0; j < dim_; ++j) {  // key rows: T contiguous positions each
      std::memcpy(&k_[h * plane + static_cast<size_t>(j) * max_len_ + start],
                  new_k + (static_cast<size_t>(h) * dim_ + j) * t, sizeof(float) * t);
    }
    std::memcpy(&v_[h * plane + static_cast<size_t>(start) * dim_],  // value rows: one block
                new_v + static_cast<size_t>(h) * t * dim_, sizeof(float) * t * dim_);
  }
  return Status::Ok();
}

Status KVCache::Attend(const float* q, int rows, int t, int start, float scale, float* out) const {
  Status span = CheckSpan(t, start, max_len_);
  if (!span.ok()) return span;
  if (rows <= 0 || rows % t != 0) {
    return Status::Error(std::to_string(rows) + " query rows are not a multiple of " +
                         std::to_string(t) + " tokens");
  }
  thread_local std::vector<float> scores;
  scores.resize(max_len_);
  const size_t plane = static_cast<size_t>(dim_) * max_len_;
  for (int h = 0; h < heads_; ++h) {
    const float* keys = &k_[h * plane];
    const float* values = &v_[h * plane];
    for (int r = 0; r < rows; ++r) {
      const float* qr = q + (static_cast<size_t>(h) * rows + r) * dim_;
      float* o = out + (static_cast<size_t>(h) * rows + r) * dim_;
      const int n = start + r % t + 1;  // positions this query sees
      Scores(qr, keys, dim_, max_len_, n, scores.data());
      float top = -INFINITY;
      for (int s = 0; s < n; ++s) {
        scores[s] *= scale;
        top = std::max(top, scores[s]);
      }
      float sum = 0.0f;
      for (int s = 0; s < n; ++s) {
        scores[s] = std::exp(scores[s] - top);
        sum += scores[s];
      }
      const float inv = 1.0f / sum;
      for (int s = 0; s < n; ++s) scores[s] *= inv;
      WeightedSum(scores.data(), values, n, dim_, o);
    }
  }
  return Status::Ok();
}

}  // namespace tvlm
