#include "cc/kernels/rms_norm.h"

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace tvlm {
namespace {

// Against the definition in double, on rows of every length up to 80 (all lane tails), SmolLM2's 576 and a long
// 2048, with magnitudes from 1e-3 to 1e3 between rows.
TEST(RmsNormTest, WithinItsRelativeBoundOfTheDefinition) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  std::vector<size_t> lengths;
  for (size_t k = 1; k <= 80; ++k) lengths.push_back(k);
  lengths.push_back(576);
  lengths.push_back(2048);
  for (size_t k : lengths) {
    const size_t m = 3;
    std::vector<float> x(m * k), gamma(k), out(m * k);
    for (size_t i = 0; i < m; ++i) {
      const float magnitude = std::pow(10.0f, 3.0f * static_cast<float>(i) - 3.0f);
      for (size_t c = 0; c < k; ++c) x[i * k + c] = normal(rng) * magnitude;
    }
    for (auto& g : gamma) g = 1.0f + 0.5f * normal(rng);
    const float eps = 1e-5f;
    RmsNorm(x.data(), m, k, gamma.data(), eps, out.data());
    for (size_t i = 0; i < m; ++i) {
      double sum = 0;
      for (size_t c = 0; c < k; ++c) sum += double{x[i * k + c]} * x[i * k + c];
      const double r = 1 / std::sqrt(sum / k + eps);
      for (size_t c = 0; c < k; ++c) {
        const double want = x[i * k + c] * r * gamma[c];
        ASSERT_LE(std::fabs(out[i * k + c] - want), RmsNormBound(k) * std::fabs(want)) << "k " << k << " row " << i;
      }
    }
  }
}

TEST(RmsNormTest, ZeroRowsGiveZeroAndNonFiniteRowsStayTheirOwn) {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> x = {0, 0, 0, 1, inf, 2, 3, 4, 5};
  const std::vector<float> gamma = {1, 2, 3};
  std::vector<float> out(9);
  RmsNorm(x.data(), 3, 3, gamma.data(), 1e-6f, out.data());
  for (int c = 0; c < 3; ++c) EXPECT_EQ(out[c], 0.0f);  // 0 · 1/sqrt(eps)
  EXPECT_EQ(out[3], 0.0f);  // r = 1/sqrt(inf) = 0
  EXPECT_TRUE(std::isnan(out[4]));  // inf · 0
  EXPECT_EQ(out[5], 0.0f);
  const double r = 1 / std::sqrt((9.0 + 16 + 25) / 3 + 1e-6);
  for (int c = 6; c < 9; ++c) EXPECT_NEAR(out[c], x[c] * r * gamma[c - 6], 1e-6);
}

}  // namespace
}  // namespace tvlm
