// KVCache against the double-precision reference: a prefill then decode steps, grouped queries,
// the positions a query may see, and bad positions/shapes rejected with a message.
#include "cc/kernels/attention.h"

#include <unistd.h>

#include <cmath>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cc/kernels/tests/attention_reference.h"
#include "gtest/gtest.h"

namespace tvlm {
namespace {

void ExpectNear(const std::vector<float>& got, const std::vector<double>& want, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 2e-5) << what << " i=" << i;
}

TEST(KVCacheTest, PrefillThenDecodeMatchesReference) {
  std::mt19937 rng(7);
  const int heads = 3, dim = 64, max_len = 40, groups = 3;
  KVCache cache(heads, dim, max_len);
  ReferenceConversation reference(heads, dim);
  const float scale = 0.125f;
  ThreadPool two(2), three(3);
  int position = 0;
  // A 9-token prefill, then single-token decode steps up to the last position of the cache.
  for (int t : {9, 1, 1, 1}) {
    const int rows = groups * t;
    auto q = RandomFloats(&rng, static_cast<size_t>(heads) * rows * dim, 2.0f);
    auto k = RandomFloats(&rng, static_cast<size_t>(heads) * dim * t, 2.0f);
    auto v = RandomFloats(&rng, static_cast<size_t>(heads) * t * dim);
    ASSERT_TRUE(cache.Write(k.data(), v.data(), t, position).ok());
    reference.Write(k, v, t, position);
    std::vector<float> out(q.size());
    ASSERT_TRUE(cache.Attend(q.data(), rows, t, position, scale, out.data()).ok());
    ExpectNear(out, reference.Attend(q, rows, t, position, scale), t > 1 ? "prefill" : "decode");
    // Split over threads, each query row is computed exactly as inline.
    for (ThreadPool* pool : {&two, &three}) {
      std::vector<float> split(q.size());
      ASSERT_TRUE(cache.Attend(q.data(), rows, t, position, scale, split.data(), pool).ok());
      EXPECT_EQ(split, out) << pool->num_threads() << " threads, " << t << " new tokens";
    }
    position += t;
  }
  const Status last = cache.Write(std::vector<float>(heads * dim).data(),
                                  std::vector<float>(heads * dim).data(), 1, max_len - 1);
  EXPECT_TRUE(last.ok()) << last.message();
}

// TokenLayout::kTokenMajor: the same keys, values and queries given in the projections' own layout ([T, heads, dim],
// q and out [T, heads·G, dim]) give the same cache and, bit for bit, the same outputs as the head-major layout.
TEST(KVCacheTest, TokenMajorLayoutEqualsHeadMajor) {
  std::mt19937 rng(11);
  const int heads = 3, dim = 20, max_len = 40, groups = 2;
  KVCache head_major(heads, dim, max_len), token_major(heads, dim, max_len);
  ThreadPool two(2);
  int position = 0;
  for (int t : {7, 1, 1}) {
    const int rows = groups * t;
    auto q = RandomFloats(&rng, static_cast<size_t>(heads) * rows * dim, 2.0f);  // [heads, G·T, dim]
    auto k = RandomFloats(&rng, static_cast<size_t>(heads) * dim * t, 2.0f);     // [heads, dim, T]
    auto v = RandomFloats(&rng, static_cast<size_t>(heads) * t * dim);           // [heads, T, dim]
    std::vector<float> q_t(q.size()), k_t(k.size()), v_t(v.size());
    for (int h = 0; h < heads; ++h) {
      for (int i = 0; i < t; ++i) {
        for (int j = 0; j < dim; ++j) {
          k_t[(static_cast<size_t>(i) * heads + h) * dim + j] = k[(static_cast<size_t>(h) * dim + j) * t + i];
          v_t[(static_cast<size_t>(i) * heads + h) * dim + j] = v[(static_cast<size_t>(h) * t + i) * dim + j];
          for (int g = 0; g < groups; ++g) {
            q_t[((static_cast<size_t>(i) * heads + h) * groups + g) * dim + j] =
                q[((static_cast<size_t>(h) * groups + g) * t + i) * dim + j];
          }
        }
      }
    }
    ASSERT_TRUE(head_major.Write(k.data(), v.data(), t, position).ok());
    ASSERT_TRUE(token_major.Write(k_t.data(), v_t.data(), t, position, TokenLayout::kTokenMajor).ok());
    std::vector<float> out(q.size()), out_t(q.size());
    ASSERT_TRUE(head_major.Attend(q.data(), rows, t, position, 0.25f, out.data()).ok());
    ASSERT_TRUE(token_major.Attend(q_t.data(), rows, t, position, 0.25f, out_t.data(), &two,
                                   TokenLayout::kTokenMajor).ok());
    for (int h = 0; h < heads; ++h) {
      for (int g = 0; g < groups; ++g) {
        for (int i = 0; i < t; ++i) {
          for (int j = 0; j < dim; ++j) {
            ASSERT_EQ(out_t[((static_cast<size_t>(i) * heads + h) * groups + g) * dim + j],
                      out[((static_cast<size_t>(h) * groups + g) * t + i) * dim + j])
                << "head " << h << " group " << g << " token " << i << " dim " << j;
          }
        }
      }
    }
    position += t;
  }
}

// Every decode step to the last slot of a cache spanning several 16-position key tiles, with head
// dims that are not a multiple of 4 or 8 (5: scalar only; 18: two vectors and a tail; 67: a 64-wide block and a
// tail), each output value checked.
TEST(KVCacheTest, DecodesToTheLastPositionAcrossTilesWithOddHeadDims) {
  for (int dim : {5, 18, 67}) {
    std::mt19937 rng(dim);
    const int heads = 2, max_len = 37, groups = 2;  // tiles [0,16) [16,32) [32,37)
    KVCache cache(heads, dim, max_len);
    ReferenceConversation reference(heads, dim);
    const float scale = 1.0f / std::sqrt(static_cast<float>(dim));
    int position = 0;
    for (int t = 3; position + t <= max_len; position += t, t = 1) {  // a 3-token prefill, then decode
      const int rows = groups * t;
      auto q = RandomFloats(&rng, static_cast<size_t>(heads) * rows * dim, 2.0f);
      auto k = RandomFloats(&rng, static_cast<size_t>(heads) * dim * t, 2.0f);
      auto v = RandomFloats(&rng, static_cast<size_t>(heads) * t * dim);
      ASSERT_TRUE(cache.Write(k.data(), v.data(), t, position).ok());
      reference.Write(k, v, t, position);
      std::vector<float> out(q.size());
      ASSERT_TRUE(cache.Attend(q.data(), rows, t, position, scale, out.data()).ok());
      SCOPED_TRACE("dim " + std::to_string(dim) + ", position " + std::to_string(position));
      ExpectNear(out, reference.Attend(q, rows, t, position, scale), "step");
    }
    EXPECT_EQ(position, max_len);
  }
}

TEST(KVCacheTest, QueriesNeverSeeLaterPositions) {
  // Keys/values written beyond a query's position (prefill padding, an earlier longer conversation)
  // must not change its output.
  std::mt19937 rng(3);
  const int heads = 2, dim = 8, max_len = 16;
  KVCache a(heads, dim, max_len), b(heads, dim, max_len);
  auto k = RandomFloats(&rng, heads * dim * 4), v = RandomFloats(&rng, heads * 4 * dim);
  auto junk_k = RandomFloats(&rng, heads * dim * 8), junk_v = RandomFloats(&rng, heads * 8 * dim);
  ASSERT_TRUE(b.Write(junk_k.data(), junk_v.data(), 8, 4).ok());
  ASSERT_TRUE(a.Write(k.data(), v.data(), 4, 0).ok());
  ASSERT_TRUE(b.Write(k.data(), v.data(), 4, 0).ok());
  auto q = RandomFloats(&rng, heads * 4 * dim);
  std::vector<float> out_a(q.size()), out_b(q.size());
  ASSERT_TRUE(a.Attend(q.data(), 4, 4, 0, 0.3f, out_a.data()).ok());
  ASSERT_TRUE(b.Attend(q.data(), 4, 4, 0, 0.3f, out_b.data()).ok());
  EXPECT_EQ(out_a, out_b);
}

TEST(KVCacheTest, RejectsPositionsOutsideTheCacheAndRaggedRows) {
  KVCache cache(1, 4, 8);
  std::vector<float> k(4 * 2), v(2 * 4), q(3 * 4), out(3 * 4);
  Status s = cache.Write(k.data(), v.data(), 2, 7);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), "positions 7..8 are outside the KV cache of 8 positions");
  EXPECT_FALSE(cache.Write(k.data(), v.data(), 1, -1).ok());
  s = cache.Attend(q.data(), 3, 2, 0, 1.0f, out.data());
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), "3 query rows are not a multiple of 2 tokens");
}

