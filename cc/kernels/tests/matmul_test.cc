#include "cc/kernels/matmul.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "cc/kernels/packing.h"
#include "cc/kernels/tests/int8_rows.h"
#include "gtest/gtest.h"

namespace tvlm {
namespace {

std::vector<int8_t> RandomWeights(WeightFormat format, size_t count, std::mt19937& rng) {
  const bool ternary = format != WeightFormat::kBinary1;
  std::uniform_int_distribution<int> dist(0, ternary ? 2 : 1);
  std::vector<int8_t> w(count);
  for (auto& v : w) {
    const int d = dist(rng);
    v = static_cast<int8_t>(ternary ? d - 1 : 2 * d - 1);
  }
  return w;
}

std::vector<float> RandomFloats(size_t count, float lo, float hi, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(count);
  for (auto& f : v) f = dist(rng);
  return v;
}

std::vector<float> RunKernel(const MatMulKernel& kernel, const std::vector<float>& x, size_t m,
                             const std::vector<float>& scale, const float* bias, ThreadPool* pool) {
  std::vector<float> y(m * kernel.n(), NAN);
  std::vector<uint8_t> scratch(kernel.ScratchBytes(m) + 1);
  // Misaligned on purpose: kernels must not rely on the caller's alignment.
  kernel.Run(x.data(), m, scale.data(), bias, y.data(), scratch.data() + 1, pool);
  return y;
}

// max|a - b| <= 1e-5 * max|b| + 1e-6
void ExpectClose(const std::vector<float>& got, const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size());
  float max_ref = 0.0f, max_diff = 0.0f;
  size_t worst = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    max_ref = std::max(max_ref, std::fabs(want[i]));
    const float diff = std::fabs(got[i] - want[i]);
    if (!(diff <= max_diff)) worst = i;  // NaN counts as worst
    if (!(diff <= max_diff)) max_diff = diff;
  }
  EXPECT_LE(max_diff, 1e-5f * max_ref + 1e-6f)
      << "at " << worst << ": got " << got[worst] << ", want " << want[worst];
}

// x quantized as a8/layout.h specifies for int8 activations, independently of the kernels (int8_rows.h).
void QuantizeForTest(const std::vector<float>& x, size_t m, size_t k, std::vector<int>* q,
                     std::vector<float>* s, std::vector<int>* z) {
  q->clear();
  s->clear();
  z->clear();
  for (size_t i = 0; i < m; ++i) {
    const testing_util::Int8Row row = testing_util::QuantizeRow(x.data() + i * k, k);
    q->insert(q->end(), row.q.begin(), row.q.end());
    s->push_back(row.s);
    z->push_back(static_cast<int>(row.z));
  }
}

using Param = std::tuple<Isa, Activations, WeightFormat, int>;

class MatMulTest : public ::testing::TestWithParam<Param> {};

// Random [n, k] weights and the kernel for (isa, act, format) built from them, with the reference
// kernel of the same weights.
struct Kernels {
  std::vector<int8_t> w;
  std::unique_ptr<MatMulKernel> kernel, reference;
};
void MakeKernels(Isa isa, Activations act, WeightFormat format, size_t n, size_t k,
                 std::mt19937& rng, Kernels* out) {
  out->w = RandomWeights(format, n * k, rng);
  std::vector<uint8_t> packed(n * RowBytes(format, k));
  ASSERT_TRUE(Pack(format, out->w.data(), n, k, packed.data()).ok());
  ASSERT_TRUE(
      MatMulKernel::Create(format, act, isa, packed.data(), packed.size(), n, k, &out->kernel)
          .ok());
  ASSERT_TRUE(MatMulKernel::Create(format, act, Isa::kReference, packed.data(), packed.size(), n, k,
                                   &out->reference)
                  .ok());
}

