#include "cc/kernels/int8_matmul.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "cc/kernels/tests/int8_rows.h"
#include "gtest/gtest.h"

namespace tvlm {
namespace {

std::vector<int8_t> RandomInt8(size_t count, std::mt19937& rng) {
  std::uniform_int_distribution<int> dist(-128, 127);
  std::vector<int8_t> v(count);
  for (auto& b : v) b = static_cast<int8_t>(dist(rng));
  return v;
}

std::vector<float> RandomFloats(size_t count, float lo, float hi, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(count);
  for (auto& f : v) f = dist(rng);
  return v;
}

// The definition, with the row quantization of a8/layout.h computed independently (int8_rows.h).
struct Want {
  std::vector<double> y;     // step · s · Σ (q - z) · w, in double
  std::vector<double> size;  // step · (|s · Σ q·w| + |s · z · Σ w|): what the epilogue's roundings scale with
  std::vector<float> mirror; // the epilogue's float operations as int8_matmul.cc does them (-ffp-contract=off)
};
Want Expected(const std::vector<float>& x, size_t m, const std::vector<int8_t>& w, size_t n, size_t k,
              const std::vector<float>& step) {
  Want want{std::vector<double>(m * n), std::vector<double>(m * n), std::vector<float>(m * n)};
  for (size_t i = 0; i < m; ++i) {
    const testing_util::Int8Row row = testing_util::QuantizeRow(x.data() + i * k, k);
    const std::vector<int>& q = row.q;
    const float s = row.s, z = row.z;
    for (size_t r = 0; r < n; ++r) {
      long long sum = 0, wsum = 0;
      for (size_t c = 0; c < k; ++c) {
        sum += q[c] * w[r * k + c];
        wsum += w[r * k + c];
      }
      const size_t j = i * n + r;
      want.y[j] = double{step[r]} * s * (static_cast<double>(sum) - double{z} * static_cast<double>(wsum));
      want.size[j] = double{step[r]} * (std::fabs(double{s} * sum) + std::fabs(double{s} * z * wsum));
      const float dot = static_cast<float>(sum) * s;
      want.mirror[j] = (dot - (s * z) * static_cast<float>(wsum)) * step[r];
    }
  }
  return want;
}

std::vector<float> Apply(const Int8MatMul& mm, const std::vector<float>& x, size_t m,
                       const std::vector<float>& step, ThreadPool* pool) {
  std::vector<float> y(m * mm.n(), NAN);
  std::vector<uint8_t> scratch(mm.ScratchBytes(m) + 1);
  mm.Run(x.data(), m, step.data(), y.data(), scratch.data() + 1, pool);  // misaligned on purpose
  return y;
}

class Int8MatMulTest : public ::testing::TestWithParam<Isa> {};

// Ragged shapes around every loop's chunk (16, 32, 64 inputs) and tile (4 rows, 1-4 activation rows):
// equal to the definition up to the two float roundings of the epilogue, and bit-equal to the
// portable loop (the sums are exact int32 in every ISA).
TEST_P(Int8MatMulTest, MatchesTheDefinitionAndThePortableLoop) {
  std::mt19937 rng(7);
  for (size_t k : {1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 576, 1000}) {
    for (size_t n : {1, 3, 4, 5, 17, 67}) {
      for (size_t m : {1, 2, 3, 4, 5, 9}) {
        const auto w = RandomInt8(n * k, rng);
        const auto x = RandomFloats(m * k, -3.0f, 3.0f, rng);
        const auto step = RandomFloats(n, 0.001f, 0.05f, rng);
        std::unique_ptr<Int8MatMul> mm, portable;
        ASSERT_TRUE(Int8MatMul::Create(GetParam(), w.data(), n, k, &mm).ok());
        ASSERT_TRUE(Int8MatMul::Create(Isa::kReference, w.data(), n, k, &portable).ok());
        const auto got = Apply(*mm, x, m, step, nullptr);
        const auto want = Expected(x, m, w, n, k, step);
        const auto ref = Apply(*portable, x, m, step, nullptr);
        const std::string where = "k=" + std::to_string(k) + " n=" + std::to_string(n) + " m=" + std::to_string(m);
        for (size_t j = 0; j < got.size(); ++j) {
          // float(Σ q·w) (exact below 2^24, else 1/2 ulp), · s, s · z, · Σw, the difference, · step: six
          // roundings of at most 2^-24 of the terms they act on, the largest of which is `size`.
          ASSERT_NEAR(got[j], want.y[j], 6 * 0x1p-24 * want.size[j] + 1e-30) << where << " at " << j;
          ASSERT_EQ(got[j], ref[j]) << where << " at " << j;
          ASSERT_EQ(got[j], want.mirror[j]) << where << " at " << j;
        }
      }
    }
  }
}

// The extremes that overflow a careless loop: weights -128 and activations ±127 (q · w pairs reach
// 2 · 127 · 128 in int16 on AVX2; q + 128 = 255 against -128 on AVX-512).
TEST_P(Int8MatMulTest, ExtremeCodesAreExact) {
  for (size_t k : {64, 576, 4096}) {
    const size_t n = 8, m = 2;
    std::vector<int8_t> w(n * k);
    for (size_t r = 0; r < n; ++r) {
      for (size_t c = 0; c < k; ++c) w[r * k + c] = static_cast<int8_t>(r % 2 ? -128 : (c % 2 ? 127 : -128));
    }
    std::vector<float> x(m * k), step(n, 1.0f);
    for (size_t c = 0; c < k; ++c) {
      x[c] = -1.0f;                    // q = -127 everywhere (zero point 127)
      x[k + c] = c % 2 ? 1.0f : -1.0f;  // q = ±127 (zero point 0)
    }
    std::unique_ptr<Int8MatMul> mm;
    ASSERT_TRUE(Int8MatMul::Create(GetParam(), w.data(), n, k, &mm).ok());
    const auto got = Apply(*mm, x, m, step, nullptr);
    const auto want = Expected(x, m, w, n, k, step);
    for (size_t j = 0; j < got.size(); ++j) EXPECT_EQ(got[j], want.mirror[j]) << "k=" << k << " at " << j;
  }
}

// The weights are read in place up to their last byte and not one past it: the matrix ends where an
// inaccessible page begins (a vector load past the last row would fault).
TEST_P(Int8MatMulTest, NeverReadsPastTheWeights) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t n = 5, k = 100;  // 500 bytes, not a multiple of any vector
  void* region = mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(region, MAP_FAILED);
  ASSERT_EQ(mprotect(static_cast<char*>(region) + page, page, PROT_NONE), 0);
  int8_t* w = reinterpret_cast<int8_t*>(static_cast<char*>(region) + page - n * k);
  std::mt19937 rng(3);
  const auto values = RandomInt8(n * k, rng);
  std::memcpy(w, values.data(), n * k);
  const auto x = RandomFloats(3 * k, -1.0f, 1.0f, rng);
  const std::vector<float> step(n, 0.5f);
  std::unique_ptr<Int8MatMul> mm;
  ASSERT_TRUE(Int8MatMul::Create(GetParam(), w, n, k, &mm).ok());
  const auto got = Apply(*mm, x, 3, step, nullptr);
  const auto want = Expected(x, 3, values, n, k, step);
  for (size_t j = 0; j < got.size(); ++j) EXPECT_EQ(got[j], want.mirror[j]) << j;
  munmap(region, 2 * page);
}

// Split over a pool (above the inline threshold) the result is the inline one, bit for bit.
TEST_P(Int8MatMulTest, ThreadsGiveTheInlineResult) {
  std::mt19937 rng(11);
  const size_t n = 4099, k = 576;
  const auto w = RandomInt8(n * k, rng);
  const auto step = RandomFloats(n, 0.001f, 0.05f, rng);
  std::unique_ptr<Int8MatMul> mm;
  ASSERT_TRUE(Int8MatMul::Create(GetParam(), w.data(), n, k, &mm).ok());
  ThreadPool pool(3);
  for (size_t m : {1, 7}) {
    const auto x = RandomFloats(m * k, -2.0f, 2.0f, rng);
    EXPECT_EQ(Apply(*mm, x, m, step, &pool), Apply(*mm, x, m, step, nullptr)) << "m=" << m;
  }
}

std::string IsaParamName(const ::testing::TestParamInfo<Isa>& info) { return IsaName(info.param); }

INSTANTIATE_TEST_SUITE_P(AllIsas, Int8MatMulTest, ::testing::ValuesIn(Int8MatMul::AvailableIsas()),
                         IsaParamName);

TEST(Int8MatMulCreateTest, RejectsBadShapesAndIsasNamingThem) {
  std::vector<int8_t> w(16);
  std::unique_ptr<Int8MatMul> mm;
  Status status = Int8MatMul::Create(Isa::kReference, w.data(), 0, 16, &mm);
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("empty int8 weight shape [0, 16]"), std::string::npos) << status.message();
  status = Int8MatMul::Create(Isa::kReference, w.data(), 1, Int8MatMul::kMaxK + 1, &mm);
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("more than 65536 inputs"), std::string::npos) << status.message();
  status = Int8MatMul::Create(Isa::kAmx, w.data(), 1, 16, &mm);  // AMX has a W2A8 kernel only
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("ISA amx has no int8-weight loop"), std::string::npos) << status.message();
  EXPECT_EQ(mm, nullptr);
}

// The int8-weight ISAs are the int8-activation ones that have a loop here: the best one is what the
// CPU's W2A8 kernels use where both exist (AVX-512 VNNI, the ARM dot product).
TEST(Int8MatMulCreateTest, IsasFollowTheCpu) {
  const std::vector<Isa> isas = Int8MatMul::AvailableIsas();
  ASSERT_FALSE(isas.empty());
  EXPECT_EQ(isas.front(), Isa::kReference);
  EXPECT_EQ(Int8MatMul::BestIsa(), isas.back());
  std::string list;
  for (Isa isa : isas) list += std::string(list.empty() ? "" : ",") + IsaName(isa);
  std::cout << "int8-weight loops: " << list << std::endl;
  for (Isa isa : AvailableIsas(Activations::kInt8)) {
    if (isa == Isa::kAvx2 || isa == Isa::kAvx512 || isa == Isa::kNeonDot) {
      EXPECT_NE(std::find(isas.begin(), isas.end(), isa), isas.end()) << IsaName(isa) << " missing";
    }
  }
}

}  // namespace
}  // namespace tvlm
