#include "cc/kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include <sys/mman.h>

#include "cc/kernels/vector_clones.h"

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

// Both products, compiled per x86 ISA (vector_clones.h). Their inner loops run over contiguous memory (a
// tile's positions, resp. a value row's dimensions), so they vectorize without reassociating a sum.

constexpr int kTile = KVCache::kTile;
typedef float Lanes __attribute__((vector_size(kTile * sizeof(float))));

// scores[s] = sum_j q[j] * key[s][j] for the positions of `tiles` key tiles ([dim][kTile] each, read in
// order); positions past the last written one get scores too, which the caller ignores.
TVLM_VECTOR_CLONES void Scores(const float* __restrict q, const float* __restrict keys, int dim, int tiles,
                               float* __restrict scores) {
  for (int tile = 0; tile < tiles; ++tile) {
    const float* block = keys + static_cast<size_t>(tile) * dim * kTile;
    // Four partial sums over j: independent multiply-add chains instead of one latency-bound chain.
    // (GCC vector types: one kTile-wide register or a few narrower ones, whatever the ISA has.)
    Lanes acc[4] = {};
    int j = 0;
    Lanes row;
    for (; j + 4 <= dim; j += 4) {
      for (int u = 0; u < 4; ++u) {
        std::memcpy(&row, block + (j + u) * kTile, sizeof(row));
        acc[u] += q[j + u] * row;
      }
    }
    for (; j < dim; ++j) {
      std::memcpy(&row, block + j * kTile, sizeof(row));
      acc[0] += q[j] * row;
    }
    const Lanes sum = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    std::memcpy(scores + tile * kTile, &sum, sizeof(sum));
  }
}

// out[j] = sum_s p[s] * values[s * dim + j].
TVLM_VECTOR_CLONES void WeightedSum(const float* __restrict p, const float* __restrict values, int n, int dim,
                                    float* __restrict out) {
  for (int j = 0; j < dim; ++j) out[j] = 0.0f;
  for (int s = 0; s < n; ++s) {
    const float a = p[s];
    const float* row = values + static_cast<size_t>(s) * dim;
    for (int j = 0; j < dim; ++j) out[j] += a * row[j];
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
      float top = -INFINITY;
      for (int s = 0; s < n; ++s) {
        scores[s] *= scale;
        top = std::max(top, scores[s]);
      }
      float sum = 0.0f;
      for (int s = 0; s < n; ++s) {
        scores[s] = std::exp(scores[s] - top);
        sum += scores[s];
      }
      const float inv = 1.0f / sum;
      for (int s = 0; s < n; ++s) scores[s] *= inv;
      WeightedSum(scores.data(), values, n, dim_, o);
    }
  });
  return Status::Ok();
}

}  // namespace tvlm