// The kernel for (isa, act, format) against the reference and an independent naive product, for one
// [n, k] weight matrix and each activation row count in ms.
void CheckShape(Isa isa, Activations act, WeightFormat format, ThreadPool* pool, size_t k, size_t n,
                const std::vector<size_t>& ms, std::mt19937& rng) {
  Kernels made;
  MakeKernels(isa, act, format, n, k, rng, &made);
  if (::testing::Test::HasFatalFailure()) return;
  const std::vector<int8_t>& w = made.w;
  const MatMulKernel* kernel = made.kernel.get();
  const MatMulKernel* reference = made.reference.get();
  EXPECT_EQ(kernel->isa(), isa);
  EXPECT_EQ(kernel->activations(), act);
  EXPECT_EQ(kernel->n(), n);
  EXPECT_EQ(kernel->k(), k);
  EXPECT_EQ(kernel->format(), format);
  const std::vector<float> scale = RandomFloats(n, 0.5f, 2.0f, rng);
  const std::vector<float> bias = RandomFloats(n, -1.0f, 1.0f, rng);
  for (size_t m : ms) {
    std::vector<float> x = RandomFloats(m * k, -1.0f, 1.0f, rng);
    if (m == 3) std::fill(x.begin() + k, x.begin() + 2 * k, 0.0f);  // an all-zero row
    if (act == Activations::kInt8 && m >= 4) {  // rows of one sign: the zero point near its ends (±126)
      for (size_t c = 0; c < k; ++c) {
        x[2 * k + c] = std::fabs(x[2 * k + c]) + 0.25f;
        x[3 * k + c] = -std::fabs(x[3 * k + c]);
      }
    }
    std::vector<int> q, z;
    std::vector<float> s;
    QuantizeForTest(x, m, k, &q, &s, &z);
    for (const float* b : {static_cast<const float*>(nullptr), bias.data()}) {
      SCOPED_TRACE("k=" + std::to_string(k) + " n=" + std::to_string(n) +
                   " m=" + std::to_string(m) + (b ? " bias" : " no bias"));
      // The reference against an independent naive product of the int8 weights.
      std::vector<float> naive(m * n);
      for (size_t i = 0; i < m; ++i) {
        for (size_t r = 0; r < n; ++r) {
          double acc = 0.0;
          for (size_t c = 0; c < k; ++c) {
            acc += act == Activations::kInt8 ? double{s[i]} * (q[i * k + c] - z[i]) * w[r * k + c]
                                             : double{x[i * k + c]} * w[r * k + c];
          }
          naive[i * n + r] = static_cast<float>(acc * scale[r] + (b ? b[r] : 0.0));
        }
      }
      const std::vector<float> want = RunKernel(*reference, x, m, scale, b, nullptr);
      ExpectClose(want, naive);
      const std::vector<float> got = RunKernel(*kernel, x, m, scale, b, pool);
      if (act == Activations::kInt8) {
        // Exact integer sums and the same float epilogue: bit for bit.
        for (size_t e = 0; e < got.size(); ++e) ASSERT_EQ(got[e], want[e]) << "at " << e;
      } else {
        // Against the exact (double) product: the reference's own k-order float sums drift
        // ~1e-5 at k = 2500, so kernels summing in another order are judged by the truth.
        ExpectClose(got, naive);
      }
    }
  }
}

TEST_P(MatMulTest, MatchesReferenceOnRaggedShapes) {
  ThreadPool pool(std::get<3>(GetParam()));
  std::mt19937 rng(42);
  // k = 2500 spans several K chunks of the m > 1 table-lookup paths; m = 17 and 40 are one and two
  // 16-row AMX tiles plus a remainder (the VNNI loop's), n = 67 and 130 one and two 64-row groups.
  for (size_t k : {1, 3, 7, 33, 100, 577, 1000, 2500}) {
    for (size_t n : {1, 5, 17, 67, 130}) {
      CheckShape(std::get<0>(GetParam()), std::get<1>(GetParam()), std::get<2>(GetParam()), &pool,
                 k, n, {1, 3, 4, 9, 17, 40}, rng);
    }
  }
}

// For m > 1 the table-lookup kernels walk weight rows in slabs of ~512 KiB (f32/lut_walk.h): at k =
// 2500 a ternary slab is ~840 rows, a binary one ~1680, so n = 2048 crosses two or three slab
// boundaries.
TEST_P(MatMulTest, MatchesReferenceAcrossWeightSlabs) {
  ThreadPool pool(std::get<3>(GetParam()));
  std::mt19937 rng(7);
  CheckShape(std::get<0>(GetParam()), std::get<1>(GetParam()), std::get<2>(GetParam()), &pool, 2500,
             2048, {2, 5}, rng);
}

