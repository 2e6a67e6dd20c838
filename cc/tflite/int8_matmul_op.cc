#include "cc/tflite/int8_matmul_op.h"

#include <memory>
#include <string>
#include <vector>

#include "cc/kernels/int8_matmul.h"
#include "cc/tflite/op_util.h"
#include "cc/tflite/thread_pools.h"

namespace tvlm {
namespace {

constexpr const char* kName = "Int8MatMul";
constexpr int kInput = 0, kWeights = 1, kStep = 2;

struct OpData {
  NodeIndices node;
  std::unique_ptr<Int8MatMul> kernel;  // reads the weights tensor in place
  const void* kernel_source = nullptr;
  size_t scratch_bytes = 0;
  ThreadPool* pool = nullptr;
};

TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
  OpData& op = *static_cast<OpData*>(node->user_data);
  if (BindNode(context, kName, node, &op.node, 3, 3, "x, int8 weights, step") != kTfLiteOk) {
    return kTfLiteError;
  }
  const std::vector<int>& in = op.node.inputs;
  const TfLiteTensor* x = &context->tensors[in[kInput]];
  const TfLiteTensor* w = &context->tensors[in[kWeights]];
  const TfLiteTensor* step = &context->tensors[in[kStep]];
  if (CheckTensor(context, kName, x, "input x", kTfLiteFloat32, -1) != kTfLiteOk ||
      CheckTensor(context, kName, w, "int8 weights", kTfLiteInt8, 2) != kTfLiteOk ||
      CheckTensor(context, kName, step, "step", kTfLiteFloat32, 1) != kTfLiteOk) {
    return kTfLiteError;
  }
  const int k = x->dims->data[x->dims->size - 1];
  const int n = w->dims->data[0];
  if (k <= 0) return Fail(context, kName, "input x has an empty last dimension " + Shape(x->dims));
  if (w->dims->data[1] != k || step->dims->data[0] != n) {
    return Fail(context, kName, "int8 weights " + Shape(w->dims) + " and step " + Shape(step->dims) +
                                    " do not match input x " + Shape(x->dims) + " (expected [N, " +
                                    std::to_string(k) + "] and [N])");
  }
  if (!IsConstant(w) || !IsConstant(step)) {
    return Fail(context, kName, "int8 weights and step must be constant tensors");
  }
  if (w->data.raw == nullptr || w->bytes != static_cast<size_t>(n) * k || step->data.raw == nullptr ||
      step->bytes != sizeof(float) * n) {
    return Fail(context, kName, "int8 weights hold " + std::to_string(w->bytes) + " bytes and step " +
                                    std::to_string(step->bytes) + ", expected " +
                                    std::to_string(static_cast<size_t>(n) * k) + " and " +
                                    std::to_string(sizeof(float) * n));
  }
  if (op.kernel == nullptr || op.kernel_source != w->data.raw || op.kernel->n() != static_cast<size_t>(n) ||
      op.kernel->k() != static_cast<size_t>(k)) {
    std::unique_ptr<Int8MatMul> kernel;
    const Status status = Int8MatMul::Create(Int8MatMul::BestIsa(), static_cast<const int8_t*>(static_cast<const void*>(w->data.raw)), n, k, &kernel);
    if (!status.ok()) return Fail(context, kName, status.message());
    op.kernel = std::move(kernel);
    op.kernel_source = w->data.raw;
  }
  size_t m = 1;
  for (int i = 0; i + 1 < x->dims->size; ++i) m *= x->dims->data[i];
  op.scratch_bytes = op.kernel->ScratchBytes(m);
  op.pool = SharedThreadPool(context->recommended_num_threads);
  TfLiteTensor* y = &context->tensors[op.node.output];
  y->type = kTfLiteFloat32;
  return ResizeTo(context, kName, y, {static_cast<int>(m), n});
}

TfLiteStatus Invoke(TfLiteContext* context, TfLiteNode* node) {
  OpData& op = *static_cast<OpData*>(node->user_data);
  const std::vector<int>& in = op.node.inputs;
  const TfLiteTensor* x = &context->tensors[in[kInput]];
  const TfLiteTensor* w = &context->tensors[in[kWeights]];
  const TfLiteTensor* step = &context->tensors[in[kStep]];
  TfLiteTensor* y = &context->tensors[op.node.output];
  if (x->data.raw == nullptr || step->data.raw == nullptr || y->data.raw == nullptr) {
    return Fail(context, kName, "a tensor has no data at Invoke");
  }
  if (w->data.raw == nullptr) return Fail(context, kName, "int8 weights have no data at Invoke");
  const size_t m = x->bytes / (sizeof(float) * op.kernel->k());
  op.kernel->Run(x->data.f, m, step->data.f, y->data.f, InvokeScratch(op.scratch_bytes), op.pool);
  return kTfLiteOk;
}

OpRegistrations<OpData>& Registrations() {
  static OpRegistrations<OpData> registrations(kName, Prepare, Invoke);
  return registrations;
}

}  // namespace

TfLiteRegistration* Int8MatMulRegistration() { return &Registrations().plain; }

TfLiteRegistration* DelegatedInt8MatMulRegistration(const char* custom_name) {
  return Registrations().Delegated(custom_name);
}

}  // namespace tvlm
