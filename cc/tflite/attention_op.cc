#include "cc/tflite/attention_op.h"

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "cc/kernels/attention.h"
#include "cc/tflite/op_util.h"
#include "cc/tflite/thread_pools.h"

namespace tvlm {
namespace {

constexpr const char* kName = "KVCacheAttention";
constexpr int kQ = 0, kNewK = 1, kNewV = 2, kIndex = 3, kScale = 4, kCache = 5;

// Caches shared by the nodes of one interpreter, counted so the last node freed releases them.
class CacheRegistry {
 public:
  using Key = std::pair<const void*, int>;  // (interpreter, cache id)

  static CacheRegistry& Get() {
    static CacheRegistry registry;
    return registry;
  }

  // The cache for key, created zeroed on first use; error if another node made it another shape.
  Status Acquire(const Key& key, int heads, int dim, int max_len, KVCache** cache) {
    std::lock_guard<std::mutex> lock(mutex_);
    Entry& entry = entries_[key];
    if (entry.cache == nullptr) {
      const Status status = KVCache::Create(heads, dim, max_len, &entry.cache);
      if (!status.ok()) {
        entries_.erase(key);
        return status;
      }
    } else if (entry.cache->heads() != heads || entry.cache->dim() != dim ||
               entry.cache->max_len() != max_len) {
      return Status::Error("cache " + std::to_string(key.second) + " is [" +
                           std::to_string(entry.cache->heads()) + " heads, " +
                           std::to_string(entry.cache->dim()) + " dims, " +
                           std::to_string(entry.cache->max_len()) +
                           " positions] in another node, this node needs [" +
                           std::to_string(heads) + ", " + std::to_string(dim) + ", " +
                           std::to_string(max_len) + "]");
    }
    ++entry.users;
    *cache = entry.cache.get();
    return Status::Ok();
  }

  void Release(const Key& key) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = entries_.find(key);
    if (it != entries_.end() && --it->second.users == 0) entries_.erase(it);
  }