// Non-finite activations have a defined result (matmul.h): every output that meets one through a
// non-zero weight is non-finite (with int8 activations, the whole row) and the other rows are
// untouched; a row of huge values (~1e30, whose products still fit in float)
// gives what the reference gives, exactly with int8 activations (the row scale absorbs the
// magnitude).
TEST_P(MatMulTest, NonFiniteAndHugeActivations) {
  const Isa isa = std::get<0>(GetParam());
  const Activations act = std::get<1>(GetParam());
  const WeightFormat format = std::get<2>(GetParam());
  ThreadPool pool(std::get<3>(GetParam()));
  std::mt19937 rng(11);
  const size_t n = 67, k = 577, m = 4;
  Kernels made;
  MakeKernels(isa, act, format, n, k, rng, &made);
  if (::testing::Test::HasFatalFailure()) return;
  const std::vector<int8_t>& w = made.w;
  const MatMulKernel* kernel = made.kernel.get();
  const MatMulKernel* reference = made.reference.get();
  const std::vector<float> scale = RandomFloats(n, 0.5f, 2.0f, rng);
  std::vector<float> x = RandomFloats(m * k, -1.0f, 1.0f, rng);
  x[0 * k + 5] = INFINITY;                               // row 0: +inf
  x[1 * k + 300] = NAN;                                  // row 1: NaN
  for (size_t c = 0; c < k; ++c) x[2 * k + c] *= 1e30f;  // row 2: huge, finite
  const std::vector<float> got = RunKernel(*kernel, x, m, scale, nullptr, &pool);
  const std::vector<float> want = RunKernel(*reference, x, m, scale, nullptr, nullptr);
  float huge_max = 0.0f;
  for (size_t r = 0; r < n; ++r) huge_max = std::max(huge_max, std::fabs(want[2 * n + r]));
  ASSERT_TRUE(std::isfinite(huge_max));
  for (size_t r = 0; r < n; ++r) {
    // A zero weight may skip its input (NEON's masked ternary kernel) or multiply it (0 * inf =
    // NaN).
    if (act == Activations::kInt8 || w[r * k + 5] != 0) {
      EXPECT_FALSE(std::isfinite(got[0 * n + r])) << "inf row, output " << r;
    }
    if (act == Activations::kInt8 || w[r * k + 300] != 0) {
      EXPECT_FALSE(std::isfinite(got[1 * n + r])) << "NaN row, output " << r;
    }
    EXPECT_TRUE(std::isfinite(got[3 * n + r])) << "finite row, output " << r;
    if (act == Activations::kInt8) {
      EXPECT_TRUE(std::isfinite(got[2 * n + r])) << "huge row, output " << r;
      EXPECT_EQ(got[2 * n + r], want[2 * n + r]) << "huge row, output " << r;
      EXPECT_EQ(got[3 * n + r], want[3 * n + r]) << "finite row, output " << r;
    } else {
      EXPECT_NEAR(got[2 * n + r], want[2 * n + r], 1e-5 * huge_max) << "huge row, output " << r;
    }
  }
}

std::vector<Param> AllParams() {
  std::vector<Param> params;
  for (Activations act : {Activations::kFloat32, Activations::kInt8}) {
    for (Isa isa : AvailableIsas(act)) {
      for (WeightFormat format : {WeightFormat::kTernary2, WeightFormat::kBinary1}) {
        for (int threads : {1, 2}) params.emplace_back(isa, act, format, threads);
      }
      // The denser storage format is unpacked at Create, then runs the same kernels: one thread suffices.
      params.emplace_back(isa, act, WeightFormat::kTernary5, 1);
    }
  }
  return params;
}

INSTANTIATE_TEST_SUITE_P(AllIsas, MatMulTest, ::testing::ValuesIn(AllParams()),
                         [](const ::testing::TestParamInfo<Param>& info) {
                           return std::string(IsaName(std::get<0>(info.param))) + "_" +
                                  ActivationsName(std::get<1>(info.param)) + "_" +
                                  FormatInfo(std::get<2>(info.param)).name + "_" +
                                  std::to_string(std::get<3>(info.param)) + "threads";
                         });

TEST(MatMulCreateTest, RejectsWrongByteCountNamingBoth) {
  std::vector<uint8_t> packed(10 * RowBytes(WeightFormat::kTernary2, 33) - 1, 0x55);
  std::unique_ptr<MatMulKernel> kernel;
  const Status status =
      MatMulKernel::Create(WeightFormat::kTernary2, Activations::kFloat32, Isa::kReference,
                           packed.data(), packed.size(), 10, 33, &kernel);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("need 90"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("found 89"), std::string::npos) << status.message();
  EXPECT_EQ(kernel, nullptr);
}

