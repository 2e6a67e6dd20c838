#ifndef TERNARY_VLM_CC_KERNELS_TESTS_ATTENTION_REFERENCE_H_
#define TERNARY_VLM_CC_KERNELS_TESTS_ATTENTION_REFERENCE_H_

// The independent reference for KV-cache attention tests: a conversation kept as plain per-position
// key/value lists, attention computed in double precision the textbook way.
#include <cmath>
#include <random>
#include <vector>

namespace tvlm {

inline std::vector<float> RandomFloats(std::mt19937* rng, size_t n, float spread = 1.0f) {
  std::normal_distribution<float> normal(0.0f, spread);
  std::vector<float> v(n);
  for (auto& x : v) x = normal(*rng);
  return v;
}

class ReferenceConversation {
 public:
  ReferenceConversation(int heads, int dim) : heads_(heads), dim_(dim), keys_(heads), values_(heads) {}

  // Stores the step's tokens (new_k [heads, dim, t], new_v [heads, t, dim]) at start..start+t-1.
  void Write(const std::vector<float>& new_k, const std::vector<float>& new_v, int t, int start) {
    for (int h = 0; h < heads_; ++h) {
      for (int i = 0; i < t; ++i) {
        std::vector<double> k(dim_), v(dim_);
        for (int j = 0; j < dim_; ++j) {
          k[j] = new_k[(static_cast<size_t>(h) * dim_ + j) * t + i];
          v[j] = new_v[(static_cast<size_t>(h) * t + i) * dim_ + j];
        }
        const size_t pos = static_cast<size_t>(start + i);
        if (keys_[h].size() <= pos) keys_[h].resize(pos + 1), values_[h].resize(pos + 1);
        keys_[h][pos] = k;
        values_[h][pos] = v;
      }
    }
  }

  // Attention output [heads, rows, dim] for q [heads, rows, dim]; row r is token r % t.
  std::vector<double> Attend(const std::vector<float>& q, int rows, int t, int start, double scale) const {
    std::vector<double> out(static_cast<size_t>(heads_) * rows * dim_, 0.0);
    for (int h = 0; h < heads_; ++h) {
      for (int r = 0; r < rows; ++r) {
        const int n = start + r % t + 1;
        std::vector<double> w(n);
        double top = -INFINITY, sum = 0.0;
        for (int s = 0; s < n; ++s) {
          double dot = 0.0;
          for (int j = 0; j < dim_; ++j) dot += q[(static_cast<size_t>(h) * rows + r) * dim_ + j] * keys_[h][s][j];
          w[s] = dot * scale;
          top = std::max(top, w[s]);
        }
        for (double& x : w) sum += (x = std::exp(x - top));
        for (int s = 0; s < n; ++s) {
          for (int j = 0; j < dim_; ++j) {
            out[(static_cast<size_t>(h) * rows + r) * dim_ + j] += w[s] / sum * values_[h][s][j];
          }
        }
      }
    }
    return out;
  }

 private:
  int heads_, dim_;
  std::vector<std::vector<std::vector<double>>> keys_, values_;  // [head][position][dim]
};

}  // namespace tvlm

#endif  // TERNARY_VLM_CC_KERNELS_TESTS_ATTENTION_REFERENCE_H_
