// UnpackTernary on the fake interpreter: the float weights equal scale x the values that were
// packed (any K, including K not a multiple of 4; 1 and 2 threads), and malformed nodes fail in
// Prepare with a message naming the problem.
#include <random>
#include <string>
#include <vector>

#include "cc/kernels/packing.h"
#include "cc/tflite/tests/fake_interpreter.h"
#include "cc/tflite/unpack_op.h"
#include "gtest/gtest.h"
#include "third_party/tflite_abi/tflite_abi.h"

namespace tvlm {
namespace {

constexpr WeightFormat kTernary = WeightFormat::kTernary2;

TEST(UnpackTernaryTest, OutputsScaleTimesPackedValues) {
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> pick(-1, 1);
  std::uniform_real_distribution<float> uniform(-2.0f, 2.0f);
  // The last shape crosses the op's parallel threshold, so the pool splits the rows.
  for (const auto& [n, k] : std::vector<std::pair<int, int>>{{1, 1}, {5, 7}, {37, 101}, {300, 577}}) {
    std::vector<int8_t> values(static_cast<size_t>(n) * k);
    for (auto& v : values) v = static_cast<int8_t>(pick(rng));
    std::vector<uint8_t> packed(n * RowBytes(kTernary, k));
    ASSERT_TRUE(Pack(kTernary, values.data(), n, k, packed.data()).ok());
    std::vector<float> scale(n);
    for (auto& s : scale) s = uniform(rng);
    std::vector<int> shape = {n, k};
    FakeInterpreter interp;
    const int pi = interp.AddTensor(kTfLiteUInt8, {n, static_cast<int>(RowBytes(kTernary, k))},
                                    packed.data(), packed.size(), true);
    const int si = interp.AddTensor(kTfLiteFloat32, {n}, scale.data(), n * 4, true);
    const int shi = interp.AddTensor(kTfLiteInt32, {2}, shape.data(), 8, true);
    const int wi = interp.AddTensor(kTfLiteFloat32, {1}, nullptr, 0, false);
    std::vector<float> w;
    ASSERT_EQ(interp.Run(UnpackTernaryRegistration(), {pi, si, shi}, wi, &w), kTfLiteOk)
        << interp.error();
    ASSERT_EQ(interp.tensor(wi).dims->size, 2);
    EXPECT_EQ(interp.tensor(wi).dims->data[0], n);
    EXPECT_EQ(interp.tensor(wi).dims->data[1], k);
    for (size_t i = 0; i < values.size(); ++i) {
      ASSERT_EQ(w[i], scale[i / k] * values[i]) << "n=" << n << " k=" << k << " i=" << i;
    }
  }
}

struct BadCase {
  const char* name;
  std::vector<int> packed_shape;
  size_t packed_bytes;
  uint8_t fill;
  int scale_n;
  std::vector<int> shape;
  bool constant;
  const char* message;
};

TEST(UnpackTernaryTest, RejectsMalformedNodesWithAClearMessage) {
  std::vector<float> scale(16, 1.0f);
  const BadCase cases[] = {
      {"short buffer", {6, 3}, 17, 0x55, 6, {6, 10}, true, "buffer holds 17 bytes, expected 18"},
      {"k mismatch", {6, 3}, 18, 0x55, 6, {6, 20}, true, "expected [6, 5]"},
      {"n mismatch", {6, 3}, 18, 0x55, 6, {5, 10}, true, "expected [5, 3]"},
      {"scale length", {6, 3}, 18, 0x55, 5, {6, 10}, true, "scale has shape [5], expected [6]"},
      {"not constant", {6, 3}, 18, 0x55, 6, {6, 10}, false, "must be a constant tensor"},
      {"invalid code", {6, 3}, 18, 0xFF, 6, {6, 10}, true, "invalid ternary code 3"},
      {"bad padding", {6, 3}, 18, 0x00, 6, {6, 10}, true, "non-zero ternary padding"},
      {"empty k", {6, 0}, 0, 0x55, 6, {6, 0}, true, "must be positive"},
      {"shape rank", {6, 3}, 18, 0x55, 6, {6, 10, 1}, true, "constant int32 [2]"},
  };
  for (const BadCase& c : cases) {
    std::vector<uint8_t> packed(64, c.fill);
    std::vector<int> shape = c.shape;
    FakeInterpreter interp;
    const int pi = interp.AddTensor(kTfLiteUInt8, c.packed_shape, packed.data(), c.packed_bytes,
                                    c.constant);
    const int si = interp.AddTensor(kTfLiteFloat32, {c.scale_n}, scale.data(), c.scale_n * 4, true);
    const int shi = interp.AddTensor(kTfLiteInt32, {static_cast<int>(shape.size())}, shape.data(),
                                     shape.size() * 4, true);
    const int wi = interp.AddTensor(kTfLiteFloat32, {1}, nullptr, 0, false);
    std::vector<float> w;
    EXPECT_EQ(interp.Run(UnpackTernaryRegistration(), {pi, si, shi}, wi, &w), kTfLiteError)
        << c.name;
    EXPECT_NE(interp.error().find("UnpackTernary: "), std::string::npos) << c.name;
    EXPECT_NE(interp.error().find(c.message), std::string::npos) << c.name << ": " << interp.error();
  }
}

}  // namespace
}  // namespace tvlm
