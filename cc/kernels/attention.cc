#include "cc/kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include <sys/mman.h>

#include "cc/kernels/vector_clones.h"
#include "cc/kernels/vector_exp.h"

namespace tvlm {

KVCache::KVCache(int heads, int dim, int max_len)
    : heads_(heads),
      dim_(dim),
      max_len_(max_len),
      tiles_((max_len + kTile - 1) / kTile),
      k_(MapZeroed(static_cast<size_t>(heads) * tiles_ * dim * kTile)),
      v_(MapZeroed(static_cast<size_t>(heads) * max_len * dim)) {}

KVCache::Pages KVCache::MapZeroed(size_t floats) {
  const size_t bytes = floats * sizeof(float);
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  return Pages(static_cast<float*>(p), Unmap{bytes});
}

void KVCache::Unmap::operator()(float* p) const { munmap(p, bytes); }

Status KVCache::Create(int heads, int dim, int max_len, std::unique_ptr<KVCache>* cache) {
  const std::string sizes = std::to_string(heads) + " heads, " + std::to_string(dim) + " dims, " +
                            std::to_string(max_len) + " positions";
  if (heads <= 0 || dim <= 0 || max_len <= 0) {
    return Status::Error("a KV cache of " + sizes + " is empty or negative");
  }
  // Keys are stored in whole tiles; both in double so that no product can wrap.
  const double tiles = std::ceil(static_cast<double>(max_len) / kTile);
  const double bytes = sizeof(float) * static_cast<double>(heads) * dim * (tiles * kTile + max_len);
  if (bytes > static_cast<double>(kMaxBytes)) {
    return Status::Error("a KV cache of " + sizes + " would take " +
                         std::to_string(static_cast<long long>(bytes / (1 << 20))) +
                         " MiB, more than the " + std::to_string(kMaxBytes >> 20) + " MiB limit");
  }
  try {
    cache->reset(new KVCache(heads, dim, max_len));
  } catch (const std::bad_alloc&) {
    return Status::Error("out of memory for a KV cache of " + sizes);
  }
  return Status::Ok();
}

namespace {

Status CheckSpan(int t, int start, int max_len) {
  if (t <= 0 || start < 0 || start > max_len - t) {
    return Status::Error("positions " + std::to_string(start) + ".." + std::to_string(start + t - 1) +
                         " are outside the KV cache of " + std::to_string(max_len) + " positions");
  }
  return Status::Ok();
}

// Both products, compiled per x86 ISA (vector_clones.h) and written with its eight-lane vectors, so that every
// accumulator stays in a register (a 16-lane vector type does not fit one on AVX2, and GCC spilled it at every
// multiply-add). Lane by lane they add in the order of the plain loops: no float sum is reassociated.

constexpr int kTile = KVCache::kTile;
constexpr int kHalves = kTile / 8;  // F32x8 per key tile row
static_assert(kTile % 8 == 0, "a key tile is whole eight-lane vectors");

// scores[s] = sum_j q[j] * key[s][j] for the positions of `tiles` key tiles ([dim][kTile] each, read in
// order); positions past the last written one get scores too, which the caller ignores.
TVLM_VECTOR_CLONES void Scores(const float* __restrict q, const float* __restrict keys, int dim, int tiles,
                               float* __restrict scores) {
  for (int tile = 0; tile < tiles; ++tile) {
    const float* block = keys + static_cast<size_t>(tile) * dim * kTile;
    // Four partial sums over j: independent multiply-add chains instead of one latency-bound chain.
    F32x8 acc[4][kHalves] = {};
    F32x8 row;
    int j = 0;
    for (; j + 4 <= dim; j += 4) {
      for (int u = 0; u < 4; ++u) {
        for (int h = 0; h < kHalves; ++h) {
          std::memcpy(&row, block + (j + u) * kTile + 8 * h, sizeof(row));
          acc[u][h] += q[j + u] * row;
        }
      }
    }
    for (; j < dim; ++j) {
      for (int h = 0; h < kHalves; ++h) {
        std::memcpy(&row, block + j * kTile + 8 * h, sizeof(row));
        acc[0][h] += q[j] * row;
      }
    }
    for (int h = 0; h < kHalves; ++h) {
      const F32x8 sum = (acc[0][h] + acc[1][h]) + (acc[2][h] + acc[3][h]);
      std::memcpy(scores + tile * kTile + 8 * h, &sum, sizeof(sum));
    }
  }
}

// out[j] = sum_s p[s] * values[s * dim + j], in order of s: blocks of 64 dimensions (eight vector accumulators)
// over all positions, then blocks of 8, then single dimensions.
TVLM_VECTOR_CLONES void WeightedSum(const float* __restrict p, const float* __restrict values, int n, int dim,
                                    float* __restrict out) {
  constexpr int kBlock = 8;  // vectors per wide block
  F32x8 row;
  int j = 0;
  for (; j + 8 * kBlock <= dim; j += 8 * kBlock) {
    F32x8 acc[kBlock] = {};
    for (int s = 0; s < n; ++s) {
      const float* r = values + static_cast<size_t>(s) * dim + j;
      for (int c = 0; c < kBlock; ++c) {
        std::memcpy(&row, r + 8 * c, sizeof(row));
        acc[c] += p[s] * row;
      }
    }
    for (int c = 0; c < kBlock; ++c) std::memcpy(out + j + 8 * c, &acc[c], sizeof(row));
  }
  for (; j + 8 <= dim; j += 8) {
    F32x8 acc = {};
    for (int s = 0; s < n; ++s) {
      std::memcpy(&row, values + static_cast<size_t>(s) * dim + j, sizeof(row));
      acc += p[s] * row;
    }
    std::memcpy(out + j, &acc, sizeof(row));
  }
  for (; j < dim; ++j) {
    float acc = 0.0f;
    for (int s = 0; s < n; ++s) acc += p[s] * values[static_cast<size_t>(s) * dim + j];
    out[j] = acc;
  }
}

// scores[0..n) = softmax(scale · scores[0..n)), eight lanes at a time over n rounded up to a multiple of 8 (the
// buffer holds whole key tiles; the lanes past n are set to -inf and come out as 0). e^x by vector_exp.h, within
// 2^-21 relative; a difference from the top score below -88 counts as -88 (e^-88 < 1e-38 against the top's 1),
// and a score of -inf gives 0, as e^-inf would.
TVLM_VECTOR_CLONES void Softmax(float* __restrict scores, int n, float scale) {
  const int padded = (n + 7) / 8 * 8;
  F32x8 x, top = F32x8{} - INFINITY;
  for (int s = 0; s < padded; s += 8) {
    std::memcpy(&x, scores + s, sizeof(x));
    x *= scale;
    std::memcpy(scores + s, &x, sizeof(x));
  }
  for (int s = n; s < padded; ++s) scores[s] = -INFINITY;
  for (int s = 0; s < padded; s += 8) {
    std::memcpy(&x, scores + s, sizeof(x));
    top = x > top ? x : top;
  }
  float max = top[0];
  for (int l = 1; l < 8; ++l) max = std::max(max, top[l]);
  F32x8 sum = {};
  for (int s = 0; s < padded; s += 8) {
    std::memcpy(&x, scores + s, sizeof(x));
    F32x8 d = x - max;
    d = d < -88.0f ? F32x8{} - 88.0f : d;
    F32x8 e = Exp(d);
    e = x == -INFINITY ? F32x8{} : e;
    sum += e;
    std::memcpy(scores + s, &e, sizeof(e));
  }
  const float inv = 1.0f / (((sum[0] + sum[1]) + (sum[2] + sum[3])) + ((sum[4] + sum[5]) + (sum[6] + sum[7])));
  for (int s = 0; s < padded; s += 8) {
    std::memcpy(&x, scores + s, sizeof(x));
    x *= inv;
    std::memcpy(scores + s, &x, sizeof(x));
  }
}

}  // namespace

Status KVCache::Write(const float* new_k, const float* new_v, int t, int start, TokenLayout layout) {
  Status span = CheckSpan(t, start, max_len_);
  if (!span.ok()) return span;
  const bool token_major = layout == TokenLayout::kTokenMajor;
  for (int h = 0; h < heads_; ++h) {
    float* keys = k_.get() + static_cast<size_t>(h) * tiles_ * dim_ * kTile;
    float* values = v_.get() + (static_cast<size_t>(h) * max_len_ + start) * dim_;
    for (int i = 0; i < t; ++i) {  // position p: lane p % kTile of every row of tile p / kTile
      const int p = start + i;
      float* column = keys + static_cast<size_t>(p / kTile) * dim_ * kTile + p % kTile;
      if (token_major) {
        const size_t row = (static_cast<size_t>(i) * heads_ + h) * dim_;
        for (int j = 0; j < dim_; ++j) column[j * kTile] = new_k[row + j];
        std::memcpy(values + static_cast<size_t>(i) * dim_, new_v + row, sizeof(float) * dim_);
      } else {
        for (int j = 0; j < dim_; ++j) column[j * kTile] = new_k[(static_cast<size_t>(h) * dim_ + j) * t + i];
      }
    }
    if (!token_major) {  // value rows: one block
      std::memcpy(values, new_v + static_cast<size_t>(h) * t * dim_, sizeof(float) * t * dim_);
    }
  }
  return Status::Ok();
}

Status KVCache::Attend(const float* q, int rows, int t, int start, float scale, float* out,
                       ThreadPool* pool, TokenLayout layout) const {
  Status span = CheckSpan(t, start, max_len_);
  if (!span.ok()) return span;
  if (rows <= 0 || rows % t != 0) {
    return Status::Error(std::to_string(rows) + " query rows are not a multiple of " +
                         std::to_string(t) + " tokens");
  }
  ParallelFor(pool, static_cast<size_t>(heads_) * rows, 1, [&](size_t begin, size_t end) {
    thread_local std::vector<float> scores;
    scores.resize(static_cast<size_t>(tiles_) * kTile);
    for (size_t i = begin; i < end; ++i) {
      const int h = static_cast<int>(i / rows), r = static_cast<int>(i % rows);
      const float* keys = k_.get() + static_cast<size_t>(h) * tiles_ * dim_ * kTile;
      const float* values = v_.get() + static_cast<size_t>(h) * max_len_ * dim_;
      const int group = rows / t, g = r / t, token = r % t;  // row r = g * T + token
      const size_t at = layout == TokenLayout::kHeadMajor
                            ? i * dim_  // [heads, rows, dim]
                            : ((static_cast<size_t>(token) * heads_ + h) * group + g) * dim_;  // [T, heads·G, dim]
      const float* qr = q + at;
      float* o = out + at;
      const int n = start + r % t + 1;  // positions this query sees
      Scores(qr, keys, dim_, (n + kTile - 1) / kTile, scores.data());
      Softmax(scores.data(), n, scale);
      WeightedSum(scores.data(), values, n, dim_, o);
    }
  });
  return Status::Ok();
}

}  // namespace tvlm
