#include "cc/tflite/matmul_op.h"

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "cc/kernels/matmul.h"
#include "cc/kernels/packing.h"
#include "cc/tflite/thread_pools.h"

namespace tvlm {
namespace {

constexpr int kInput = 0, kPacked = 1, kScale = 2, kBias = 3;

struct OpData {
  WeightFormat format;
  const char* name;
  std::vector<int> inputs;  // tensor indices; empty until Prepare unless a delegate set them
  int output = -1;
  std::unique_ptr<MatMulKernel> kernel;
  const void* kernel_source = nullptr;  // the packed buffer the kernel was built from
  std::vector<uint8_t> scratch;
  ThreadPool* pool = nullptr;
};

// Reports "<op>: <message>" through the interpreter and fails.
TfLiteStatus Fail(TfLiteContext* context, const OpData& op, const std::string& message) {
  context->ReportError(context, "%s: %s", op.name, message.c_str());
  return kTfLiteError;
}

std::string Shape(const TfLiteIntArray* dims) {
  std::string s = "[";
  for (int i = 0; i < dims->size; ++i) s += (i ? ", " : "") + std::to_string(dims->data[i]);
  return s + "]";
}

const char* TypeName(TfLiteType type) {
  switch (type) {
    case kTfLiteFloat32: return "float32";
    case kTfLiteUInt8: return "uint8";
    case kTfLiteInt8: return "int8";
    case kTfLiteInt32: return "int32";
    case kTfLiteInt64: return "int64";
    case kTfLiteFloat16: return "float16";
    default: return "another type";
  }
}

TfLiteStatus CheckTensor(TfLiteContext* context, const OpData& op, const TfLiteTensor* t,
                         const char* what, TfLiteType type, int rank /* -1: any >= 1 */) {
  if (t->type != type) {
    return Fail(context, op, std::string(what) + " must be " + TypeName(type) + ", got " +
                                 TypeName(t->type));
  }
  if (t->dims == nullptr || (rank >= 0 && t->dims->size != rank) || t->dims->size < 1) {
    return Fail(context, op, std::string(what) + " must have rank " +
                                 (rank >= 0 ? std::to_string(rank) : std::string(">= 1")) +
                                 ", got shape " + (t->dims ? Shape(t->dims) : std::string("none")));
  }
  return kTfLiteOk;
}

void* InitWith(OpData* op, const TfLiteIntArray* inputs, const TfLiteIntArray* outputs) {
  if (inputs != nullptr) op->inputs.assign(inputs->data, inputs->data + inputs->size);
  if (outputs != nullptr && outputs->size == 1) op->output = outputs->data[0];
  return op;
}

template <WeightFormat kFormat>
void* Init(TfLiteContext*, const char*, size_t) {
  auto* op = new OpData;
  op->format = kFormat;
  op->name = kFormat == WeightFormat::kTernary2 ? "TernaryMatMul" : "BinaryMatMul";
  return op;
}

void Free(TfLiteContext*, void* data) { delete static_cast<OpData*>(data); }

TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
  OpData& op = *static_cast<OpData*>(node->user_data);
  if (op.inputs.empty()) InitWith(&op, node->inputs, node->outputs);
  if (op.inputs.size() != 3 && op.inputs.size() != 4) {
    return Fail(context, op, "expects 3 or 4 inputs (x, packed weights, scale[, bias]), got " +
                                 std::to_string(op.inputs.size()));
  }
  if (op.output < 0) return Fail(context, op, "expects exactly 1 output");
  for (size_t i = 0; i < 3; ++i) {
    if (op.inputs[i] < 0 || static_cast<size_t>(op.inputs[i]) >= context->tensors_size) {
      return Fail(context, op, "input " + std::to_string(i) + " is missing");
    }
  }
  TfLiteTensor* x = &context->tensors[op.inputs[kInput]];
  TfLiteTensor* packed = &context->tensors[op.inputs[kPacked]];
  TfLiteTensor* scale = &context->tensors[op.inputs[kScale]];
  TfLiteTensor* bias = op.inputs.size() == 4 && op.inputs[kBias] >= 0
                           ? &context->tensors[op.inputs[kBias]] : nullptr;
  TfLiteTensor* y = &context->tensors[op.output];

  if (CheckTensor(context, op, x, "input x", kTfLiteFloat32, -1) != kTfLiteOk ||
      CheckTensor(context, op, packed, "packed weights", kTfLiteUInt8, 2) != kTfLiteOk ||
      CheckTensor(context, op, scale, "scale", kTfLiteFloat32, 1) != kTfLiteOk ||
      (bias && CheckTensor(context, op, bias, "bias", kTfLiteFloat32, 1) != kTfLiteOk)) {
    return kTfLiteError;
  }
  const int k = x->dims->data[x->dims->size - 1];
  const int n = scale->dims->data[0];
  if (k <= 0) return Fail(context, op, "input x has an empty last dimension " + Shape(x->dims));
  if (n <= 0) return Fail(context, op, "scale is empty");
  const size_t row_bytes = RowBytes(op.format, k);
  if (packed->dims->data[0] != n || static_cast<size_t>(packed->dims->data[1]) != row_bytes) {
    return Fail(context, op, "packed weights have shape " + Shape(packed->dims) + ", expected [" +
                                 std::to_string(n) + ", " + std::to_string(row_bytes) +
                                 "] for N = " + std::to_string(n) + " (scale) and K = " +
                                 std::to_string(k) + " (input x)");
  }
  if (bias && bias->dims->data[0] != n) {
    return Fail(context, op, "bias has shape " + Shape(bias->dims) + ", expected [" +
                                 std::to_string(n) + "] like scale");
  }
  if (packed->allocation_type != kTfLiteMmapRo && packed->allocation_type != kTfLitePersistentRo) {
    return Fail(context, op, "packed weights must be a constant tensor");
  }
  if (packed->data.raw == nullptr || packed->bytes != static_cast<size_t>(n) * row_bytes) {
    return Fail(context, op, "packed weights buffer holds " + std::to_string(packed->bytes) +
                                 " bytes, expected " + std::to_string(n * row_bytes));
  }

