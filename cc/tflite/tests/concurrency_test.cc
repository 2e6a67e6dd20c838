// Two interpreters invoking our ops at once from two threads, as an app serving two conversations
// does: each runs TernaryMatMul (float and int8 activations, on the shared thread pool) and
// KVCacheAttention (its own KV cache) for many decode steps, and must produce bit for bit what it
// produces alone.
// Run under --config=tsan it also checks that no memory is shared without synchronization.
#include <cstdint>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cc/kernels/matmul.h"
#include "cc/kernels/packing.h"
#include "cc/tflite/attention_op.h"
#include "cc/tflite/matmul_op.h"
#include "cc/tflite/tests/fake_interpreter.h"
#include "gtest/gtest.h"
#include "third_party/tflite_abi/tflite_abi.h"

namespace tvlm {
namespace {

// Big enough that the matmul splits its rows over the pool.
constexpr int kK = 1024, kN = 2048, kHeads = 2, kDim = 16, kSteps = 48;
static_assert(size_t{kK} * kN >= kMinParallelMacs, "one row must cross the parallel threshold");

std::vector<float> Normal(std::mt19937* rng, size_t count) {
  std::normal_distribution<float> normal;
  std::vector<float> v(count);
  for (auto& x : v) x = normal(*rng);
  return v;
}

// One conversation on its own interpreter; Run() returns every output of every step, in order.
class Session {
 public:
  explicit Session(unsigned seed) : rng_(seed) {
    std::uniform_int_distribution<int> pick(-1, 1);
    std::vector<int8_t> w(static_cast<size_t>(kN) * kK);
    for (auto& v : w) v = static_cast<int8_t>(pick(rng_));
    packed_.resize(kN * RowBytes(WeightFormat::kTernary2, kK));
    EXPECT_TRUE(Pack(WeightFormat::kTernary2, w.data(), kN, kK, packed_.data()).ok());
    scale_ = Normal(&rng_, kN);
    x_ = Normal(&rng_, kK);
    q_ = Normal(&rng_, kHeads * kDim);
    k_ = Normal(&rng_, kHeads * kDim);
    v_ = Normal(&rng_, kHeads * kDim);

    const int xi = interp_.AddTensor(kTfLiteFloat32, {1, kK}, x_.data(), x_.size() * 4, false);
    const int pi = interp_.AddTensor(kTfLiteUInt8, {kN, static_cast<int>(packed_.size() / kN)},
                                     packed_.data(), packed_.size(), true);
    const int si = interp_.AddTensor(kTfLiteFloat32, {kN}, scale_.data(), kN * 4, true);
    const int yf = interp_.AddTensor(kTfLiteFloat32, {1}, nullptr, 0, false);
    const int y8 = interp_.AddTensor(kTfLiteFloat32, {1}, nullptr, 0, false);
    matmul_float_ = interp_.AddNode(TernaryMatMulRegistration(), {xi, pi, si}, yf);
    matmul_int8_ =
        interp_.AddNode(TernaryMatMulRegistration(), {xi, pi, si}, y8, "activations=int8");
    const int ids[] = {
        interp_.AddTensor(kTfLiteFloat32, {kHeads, 1, kDim}, q_.data(), q_.size() * 4, false),
        interp_.AddTensor(kTfLiteFloat32, {kHeads, kDim, 1}, k_.data(), k_.size() * 4, false),
        interp_.AddTensor(kTfLiteFloat32, {kHeads, 1, kDim}, v_.data(), v_.size() * 4, false),
        interp_.AddTensor(kTfLiteInt32, {3}, index_, 12, false),
        interp_.AddTensor(kTfLiteFloat32, {}, &attention_scale_, 4, true),
        interp_.AddTensor(kTfLiteInt32, {2}, cache_, 8, true),
    };
    const int out = interp_.AddTensor(kTfLiteFloat32, {1}, nullptr, 0, false);
    attention_ = interp_.AddNode(KVCacheAttentionRegistration(),
                                 std::vector<int>(std::begin(ids), std::end(ids)), out);
  }

  std::vector<std::vector<float>> Run() {
    std::vector<std::vector<float>> outputs;
    for (int node : {matmul_float_, matmul_int8_, attention_}) {
      if (interp_.Prepare(node) != kTfLiteOk) {
        ADD_FAILURE() << interp_.error();
        return outputs;
      }
    }
    for (int step = 0; step < kSteps; ++step) {
      // New inputs each step, written into the buffers the tensors point at (as TFLite's arena is).
      for (auto* buffer : {&x_, &q_, &k_, &v_}) {
        const std::vector<float> next = Normal(&rng_, buffer->size());
        std::copy(next.begin(), next.end(), buffer->begin());
      }
      index_[2] = step;
      for (int node : {matmul_float_, matmul_int8_, attention_}) {
        outputs.emplace_back();
        if (interp_.Invoke(node, &outputs.back()) != kTfLiteOk) {
          ADD_FAILURE() << "step " << step << ": " << interp_.error();
          return outputs;
        }
      }
    }
    return outputs;
  }

 private:
  std::mt19937 rng_;
  std::vector<uint8_t> packed_;
  std::vector<float> scale_, x_, q_, k_, v_;
  int index_[3] = {0, 0, 0};
  int cache_[2] = {0, kSteps};  // the same cache id in both: each interpreter must get its own
  float attention_scale_ = 0.25f;
  FakeInterpreter interp_;
  int matmul_float_ = -1, matmul_int8_ = -1, attention_ = -1;
};

// "" when equal bit for bit, else where they first differ (gtest would print both whole runs).
std::string FirstDifference(const std::vector<std::vector<float>>& got,
                            const std::vector<std::vector<float>>& want) {
  if (got.size() != want.size()) {
    return std::to_string(got.size()) + " outputs, not " + std::to_string(want.size());
  }
  for (size_t i = 0; i < got.size(); ++i) {
    for (size_t j = 0; j < want[i].size(); ++j) {
      if (j >= got[i].size() || !(got[i][j] == want[i][j])) {
        const std::string value = j < got[i].size() ? std::to_string(got[i][j]) : "missing";
        return "step " + std::to_string(i / 3) + ", op " + std::to_string(i % 3) + ", element " +
               std::to_string(j) + ": " + value + " instead of " + std::to_string(want[i][j]);
      }
    }
  }
  return "";
}

TEST(ConcurrencyTest, TwoInterpretersInTwoThreadsComputeWhatEachComputesAlone) {
  const std::vector<std::vector<float>> alone_a = Session(1).Run(), alone_b = Session(2).Run();
  ASSERT_EQ(alone_a.size(), 3u * kSteps);
  ASSERT_NE(FirstDifference(alone_a, alone_b), "");  // different conversations: a mix-up would show
  for (int round = 0; round < 4; ++round) {
    std::vector<std::vector<float>> together_a, together_b;
    Session a(1), b(2);
    std::thread ta([&] { together_a = a.Run(); });
    std::thread tb([&] { together_b = b.Run(); });
    ta.join();
    tb.join();
    ASSERT_EQ(FirstDifference(together_a, alone_a), "") << "interpreter a, round " << round;
    ASSERT_EQ(FirstDifference(together_b, alone_b), "") << "interpreter b, round " << round;
  }
}

}  // namespace
}  // namespace tvlm
