#ifndef TERNARY_VLM_CC_KERNELS_ATTENTION_H_
#define TERNARY_VLM_CC_KERNELS_ATTENTION_H_

// Causal attention of new tokens against a KV cache that the kernel owns, updated in place.
//
// Layouts (one KV head after another):
//   keys   [heads, ceil(max_len / kTile), dim, kTile]: tiles of kTile positions, so a query's scores for a tile
//          are kTile-wide multiply-adds over one contiguous block (read in order: memory-bound otherwise)
//   values [heads, max_len, dim]: the output is a sum of rows scaled by probabilities
// A step writes T new tokens at positions start..start+T-1 and then attends: query row r of a head
// (rows = G * T, the G query heads sharing that KV head, row r = g * T + t) sees positions
// 0..start + t. Only those positions are read, so a decode step costs O(position), not O(max_len).

#include <cstddef>
#include <memory>

#include "cc/kernels/status.h"
#include "cc/kernels/thread_pool.h"

namespace tvlm {

// Where a step's new tokens (T of them), their queries and the output live:
//   kHeadMajor   q and out [heads, G * T, dim] (row g * T + t: query head g of the KV head's group, token t),
//                keys [heads, dim, T], values [heads, T, dim]
//   kTokenMajor  q and out [T, heads * G, dim] (query head h * G + g reads KV head h), keys and values
//                [T, heads, dim]: the projections' own layout, so a graph needs no transposes around the op
enum class TokenLayout { kHeadMajor, kTokenMajor };

class KVCache {
 public:
  KVCache(int heads, int dim, int max_len);  // sizes as Create checks them; throws std::bad_alloc

  // A zeroed cache, or an error naming the sizes when they are not positive or the cache would
  // exceed kMaxBytes (the sizes come from a model file: a corrupt one must not take all memory).
  // One layer of a 7B-class model (8 KV heads of 128) at 32k positions takes 256 MiB.
  static Status Create(int heads, int dim, int max_len, std::unique_ptr<KVCache>* cache);
  static constexpr size_t kMaxBytes = size_t{1} << 30;

  static constexpr int kTile = 16;  // positions per key tile

  int heads() const { return heads_; }
  int dim() const { return dim_; }
  int max_len() const { return max_len_; }

  // Writes new_k and new_v (laid out as `layout` says) at positions start..start+T-1.
  Status Write(const float* new_k, const float* new_v, int t, int start,
               TokenLayout layout = TokenLayout::kHeadMajor);

  // out[h, r, :] = softmax_s(scale * q[h, r, :] . k[h, :, s]) v[h, s, :] over s <= start + r % t, for the
  // rows = G * T query rows of each KV head h (row r = g * T + t; q and out as `layout` places them;
  // positions never written read as zeros). The heads × rows query rows are independent: a pool splits
  // them, each computed as inline.
  Status Attend(const float* q, int rows, int t, int start, float scale, float* out,
                ThreadPool* pool = nullptr, TokenLayout layout = TokenLayout::kHeadMajor) const;

 private:
  // Anonymous pages mapped by the OS on first write: a cache holds only the positions it was given (the
  // key tiles and value rows are in position order within each head), however long max_len is, and
  // positions never written read as zeros, never another process' memory.
  struct Unmap {
    size_t bytes;
    void operator()(float* p) const;
  };
  using Pages = std::unique_ptr<float, Unmap>;
  static Pages MapZeroed(size_t floats);

  int heads_, dim_, max_len_, tiles_;
  Pages k_, v_;
};

}  // namespace tvlm

#endif  // TERNARY_VLM_CC_KERNELS_ATTENTION_H_
