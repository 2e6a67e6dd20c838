#include "cc/tflite/unpack_op.h"

#include <string>
#include <vector>

#include "cc/kernels/packing.h"
#include "cc/tflite/op_util.h"
#include "cc/tflite/thread_pools.h"

namespace tvlm {
namespace {

constexpr const char* kName = "UnpackTernary";
constexpr int kPacked = 0, kScale = 1, kShape = 2;
constexpr WeightFormat kFormat = WeightFormat::kTernary2;
// Below this many weights a thread hand-off costs more than it saves.
constexpr size_t kMinParallelWeights = size_t{1} << 16;

struct OpData {
  NodeIndices node;
  const void* validated = nullptr;  // the packed buffer whose codes were checked
  size_t n = 0, k = 0;
  ThreadPool* pool = nullptr;
};

TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
  OpData& op = *static_cast<OpData*>(node->user_data);
  if (BindNode(context, kName, node, &op.node, 3, 3, "packed weights, scale, shape") != kTfLiteOk) {
    return kTfLiteError;
  }
  const std::vector<int>& inputs = op.node.inputs;
  const TfLiteTensor* packed = &context->tensors[inputs[kPacked]];
  const TfLiteTensor* scale = &context->tensors[inputs[kScale]];
  const TfLiteTensor* shape = &context->tensors[inputs[kShape]];
  if (CheckTensor(context, kName, packed, "packed weights", kTfLiteUInt8, 2) != kTfLiteOk ||
      CheckTensor(context, kName, scale, "scale", kTfLiteFloat32, 1) != kTfLiteOk ||
      CheckTensor(context, kName, shape, "shape", kTfLiteInt32, 1) != kTfLiteOk) {
    return kTfLiteError;
  }
  if (shape->dims->data[0] != 2 || !IsConstant(shape) || shape->data.i32 == nullptr) {
    return Fail(context, kName, "shape must be a constant int32 [2] = {N, K}, got " +
                                    Shape(shape->dims));
  }
  const int n = shape->data.i32[0], k = shape->data.i32[1];
  if (n <= 0 || k <= 0) {
    return Fail(context, kName, "shape {" + std::to_string(n) + ", " + std::to_string(k) +
                                    "} must be positive");
  }
  const size_t row_bytes = RowBytes(kFormat, k);
  if (packed->dims->data[0] != n || static_cast<size_t>(packed->dims->data[1]) != row_bytes) {
    return Fail(context, kName, "packed weights have shape " + Shape(packed->dims) +
                                    ", expected [" + std::to_string(n) + ", " +
                                    std::to_string(row_bytes) + "] for shape {" +
                                    std::to_string(n) + ", " + std::to_string(k) + "}");
  }
  if (scale->dims->data[0] != n) {
    return Fail(context, kName, "scale has shape " + Shape(scale->dims) + ", expected [" +
                                    std::to_string(n) + "]");
  }
  if (!IsConstant(packed)) return Fail(context, kName, "packed weights must be a constant tensor");
  if (packed->data.raw == nullptr || packed->bytes != static_cast<size_t>(n) * row_bytes) {
    return Fail(context, kName, "packed weights buffer holds " + std::to_string(packed->bytes) +
                                    " bytes, expected " + std::to_string(n * row_bytes));
  }
  if (op.validated != packed->data.raw || op.n != static_cast<size_t>(n) ||
      op.k != static_cast<size_t>(k)) {
    std::vector<int8_t> codes(static_cast<size_t>(n) * k);  // transient: validation only
    const Status status = Unpack(kFormat, packed->data.uint8, n, k, codes.data());
    if (!status.ok()) return Fail(context, kName, status.message());
    op.validated = packed->data.raw;
    op.n = n;
    op.k = k;
  }
  op.pool = SharedThreadPool(context->recommended_num_threads);
  TfLiteTensor* w = &context->tensors[op.node.output];
  w->type = kTfLiteFloat32;
  return ResizeTo(context, kName, w, {n, k});
}

TfLiteStatus Invoke(TfLiteContext* context, TfLiteNode* node) {
  OpData& op = *static_cast<OpData*>(node->user_data);
  const TfLiteTensor* packed = &context->tensors[op.node.inputs[kPacked]];
  const TfLiteTensor* scale = &context->tensors[op.node.inputs[kScale]];
  TfLiteTensor* w = &context->tensors[op.node.output];
  if (scale->data.raw == nullptr || w->data.raw == nullptr) {
    return Fail(context, kName, "a tensor has no data at Invoke");
  }
  const auto rows = [&](size_t begin, size_t end) {
    Dequantize(kFormat, packed->data.uint8, begin, end, op.k, scale->data.f, w->data.f);
  };
  if (op.n * op.k < kMinParallelWeights) {
    rows(0, op.n);
  } else {
    op.pool->ParallelFor(op.n, 1, rows);
  }
  return kTfLiteOk;
}


OpRegistrations<OpData>& Registrations() {
  static OpRegistrations<OpData> registrations(kName, Prepare, Invoke);
  return registrations;
}

}  // namespace

TfLiteRegistration* UnpackTernaryRegistration() { return &Registrations().plain; }

TfLiteRegistration* DelegatedUnpackRegistration(const char* custom_name) {
  return Registrations().Delegated(custom_name);
}

}  // namespace tvlm