// Sizes come from a model file: a corrupt one (found by //cc/tflite/fuzz:ops_fuzz: max_len 2^31 - 1,
// whose tile count wrapped to a negative int) gets an error, not an allocation of everything.
TEST(KVCacheTest, CreateRejectsEmptyAndHugeCaches) {
  std::unique_ptr<KVCache> cache;
  Status s = KVCache::Create(8, 64, 2147483647, &cache);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), "a KV cache of 8 heads, 64 dims, 2147483647 positions would take "
                         "8388607 MiB, more than the 1024 MiB limit");
  EXPECT_EQ(cache, nullptr);
  s = KVCache::Create(2, 0, 16, &cache);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), "a KV cache of 2 heads, 0 dims, 16 positions is empty or negative");
  ASSERT_TRUE(KVCache::Create(2, 16, 40, &cache).ok());
  EXPECT_EQ(cache->max_len(), 40);
}

// Resident set size of this process now (Linux: /proc/self/statm's second field, in pages).
double ResidentMiB() {
  std::ifstream statm("/proc/self/statm");
  long size = 0, resident = 0;
  statm >> size >> resident;
  return static_cast<double>(resident) * sysconf(_SC_PAGESIZE) / (1 << 20);
}

// A cache costs memory for the positions written, not for max_len: a 256 MiB cache (8 heads of 128 at
// 32k positions, a 7B-class layer) given a 64-token prompt grows the process by about 8 * 64 * 128 * 4 * 2 B
// = 0.5 MiB (whole pages: key tiles of 16 positions are 8 KiB), far below the quarter of the cache that
// the bound allows for allocator and test noise; zero-filling it would add all 256 MiB.
TEST(KVCacheTest, HoldsOnlyTheWrittenPositionsInMemory) {
  const int heads = 8, dim = 128, max_len = 32768, t = 64;
  const double before = ResidentMiB();
  std::unique_ptr<KVCache> cache;
  ASSERT_TRUE(KVCache::Create(heads, dim, max_len, &cache).ok());
  std::mt19937 rng(3);
  auto k = RandomFloats(&rng, static_cast<size_t>(heads) * dim * t);
  auto v = RandomFloats(&rng, static_cast<size_t>(heads) * t * dim);
  ASSERT_TRUE(cache->Write(k.data(), v.data(), t, 0).ok());
  std::vector<float> q(static_cast<size_t>(heads) * t * dim, 0.5f), out(q.size());
  ASSERT_TRUE(cache->Attend(q.data(), t, t, 0, 0.1f, out.data()).ok());
  const double cache_mib = 2.0 * heads * dim * max_len * sizeof(float) / (1 << 20);
  EXPECT_LT(ResidentMiB() - before, cache_mib / 4) << "of a " << cache_mib << " MiB cache";
  const Status last = cache->Write(k.data(), v.data(), 1, max_len - 1);
  EXPECT_TRUE(last.ok()) << last.message();
}

}  // namespace
}  // namespace tvlm
