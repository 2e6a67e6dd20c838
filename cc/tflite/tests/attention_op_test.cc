// KVCacheAttention on the fake interpreter: a prefill node and a decode node with the same cache id
// share one cache (as the prefill and decode signatures of one interpreter do) and match the
// double-precision reference; another interpreter gets its own cache; malformed nodes and positions
// fail with a message naming the problem.
#include "cc/tflite/attention_op.h"

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "cc/kernels/tests/attention_reference.h"
#include "cc/tflite/tests/fake_interpreter.h"
#include "gtest/gtest.h"
#include "third_party/tflite_abi/tflite_abi.h"

namespace tvlm {
namespace {

constexpr int kHeads = 2, kDim = 16, kGroups = 3, kMaxLen = 12;

// One node's tensors: inputs q, new keys, new values, index {0, 0, start}, scale, cache {id, max_len}.
struct Step {
  int t;
  std::vector<float> q, k, v;
  std::vector<int> index{0, 0, 0};
  std::vector<int> cache{0, kMaxLen};
  float scale = 0.25f;
  std::vector<int> input_ids;
  int output = -1;

  Step(std::mt19937* rng, int tokens) : t(tokens) {
    q = RandomFloats(rng, static_cast<size_t>(kHeads) * kGroups * t * kDim, 2.0f);
    k = RandomFloats(rng, static_cast<size_t>(kHeads) * kDim * t, 2.0f);
    v = RandomFloats(rng, static_cast<size_t>(kHeads) * t * kDim);
  }

