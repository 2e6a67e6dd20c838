// Int8MatMul on the stand-in interpreter: a valid node computes the definition (x's rows quantized to
// int8, exact sums, per-row steps), malformed ones fail in Prepare naming the problem.
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "cc/tflite/int8_matmul_op.h"
#include "cc/tflite/tests/fake_interpreter.h"
#include "cc/kernels/tests/int8_rows.h"
#include "gtest/gtest.h"
#include "third_party/tflite_abi/tflite_abi.h"

namespace tvlm {
namespace {

TEST(Int8MatMulOpTest, ComputesTheQuantizedProductOfTheFlattenedRows) {
  std::mt19937 rng(5);
  const int n = 37, k = 101;
  std::uniform_int_distribution<int> code(-127, 127);
  std::uniform_real_distribution<float> uniform(0.001f, 0.02f);
  std::normal_distribution<float> normal;
  std::vector<int8_t> w(n * k);
  for (auto& v : w) v = static_cast<int8_t>(code(rng));
  std::vector<float> step(n);
  for (auto& s : step) s = uniform(rng);
  for (int m : {1, 3, 17}) {
    std::vector<float> x(m * k);
    for (auto& v : x) v = normal(rng);
    FakeInterpreter interp;
    const int xi = interp.AddTensor(kTfLiteFloat32, {1, m, k}, x.data(), x.size() * 4, false);
    const int wi = interp.AddTensor(kTfLiteInt8, {n, k}, w.data(), w.size(), true);
    const int si = interp.AddTensor(kTfLiteFloat32, {n}, step.data(), n * 4, true);
    const int yi = interp.AddTensor(kTfLiteFloat32, {1}, nullptr, 0, false);
    std::vector<float> y;
    ASSERT_EQ(interp.Run(Int8MatMulRegistration(), {xi, wi, si}, yi, &y), kTfLiteOk) << interp.error();
    ASSERT_EQ(interp.tensor(yi).dims->size, 2);  // [1, m, k] -> [m, n], as FULLY_CONNECTED
    EXPECT_EQ(interp.tensor(yi).dims->data[0], m);
    EXPECT_EQ(interp.tensor(yi).dims->data[1], n);
    for (int r = 0; r < m; ++r) {
      const testing_util::Int8Row row = testing_util::QuantizeRow(x.data() + r * k, k);
      for (int o = 0; o < n; ++o) {
        double acc = 0.0, exact = 0.0;
        for (int c = 0; c < k; ++c) {
          acc += (row.q[c] - double{row.z}) * w[o * k + c];
          exact += double(x[r * k + c]) * w[o * k + c];
        }
        const double want = acc * row.s * step[o];
        EXPECT_NEAR(y[r * n + o], want, 1e-6 * (1 + std::fabs(want)));
        // And near the float product: int8 rounding of x moves each term by at most half a step.
        EXPECT_NEAR(y[r * n + o], exact * step[o], 0.5 * row.s * k * 127 * step[o]);
      }
    }
  }
}

TEST(Int8MatMulOpTest, RejectsMalformedNodesWithAClearMessage) {
  std::vector<int8_t> w(64);
  std::vector<float> x(64), step(16);
  struct Case {
    const char* name;
    std::vector<int> x_shape, w_shape;
    TfLiteType w_type;
    size_t w_bytes;
    int step_n;
    bool constant;
    const char* message;
  };
  const Case cases[] = {
      {"k mismatch", {1, 10}, {6, 9}, kTfLiteInt8, 54, 6, true, "do not match input x [1, 10]"},
      {"step length", {1, 10}, {6, 10}, kTfLiteInt8, 60, 5, true, "do not match"},
      {"wrong dtype", {1, 10}, {6, 10}, kTfLiteUInt8, 60, 6, true, "int8 weights must be int8"},
      {"wrong rank", {1, 10}, {60}, kTfLiteInt8, 60, 6, true, "must have rank 2"},
      {"short buffer", {1, 10}, {6, 10}, kTfLiteInt8, 59, 6, true, "hold 59 bytes"},
      {"not constant", {1, 10}, {6, 10}, kTfLiteInt8, 60, 6, false, "must be constant tensors"},
      {"empty k", {1, 0}, {6, 0}, kTfLiteInt8, 0, 6, true, "empty last dimension"},
  };
  for (const Case& c : cases) {
    FakeInterpreter interp;
    const int xi = interp.AddTensor(kTfLiteFloat32, c.x_shape, x.data(), 40, false);
    const int wi = interp.AddTensor(c.w_type, c.w_shape, w.data(), c.w_bytes, c.constant);
    const int si = interp.AddTensor(kTfLiteFloat32, {c.step_n}, step.data(), c.step_n * 4, true);
    const int yi = interp.AddTensor(kTfLiteFloat32, {1}, nullptr, 0, false);
    std::vector<float> y;
    EXPECT_EQ(interp.Run(Int8MatMulRegistration(), {xi, wi, si}, yi, &y), kTfLiteError) << c.name;
    EXPECT_NE(interp.error().find("Int8MatMul: "), std::string::npos) << c.name;
    EXPECT_NE(interp.error().find(c.message), std::string::npos) << c.name << ": " << interp.error();
  }
  FakeInterpreter interp;
  const int xi = interp.AddTensor(kTfLiteFloat32, {1, 10}, x.data(), 40, false);
  std::vector<float> y;
  EXPECT_EQ(interp.Run(Int8MatMulRegistration(), {xi, -1, 0}, 0, &y), kTfLiteError);
  EXPECT_EQ(interp.error(), "Int8MatMul: input 1 is missing");
}

}  // namespace
}  // namespace tvlm