TEST(MatMulCreateTest, RejectsInvalidCodesAndPadding) {
  std::unique_ptr<MatMulKernel> kernel;
  for (Activations act : {Activations::kFloat32, Activations::kInt8}) {
    for (Isa isa : AvailableIsas(act)) {
      // 0b11 is no ternary code.
      std::vector<uint8_t> ternary(2 * RowBytes(WeightFormat::kTernary2, 8), 0x55);
      ternary[3] = 0x57;
      Status status = MatMulKernel::Create(WeightFormat::kTernary2, act, isa, ternary.data(),
                                           ternary.size(), 2, 8, &kernel);
      ASSERT_FALSE(status.ok());
      EXPECT_NE(status.message().find("invalid ternary code"), std::string::npos);
      // k = 6: the last two codes of each row are padding and must be zero weights (0b01).
      ternary.assign(2 * RowBytes(WeightFormat::kTernary2, 6), 0x55);
      ternary[1] = 0x95;
      status = MatMulKernel::Create(WeightFormat::kTernary2, act, isa, ternary.data(),
                                    ternary.size(), 2, 6, &kernel);
      ASSERT_FALSE(status.ok());
      EXPECT_NE(status.message().find("padding"), std::string::npos);
      // k = 5: bits 5..7 of each binary row byte are padding and must be 0.
      std::vector<uint8_t> binary = {0x1F, 0x3F};
      status = MatMulKernel::Create(WeightFormat::kBinary1, act, isa, binary.data(), binary.size(),
                                    2, 5, &kernel);
      ASSERT_FALSE(status.ok());
      EXPECT_NE(status.message().find("padding"), std::string::npos);
    }
  }
  EXPECT_EQ(kernel, nullptr);
}

// The sweeps above run every ISA this CPU offers, so on another CPU a kernel would drop out
// silently. This prints what ran and, when TVLM_REQUIRE_ISAS lists "activations:isa" pairs (CI
// derives them from /proc/cpuinfo, .ci/run), fails unless each of them ran. TVLM_CPU_ISAS (set per
// emulated CPU model by cc_test_on_cpus) adds pairs that model must run, and "!pair" ones it must not
// (run-time detection: the dot-product kernel on a core without the extension would fault).
TEST(MatMulIsaTest, ReportsTheIsasItRanAndHasEveryRequiredOne) {
  std::set<std::string> ran;
  for (Activations act : {Activations::kFloat32, Activations::kInt8}) {
    for (Isa isa : AvailableIsas(act))
      ran.insert(std::string(ActivationsName(act)) + ":" + IsaName(isa));
  }
  std::string list;
  for (const std::string& r : ran) list += (list.empty() ? "" : ",") + r;
  std::cout << "kernels run: " << list << std::endl;
  ::testing::Test::RecordProperty("isas", list);
  for (const char* variable : {"TVLM_REQUIRE_ISAS", "TVLM_CPU_ISAS"}) {
    const char* required = std::getenv(variable);
    std::stringstream wanted(required ? required : "");
    for (std::string r; std::getline(wanted, r, ',');) {
      if (r.empty()) continue;
      if (r[0] == '!') {
        EXPECT_FALSE(ran.count(r.substr(1))) << "kernel " << r.substr(1) << " ran on a CPU without it";
      } else {
        EXPECT_TRUE(ran.count(r)) << "required kernel " << r << " did not run (ran: " << list << ")";
      }
    }
  }
}

TEST(MatMulCreateTest, IsaNamesAndBest) {
  EXPECT_STREQ(IsaName(Isa::kReference), "reference");
  EXPECT_STREQ(IsaName(Isa::kAvx2), "avx2");
  EXPECT_STREQ(IsaName(Isa::kAvx512), "avx512");
  EXPECT_STREQ(IsaName(Isa::kAvx512Vbmi), "avx512_vbmi");
  EXPECT_STREQ(IsaName(Isa::kAmx), "amx");
  EXPECT_STREQ(IsaName(Isa::kNeon), "neon");
  EXPECT_STREQ(IsaName(Isa::kNeonDot), "neon_dot");
  EXPECT_STREQ(IsaName(Isa::kNeonI8mm), "neon_i8mm");
  EXPECT_STREQ(ActivationsName(Activations::kFloat32), "float32");
  EXPECT_STREQ(ActivationsName(Activations::kInt8), "int8");
  for (Activations act : {Activations::kFloat32, Activations::kInt8}) {
    const std::vector<Isa> isas = AvailableIsas(act);
    ASSERT_FALSE(isas.empty());
    EXPECT_EQ(isas.front(), Isa::kReference);
    EXPECT_EQ(BestIsa(act), isas.back());
  }
#if defined(__x86_64__) || defined(__ARM_NEON)
  // Every CPU we build for has a vector int8-activation kernel.
  EXPECT_GT(AvailableIsas(Activations::kInt8).size(), 1u);
#endif
}

}  // namespace
}  // namespace tvlm