  int AddTo(FakeInterpreter* interp, TfLiteRegistration* reg) {
    const int rows = kGroups * t;
    input_ids = {
        interp->AddTensor(kTfLiteFloat32, {kHeads, rows, kDim}, q.data(), q.size() * 4, false),
        interp->AddTensor(kTfLiteFloat32, {kHeads, kDim, t}, k.data(), k.size() * 4, false),
        interp->AddTensor(kTfLiteFloat32, {kHeads, t, kDim}, v.data(), v.size() * 4, false),
        interp->AddTensor(kTfLiteInt32, {3}, index.data(), 12, false),
        interp->AddTensor(kTfLiteFloat32, {}, &scale, 4, true),
        interp->AddTensor(kTfLiteInt32, {2}, cache.data(), 8, true),
    };
    output = interp->AddTensor(kTfLiteFloat32, {1}, nullptr, 0, false);
    return interp->AddNode(reg, input_ids, output);
  }
};

void ExpectNear(const std::vector<float>& got, const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 2e-5) << "i=" << i;
}

TEST(KVCacheAttentionTest, PrefillAndDecodeNodesShareTheCache) {
  std::mt19937 rng(11);
  FakeInterpreter interp;
  Step prefill(&rng, 5), decode(&rng, 1);
  const int p = prefill.AddTo(&interp, KVCacheAttentionRegistration());
  const int d = decode.AddTo(&interp, KVCacheAttentionRegistration());
  ASSERT_EQ(interp.Prepare(p), kTfLiteOk) << interp.error();
  ASSERT_EQ(interp.Prepare(d), kTfLiteOk) << interp.error();
  ReferenceConversation reference(kHeads, kDim);
  std::vector<float> out;
  ASSERT_EQ(interp.Invoke(p, &out), kTfLiteOk) << interp.error();
  reference.Write(prefill.k, prefill.v, 5, 0);
  ExpectNear(out, reference.Attend(prefill.q, kGroups * 5, 5, 0, prefill.scale));
  for (int position = 5; position < kMaxLen; ++position) {  // to the last slot of the cache
    const Step next(&rng, 1);  // new data, written into the buffers the node's tensors point at
    std::copy(next.q.begin(), next.q.end(), decode.q.begin());
    std::copy(next.k.begin(), next.k.end(), decode.k.begin());
    std::copy(next.v.begin(), next.v.end(), decode.v.begin());
    decode.index[2] = position;
    ASSERT_EQ(interp.Invoke(d, &out), kTfLiteOk) << interp.error();
    reference.Write(decode.k, decode.v, 1, position);
    ExpectNear(out, reference.Attend(decode.q, kGroups, 1, position, decode.scale));
  }
}

TEST(KVCacheAttentionTest, EachInterpreterHasItsOwnCache) {
  std::mt19937 rng(2);
  FakeInterpreter a, b;
  Step prefill_a(&rng, 4), prefill_b(&rng, 4), decode_a(&rng, 1);
  decode_a.index[2] = 4;
  const int pa = prefill_a.AddTo(&a, KVCacheAttentionRegistration());
  const int pb = prefill_b.AddTo(&b, KVCacheAttentionRegistration());
  const int da = decode_a.AddTo(&a, KVCacheAttentionRegistration());
  std::vector<float> out;
  for (auto [interp, node] : {std::pair{&a, pa}, {&b, pb}, {&a, da}}) {
    ASSERT_EQ(interp->Prepare(node), kTfLiteOk) << interp->error();
    ASSERT_EQ(interp->Invoke(node, &out), kTfLiteOk) << interp->error();
  }
  ReferenceConversation reference(kHeads, kDim);
  reference.Write(prefill_a.k, prefill_a.v, 4, 0);
  reference.Write(decode_a.k, decode_a.v, 1, 4);
  ExpectNear(out, reference.Attend(decode_a.q, kGroups, 1, 4, decode_a.scale));
}

TEST(KVCacheAttentionTest, PositionPastTheCacheFailsAtInvoke) {
  std::mt19937 rng(4);
  FakeInterpreter interp;
  Step step(&rng, 2);
  step.index[2] = kMaxLen - 1;
  std::vector<float> out;
  const int node = step.AddTo(&interp, KVCacheAttentionRegistration());
  ASSERT_EQ(interp.Prepare(node), kTfLiteOk) << interp.error();
  EXPECT_EQ(interp.Invoke(node, &out), kTfLiteError);
  EXPECT_EQ(interp.error(), "KVCacheAttention: positions 11..12 are outside the KV cache of 12 positions");
}

TEST(KVCacheAttentionTest, MalformedNodesFailInPrepare) {
  struct Case {
    const char* name;
    void (*spoil)(Step*, FakeInterpreter*);
    const char* message;
  };
  const std::vector<Case> cases = {
      {"keys with the wrong dim",
       [](Step* s, FakeInterpreter* i) { s->k.resize(kHeads * (kDim + 1) * s->t); },
       "KVCacheAttention: new keys [2, 17, 2] and new values [2, 2, 16] do not match q [2, 6, 16] "
       "(expected [H, D, T], [H, T, D])"},
      {"cache max_len below the new tokens", [](Step* s, FakeInterpreter*) { s->cache[1] = 1; },
       "KVCacheAttention: cache 0 holds 1 positions, fewer than the 2 new tokens"},
      {"no CPU backend context",
       [](Step*, FakeInterpreter* i) { i->set_has_cpu_backend_context(false); },
       "KVCacheAttention: the interpreter has no CPU backend context to key its KV cache by"},
  };
  for (const Case& c : cases) {
    std::mt19937 rng(1);
    FakeInterpreter interp;
    Step step(&rng, 2);
    c.spoil(&step, &interp);
    const int rows = kGroups * step.t;
    const std::vector<int> k_shape = {kHeads, static_cast<int>(step.k.size()) / (kHeads * step.t), step.t};
    std::vector<int> ids = {
        interp.AddTensor(kTfLiteFloat32, {kHeads, rows, kDim}, step.q.data(), step.q.size() * 4, false),
        interp.AddTensor(kTfLiteFloat32, k_shape, step.k.data(), step.k.size() * 4, false),
        interp.AddTensor(kTfLiteFloat32, {kHeads, step.t, kDim}, step.v.data(), step.v.size() * 4, false),
        interp.AddTensor(kTfLiteInt32, {3}, step.index.data(), 12, false),
        interp.AddTensor(kTfLiteFloat32, {}, &step.scale, 4, true),
        interp.AddTensor(kTfLiteInt32, {2}, step.cache.data(), 8, true),
    };
    const int out = interp.AddTensor(kTfLiteFloat32, {1}, nullptr, 0, false);
    std::vector<float> y;
    EXPECT_EQ(interp.Run(KVCacheAttentionRegistration(), ids, out, &y), kTfLiteError) << c.name;
    EXPECT_EQ(interp.error(), c.message) << c.name;
  }
}

// Token-major nodes (q [1, T, H·G, D], keys and values [1, T, H, D]: the projections' layout) share the cache with
// head-major ones and give the same values, the output as [1, T, H·G·D]; inputs that disagree are refused.
TEST(KVCacheAttentionTest, TokenMajorNodesMatchTheReference) {
  std::mt19937 rng(9);
  FakeInterpreter interp;
  Step head_major(&rng, 4), step(&rng, 1);
  step.index[2] = 4;
  // step's data, token-major: q[t][h·G + g][d] = q[h][g·T + t][d]; keys / values [t][h][d].
  std::vector<float> q(step.q.size()), k(step.k.size()), v(step.v.size());
  for (int h = 0; h < kHeads; ++h) {
    for (int j = 0; j < kDim; ++j) {
      k[h * kDim + j] = step.k[h * kDim + j];  // T = 1: [H, D, 1] and [1, H, D] hold the same order
      v[h * kDim + j] = step.v[h * kDim + j];
      for (int g = 0; g < kGroups; ++g) q[(h * kGroups + g) * kDim + j] = step.q[(h * kGroups + g) * kDim + j];
    }
  }
  const int p = head_major.AddTo(&interp, KVCacheAttentionRegistration());
  const std::vector<int> ids = {
      interp.AddTensor(kTfLiteFloat32, {1, 1, kHeads * kGroups, kDim}, q.data(), q.size() * 4, false),
      interp.AddTensor(kTfLiteFloat32, {1, 1, kHeads, kDim}, k.data(), k.size() * 4, false),
      interp.AddTensor(kTfLiteFloat32, {1, 1, kHeads, kDim}, v.data(), v.size() * 4, false),
      interp.AddTensor(kTfLiteInt32, {3}, step.index.data(), 12, false),
      interp.AddTensor(kTfLiteFloat32, {}, &step.scale, 4, true),
      interp.AddTensor(kTfLiteInt32, {2}, step.cache.data(), 8, true),
  };
  const int out = interp.AddTensor(kTfLiteFloat32, {1}, nullptr, 0, false);
  const int d = interp.AddNode(KVCacheAttentionRegistration(), ids, out);
  std::vector<float> y;
  ASSERT_EQ(interp.Prepare(p), kTfLiteOk) << interp.error();
  ASSERT_EQ(interp.Invoke(p, &y), kTfLiteOk) << interp.error();
  ASSERT_EQ(interp.Prepare(d), kTfLiteOk) << interp.error();
  ASSERT_EQ(interp.Invoke(d, &y), kTfLiteOk) << interp.error();
  const TfLiteIntArray* dims = interp.tensor(out).dims;
  EXPECT_EQ(std::vector<int>(dims->data, dims->data + dims->size), (std::vector<int>{1, 1, kHeads * kGroups * kDim}));
  ReferenceConversation reference(kHeads, kDim);
  reference.Write(head_major.k, head_major.v, 4, 0);
  reference.Write(step.k, step.v, 1, 4);
  ExpectNear(y, reference.Attend(step.q, kGroups, 1, 4, step.scale));  // T = 1: both layouts list the same values

  // A 5-token token-major prefill against its head-major twin, value for value.
  FakeInterpreter twin, token;
  Step five(&rng, 5);
  const int t = 5;
  std::vector<float> q5(five.q.size()), k5(five.k.size()), v5(five.v.size());
  for (int h = 0; h < kHeads; ++h) {
    for (int i = 0; i < t; ++i) {
      for (int j = 0; j < kDim; ++j) {
        k5[(i * kHeads + h) * kDim + j] = five.k[(h * kDim + j) * t + i];
        v5[(i * kHeads + h) * kDim + j] = five.v[(h * t + i) * kDim + j];
        for (int g = 0; g < kGroups; ++g) {
          q5[((i * kHeads + h) * kGroups + g) * kDim + j] = five.q[((h * kGroups + g) * t + i) * kDim + j];
        }
      }
    }
  }
  std::vector<float> want, got;
  const int w = five.AddTo(&twin, KVCacheAttentionRegistration());
  ASSERT_EQ(twin.Prepare(w), kTfLiteOk) << twin.error();
  ASSERT_EQ(twin.Invoke(w, &want), kTfLiteOk) << twin.error();
  for (int bad_heads : {kHeads, 4}) {  // 4 KV heads do not divide the 6 query heads
    const std::vector<int> ids5 = {
        token.AddTensor(kTfLiteFloat32, {1, t, kHeads * kGroups, kDim}, q5.data(), q5.size() * 4, false),
        token.AddTensor(kTfLiteFloat32, {1, t, bad_heads, kDim * kHeads / bad_heads}, k5.data(), k5.size() * 4, false),
        token.AddTensor(kTfLiteFloat32, {1, t, bad_heads, kDim * kHeads / bad_heads}, v5.data(), v5.size() * 4, false),
        token.AddTensor(kTfLiteInt32, {3}, five.index.data(), 12, false),
        token.AddTensor(kTfLiteFloat32, {}, &five.scale, 4, true),
        token.AddTensor(kTfLiteInt32, {2}, five.cache.data(), 8, true),
    };
    const int o = token.AddTensor(kTfLiteFloat32, {1}, nullptr, 0, false);
    if (bad_heads != kHeads) {
      EXPECT_EQ(token.Run(KVCacheAttentionRegistration(), ids5, o, &got), kTfLiteError);
      EXPECT_EQ(token.error(), "KVCacheAttention: q [1, 5, 6, 16], new keys [1, 5, 4, 8] and new values "
                               "[1, 5, 4, 8] do not match (expected [1, T, H·G, D], [1, T, H, D], [1, T, H, D])");
      continue;
    }
    ASSERT_EQ(token.Run(KVCacheAttentionRegistration(), ids5, o, &got), kTfLiteOk) << token.error();
    ASSERT_EQ(got.size(), want.size());
    for (int h = 0; h < kHeads; ++h) {
      for (int g = 0; g < kGroups; ++g) {
        for (int i = 0; i < t; ++i) {
          for (int j = 0; j < kDim; ++j) {
            ASSERT_EQ(got[((i * kHeads + h) * kGroups + g) * kDim + j], want[((h * kGroups + g) * t + i) * kDim + j]);
          }
        }
      }
    }
  }
}

TEST(KVCacheAttentionTest, SameCacheIdWithAnotherShapeFails) {
  std::mt19937 rng(6);
  FakeInterpreter interp;
  Step first(&rng, 2), second(&rng, 1);
  second.cache[1] = kMaxLen + 4;
  const int a = first.AddTo(&interp, KVCacheAttentionRegistration());
  const int b = second.AddTo(&interp, KVCacheAttentionRegistration());
  ASSERT_EQ(interp.Prepare(a), kTfLiteOk) << interp.error();
  EXPECT_EQ(interp.Prepare(b), kTfLiteError);
  EXPECT_EQ(interp.error(),
            "KVCacheAttention: cache 0 is [2 heads, 16 dims, 12 positions] in another node, this node "
            "needs [2, 16, 16]");
}

}  // namespace
}  // namespace tvlm