 private:
  struct Entry {
    std::unique_ptr<KVCache> cache;
    int users = 0;
  };
  std::mutex mutex_;
  std::map<Key, Entry> entries_;
};

struct OpData {
  ~OpData() {
    if (cache != nullptr) CacheRegistry::Get().Release(key);
  }
  NodeIndices node;
  CacheRegistry::Key key{nullptr, 0};
  KVCache* cache = nullptr;  // shared; released when the node is freed
  float scale = 0.0f;
  TokenLayout layout = TokenLayout::kHeadMajor;  // from q's rank (attention_op.h)
  int t = 0, rows = 0;  // new tokens; query rows per KV head (G · T)
  ThreadPool* pool = nullptr;  // shared by the interpreter's ops (SharedThreadPool)
};

std::string Dims(const TfLiteTensor* t) { return Shape(t->dims); }

TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
  OpData& op = *static_cast<OpData*>(node->user_data);
  if (BindNode(context, kName, node, &op.node, 6, 6,
               "q, new keys, new values, update index, scale, cache") != kTfLiteOk) {
    return kTfLiteError;
  }
  const std::vector<int>& in = op.node.inputs;
  const TfLiteTensor* q = &context->tensors[in[kQ]];
  const TfLiteTensor* new_k = &context->tensors[in[kNewK]];
  const TfLiteTensor* new_v = &context->tensors[in[kNewV]];
  const TfLiteTensor* index = &context->tensors[in[kIndex]];
  const TfLiteTensor* scale = &context->tensors[in[kScale]];
  const TfLiteTensor* cache = &context->tensors[in[kCache]];
  op.layout = q->dims->size == 4 ? TokenLayout::kTokenMajor : TokenLayout::kHeadMajor;
  const bool token_major = op.layout == TokenLayout::kTokenMajor;
  const int rank = token_major ? 4 : 3;
  if (CheckTensor(context, kName, q, "q", kTfLiteFloat32, rank) != kTfLiteOk ||
      CheckTensor(context, kName, new_k, "new keys", kTfLiteFloat32, rank) != kTfLiteOk ||
      CheckTensor(context, kName, new_v, "new values", kTfLiteFloat32, rank) != kTfLiteOk ||
      CheckTensor(context, kName, index, "update index", kTfLiteInt32, 1) != kTfLiteOk ||
      CheckTensor(context, kName, cache, "cache", kTfLiteInt32, 1) != kTfLiteOk) {
    return kTfLiteError;
  }
  const std::vector<int> k_dims(new_k->dims->data, new_k->dims->data + rank);
  const std::vector<int> v_dims(new_v->dims->data, new_v->dims->data + rank);
  int heads, dim, t, rows;
  std::vector<int> out_shape;
  if (token_major) {  // q [1, T, H·G, D], keys and values [1, T, H, D], out [1, T, H·G·D]
    t = k_dims[1], heads = k_dims[2], dim = k_dims[3];
    const int query_heads = q->dims->data[2];
    if (q->dims->data[0] != 1 || k_dims[0] != 1 || q->dims->data[1] != t || q->dims->data[3] != dim ||
        v_dims != k_dims || heads <= 0 || query_heads % heads != 0) {
      return Fail(context, kName, "q " + Dims(q) + ", new keys " + Dims(new_k) + " and new values " + Dims(new_v) +
                                      " do not match (expected [1, T, H·G, D], [1, T, H, D], [1, T, H, D])");
    }
    rows = query_heads / heads * t;
    out_shape = {1, t, query_heads * dim};
  } else {  // q [H, G·T, D], keys [H, D, T], values [H, T, D], out like q
    heads = q->dims->data[0], rows = q->dims->data[1], dim = q->dims->data[2];
    t = k_dims[2];
    if (k_dims != std::vector<int>{heads, dim, t} || v_dims != std::vector<int>{heads, t, dim}) {
      return Fail(context, kName, "new keys " + Dims(new_k) + " and new values " + Dims(new_v) +
                                      " do not match q " + Dims(q) + " (expected [H, D, T], [H, T, D])");
    }
    out_shape = {heads, rows, dim};
  }
  if (heads <= 0 || dim <= 0 || rows <= 0) return Fail(context, kName, "q " + Dims(q) + " is empty");
  if (t <= 0 || rows % t != 0) {
    return Fail(context, kName, "q has " + std::to_string(rows) + " rows, not a multiple of " +
                                    std::to_string(t) + " new tokens");
  }
  if (index->dims->data[0] != 3) {
    return Fail(context, kName, "update index must be int32 [3], got " + Dims(index));
  }
  if (scale->type != kTfLiteFloat32 || !IsConstant(scale) || scale->bytes != sizeof(float) ||
      scale->data.f == nullptr) {
    return Fail(context, kName, "scale must be one constant float32");
  }
  if (cache->dims->data[0] != 2 || !IsConstant(cache) || cache->data.i32 == nullptr) {
    return Fail(context, kName, "cache must be a constant int32 [2] = {id, max_len}, got " +
                                    Dims(cache));
  }
  const int id = cache->data.i32[0], max_len = cache->data.i32[1];
  if (max_len < t) {
    return Fail(context, kName, "cache " + std::to_string(id) + " holds " +
                                    std::to_string(max_len) + " positions, fewer than the " +
                                    std::to_string(t) + " new tokens");
  }
  const void* interpreter = context->GetExternalContext == nullptr
                                ? nullptr
                                : context->GetExternalContext(context, kTfLiteCpuBackendContext);
  if (interpreter == nullptr) {
    return Fail(context, kName, "the interpreter has no CPU backend context to key its KV cache by");
  }
  const CacheRegistry::Key key{interpreter, id};
  if (op.cache == nullptr || op.key != key || op.cache->heads() != heads ||
      op.cache->dim() != dim || op.cache->max_len() != max_len) {
    if (op.cache != nullptr) CacheRegistry::Get().Release(op.key);
    op.cache = nullptr;
    KVCache* shared = nullptr;
    const Status status = CacheRegistry::Get().Acquire(key, heads, dim, max_len, &shared);
    if (!status.ok()) return Fail(context, kName, status.message());
    op.key = key;
    op.cache = shared;
  }
  op.scale = scale->data.f[0];
  op.t = t, op.rows = rows;
  op.pool = SharedThreadPool(context->recommended_num_threads);
  TfLiteTensor* out = &context->tensors[op.node.output];
  out->type = kTfLiteFloat32;
  return ResizeTo(context, kName, out, out_shape);
}

TfLiteStatus Invoke(TfLiteContext* context, TfLiteNode* node) {
  OpData& op = *static_cast<OpData*>(node->user_data);
  const std::vector<int>& in = op.node.inputs;
  const TfLiteTensor* q = &context->tensors[in[kQ]];
  const TfLiteTensor* new_k = &context->tensors[in[kNewK]];
  const TfLiteTensor* new_v = &context->tensors[in[kNewV]];
  const TfLiteTensor* index = &context->tensors[in[kIndex]];
  TfLiteTensor* out = &context->tensors[op.node.output];
  if (q->data.raw == nullptr || new_k->data.raw == nullptr || new_v->data.raw == nullptr ||
      index->data.raw == nullptr || out->data.raw == nullptr) {
    return Fail(context, kName, "a tensor has no data at Invoke");
  }
  const int start = index->data.i32[2];
  Status status = op.cache->Write(new_k->data.f, new_v->data.f, op.t, start, op.layout);
  if (status.ok()) {
    status = op.cache->Attend(q->data.f, op.rows, op.t, start, op.scale, out->data.f, op.pool, op.layout);
  }
  return status.ok() ? kTfLiteOk : Fail(context, kName, status.message());
}

OpRegistrations<OpData>& Registrations() {
  static OpRegistrations<OpData> registrations(kName, Prepare, Invoke);
  return registrations;
}

}  // namespace

TfLiteRegistration* KVCacheAttentionRegistration() { return &Registrations().plain; }

TfLiteRegistration* DelegatedAttentionRegistration(const char* custom_name) {
  return Registrations().Delegated(custom_name);
}

}  // namespace tvlm