  if (op.kernel == nullptr || op.kernel_source != packed->data.raw ||
      op.kernel->n() != static_cast<size_t>(n) || op.kernel->k() != static_cast<size_t>(k)) {
    std::unique_ptr<MatMulKernel> kernel;
    const Status status = MatMulKernel::Create(op.format, BestIsa(), packed->data.uint8,
                                               packed->bytes, n, k, &kernel);
    if (!status.ok()) return Fail(context, op, status.message());
    op.kernel = std::move(kernel);
    op.kernel_source = packed->data.raw;
  }

  size_t m = 1;
  for (int i = 0; i + 1 < x->dims->size; ++i) m *= x->dims->data[i];
  op.scratch.resize(op.kernel->ScratchBytes(m));
  op.pool = SharedThreadPool(context->recommended_num_threads);

  y->type = kTfLiteFloat32;
  // TfLiteIntArrayCreate is not exported: allocate the same layout; the runtime frees it.
  auto* dims = static_cast<TfLiteIntArray*>(std::malloc(sizeof(int) * (x->dims->size + 1)));
  if (dims == nullptr) return Fail(context, op, "out of memory");
  dims->size = x->dims->size;
  std::memcpy(dims->data, x->dims->data, sizeof(int) * x->dims->size);
  dims->data[dims->size - 1] = n;
  return context->ResizeTensor(context, y, dims);
}

TfLiteStatus Invoke(TfLiteContext* context, TfLiteNode* node) {
  OpData& op = *static_cast<OpData*>(node->user_data);
  const TfLiteTensor* x = &context->tensors[op.inputs[kInput]];
  const TfLiteTensor* scale = &context->tensors[op.inputs[kScale]];
  const TfLiteTensor* bias = op.inputs.size() == 4 && op.inputs[kBias] >= 0
                                 ? &context->tensors[op.inputs[kBias]] : nullptr;
  TfLiteTensor* y = &context->tensors[op.output];
  if (x->data.raw == nullptr || scale->data.raw == nullptr || y->data.raw == nullptr ||
      (bias && bias->data.raw == nullptr)) {
    return Fail(context, op, "a tensor has no data at Invoke");
  }
  const size_t m = x->bytes / (sizeof(float) * op.kernel->k());
  op.kernel->Run(x->data.f, m, scale->data.f, bias ? bias->data.f : nullptr, y->data.f,
                 op.scratch.data(), op.pool);
  return kTfLiteOk;
}

template <WeightFormat kFormat>
TfLiteRegistration MakeRegistration(void* (*init)(TfLiteContext*, const char*, size_t)) {
  TfLiteRegistration r{};
  r.init = init;
  r.free = Free;
  r.prepare = Prepare;
  r.invoke = Invoke;
  r.builtin_code = kTfLiteBuiltinCustom;
  r.custom_name = kFormat == WeightFormat::kTernary2 ? "TernaryMatMul" : "BinaryMatMul";
  r.version = 1;
  return r;
}

template <WeightFormat kFormat>
void* InitDelegated(TfLiteContext* context, const char* buffer, size_t length) {
  auto* op = static_cast<OpData*>(Init<kFormat>(context, buffer, length));
  const NodeTensors& node = DelegatedNode();
  return InitWith(op, node.inputs, node.outputs);
}

}  // namespace

NodeTensors& DelegatedNode() {
  static thread_local NodeTensors node;
  return node;
}

TfLiteRegistration* TernaryMatMulRegistration() {
  static TfLiteRegistration r = MakeRegistration<WeightFormat::kTernary2>(Init<WeightFormat::kTernary2>);
  return &r;
}

TfLiteRegistration* BinaryMatMulRegistration() {
  static TfLiteRegistration r = MakeRegistration<WeightFormat::kBinary1>(Init<WeightFormat::kBinary1>);
  return &r;
}

TfLiteRegistration* DelegatedRegistration(const char* custom_name) {
  static TfLiteRegistration ternary =
      MakeRegistration<WeightFormat::kTernary2>(InitDelegated<WeightFormat::kTernary2>);
  static TfLiteRegistration binary =
      MakeRegistration<WeightFormat::kBinary1>(InitDelegated<WeightFormat::kBinary1>);
  if (std::strcmp(custom_name, ternary.custom_name) == 0) return &ternary;
  if (std::strcmp(custom_name, binary.custom_name) == 0) return &binary;
  return nullptr;
}

}  // namespace tvlm
