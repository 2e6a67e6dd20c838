#include "cc/kernels/glu.h"

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace tvlm {
namespace {

double Silu(double g) { return g / (1.0 + std::exp(-g)); }

// Every gate from -100 to 100 in steps of 1/64 (all of the polynomial's range reductions, both clamps, the
// subnormal 2^-127 of e^-88), each against a random up, and odd lengths (the vector loops' tails).
TEST(SiluMulTest, WithinItsRelativeBoundOfTheExactProduct) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> dist(-4.0f, 4.0f);
  std::vector<float> gate, up;
  for (int i = -6400; i <= 6400; ++i) {
    gate.push_back(static_cast<float>(i) / 64);
    up.push_back(dist(rng));
  }
  for (size_t count : {gate.size(), size_t{1}, size_t{17}, size_t{63}}) {
    std::vector<float> out(count);
    SiluMul(gate.data(), up.data(), count, out.data());
    for (size_t i = 0; i < count; ++i) {
      const double want = Silu(gate[i]) * up[i];
      // glu.h: 2^-20 relative; below -88, e^-g is clamped at e^88: out = g · up / (1 + e^88), within
      // |g · up| · e^-88 of the exact value (the exact one is smaller still).
      const double bound = gate[i] < -88 ? std::fabs(double{gate[i]} * up[i]) * std::exp(-88.0) * 1.001
                                         : std::ldexp(std::fabs(want), -20);
      ASSERT_LE(std::fabs(out[i] - want), bound) << "gate " << gate[i] << " up " << up[i];
    }
  }
}

TEST(SiluMulTest, NonFiniteInputs) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> gate = {nan, 1.0f, inf, 2.0f, -1000.0f};
  const std::vector<float> up = {1.0f, nan, 2.0f, inf, 3.0f};
  std::vector<float> out(gate.size());
  SiluMul(gate.data(), up.data(), gate.size(), out.data());
  EXPECT_TRUE(std::isnan(out[0]));
  EXPECT_TRUE(std::isnan(out[1]));
  EXPECT_EQ(out[2], inf);
  EXPECT_EQ(out[3], inf);
  EXPECT_LE(std::fabs(out[4]), 1e-30f);  // -1000 · e^-1000 is 0 in float; clamped at e^88 it is -1000 / e^88
}

}  // namespace
}  // namespace tvlm
