#include "cc/tflite/matmul_op.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "cc/kernels/glu.h"
#include "cc/kernels/matmul.h"
#include "cc/kernels/packing.h"
#include "cc/kernels/rms_norm.h"
#include "cc/tflite/op_util.h"
#include "cc/tflite/thread_pools.h"

namespace tvlm {
namespace {

constexpr int kInput = 0, kPacked = 1, kScale = 2, kBias = 3, kUp = 4, kGamma = 5, kEps = 6;

// What the op does to x before the matmul (matmul_op.h): nothing, silu(x) · up, or an RMSNorm.
enum class Transform { kNone, kGlu, kRmsNorm };

struct OpData {
  WeightFormat format;
  Activations activations = Activations::kFloat32;
  Transform transform = Transform::kNone;
  bool gate_up = false;  // glu=silu with x = gate | up, no up input
  std::string options_error;  // reported by Prepare (init cannot fail)
  const char* name;
  NodeIndices node;
  std::unique_ptr<MatMulKernel> kernel;
  const void* kernel_source = nullptr;  // the packed buffer the kernel was built from
  size_t scratch_bytes = 0;  // the kernel's, after input_bytes of the transformed x
  size_t input_bytes = 0;
  ThreadPool* pool = nullptr;
};

std::string Printable(const std::string& s) {
  std::string shown = s.substr(0, 40);
  for (char& c : shown) c = c >= 32 && c < 127 ? c : '?';
  return shown;
}

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21  // Linux 5.4; older kernels reject it (EINVAL), which only loses the saving
#endif

// The kernel keeps its own re-packed copy of the weights, so the packed bytes are not read again: their
// whole pages go back to the kernel. MADV_PAGEOUT keeps the contents (a file mapping, TFLite's mmap of the
// model, re-reads them if anyone touches them again; anonymous memory without swap stays as it is), unlike
// MADV_DONTNEED, which would zero a buffer the application passed in. Saves one copy of every quantized
// layer in the resident set (~27 MB for SmolLM2).
void ReleasePages(const void* data, size_t bytes) {
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) / page * page;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_PAGEOUT);
}

// The custom options (matmul_op.h): comma-separated key=value, each key at most once. Sets
// op->activations, op->transform and, for TernaryMatMul, op->format; returns an error naming what was found.
std::string ParseOptions(const char* buffer, size_t length, OpData* op) {
  const std::string options(buffer == nullptr ? "" : std::string(buffer, length));
  const bool ternary = op->format == WeightFormat::kTernary2;
  bool seen_activations = false, seen_format = false;
  size_t begin = 0;
  while (begin < options.size()) {
    size_t end = options.find(',', begin);
    if (end == std::string::npos) end = options.size();
    const std::string item = options.substr(begin, end - begin);
    begin = end + 1;
    if (item == "activations=float32" || item == "activations=int8") {
      if (seen_activations) return "activations given twice in custom options \"" + Printable(options) + "\"";
      seen_activations = true;
      op->activations = item == "activations=int8" ? Activations::kInt8 : Activations::kFloat32;
    } else if (item == "glu=silu" || item == "norm=rms") {
      if (op->transform != Transform::kNone) {
        return "glu=silu and norm=rms, at most one of them once, in custom options \"" + Printable(options) + "\"";
      }
      op->transform = item == "glu=silu" ? Transform::kGlu : Transform::kRmsNorm;
    } else if (ternary && (item == "format=ternary2" || item == "format=ternary5")) {
      if (seen_format) return "format given twice in custom options \"" + Printable(options) + "\"";
      seen_format = true;
      op->format = item == "format=ternary5" ? WeightFormat::kTernary5 : WeightFormat::kTernary2;
    } else {
      return "unknown custom option \"" + Printable(item) + "\" (expected activations=float32 or " +
             "activations=int8, glu=silu, norm=rms" + (ternary ? ", format=ternary2 or format=ternary5" : "") + ")";
    }
  }
  return "";
}

template <WeightFormat kFormat>
void* Init(TfLiteContext*, const char* buffer, size_t length) {
  auto* op = new OpData;
  op->format = kFormat;
  op->name = kFormat == WeightFormat::kTernary2 ? "TernaryMatMul" : "BinaryMatMul";
  op->options_error = ParseOptions(buffer, length, op);
  return op;
}

void Free(TfLiteContext*, void* data) { delete static_cast<OpData*>(data); }

TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
  OpData& op = *static_cast<OpData*>(node->user_data);
  if (!op.options_error.empty()) return Fail(context, op.name, op.options_error);
  static const char* const kInputs[] = {"x, packed weights, scale[, bias]",
                                        "gate x, packed weights, scale, bias or -1[, up]",
                                        "x, packed weights, scale, bias or -1, -1, gamma, epsilon"};
  const size_t want = op.transform == Transform::kNone ? 4 : op.transform == Transform::kGlu ? 5 : 7;
  const char* described = kInputs[static_cast<int>(op.transform)];
  if (BindNode(context, op.name, node, &op.node, 3, want, described) != kTfLiteOk) return kTfLiteError;
  const std::vector<int>& given = op.node.inputs;
  op.gate_up = op.transform == Transform::kGlu && (given.size() <= kUp || given[kUp] < 0);
  if (op.transform == Transform::kRmsNorm &&
      (given.size() != 7 || given[kUp] >= 0 || given[kGamma] < 0 || given[kEps] < 0)) {
    return Fail(context, op.name, std::string("norm=rms needs 7 inputs (") + described + ")");
  }
  const std::vector<int>& inputs = op.node.inputs;
  TfLiteTensor* x = &context->tensors[inputs[kInput]];
  TfLiteTensor* packed = &context->tensors[inputs[kPacked]];
  TfLiteTensor* scale = &context->tensors[inputs[kScale]];
  TfLiteTensor* bias = inputs.size() > kBias && inputs[kBias] >= 0
                           ? &context->tensors[inputs[kBias]] : nullptr;
  TfLiteTensor* up = op.transform == Transform::kGlu && !op.gate_up ? &context->tensors[inputs[kUp]] : nullptr;
  const bool norm = op.transform == Transform::kRmsNorm;
  TfLiteTensor* gamma = norm ? &context->tensors[inputs[kGamma]] : nullptr;
  TfLiteTensor* eps = norm ? &context->tensors[inputs[kEps]] : nullptr;
  TfLiteTensor* y = &context->tensors[op.node.output];

  if (CheckTensor(context, op.name, x, "input x", kTfLiteFloat32, -1) != kTfLiteOk ||
      CheckTensor(context, op.name, packed, "packed weights", kTfLiteUInt8, 2) != kTfLiteOk ||
      CheckTensor(context, op.name, scale, "scale", kTfLiteFloat32, 1) != kTfLiteOk ||
      (bias && CheckTensor(context, op.name, bias, "bias", kTfLiteFloat32, 1) != kTfLiteOk) ||
      (up && CheckTensor(context, op.name, up, "up", kTfLiteFloat32, -1) != kTfLiteOk) ||
      (gamma && CheckTensor(context, op.name, gamma, "gamma", kTfLiteFloat32, 1) != kTfLiteOk)) {
    return kTfLiteError;
  }
  if (eps && eps->type != kTfLiteFloat32) {  // any rank: the converter writes it as a scalar
    return Fail(context, op.name, std::string("epsilon must be float32, not ") + TypeName(eps->type));
  }
  if (up && Shape(up->dims) != Shape(x->dims)) {
    return Fail(context, op.name, "up has shape " + Shape(up->dims) + ", expected " + Shape(x->dims) +
                                 " like the gate x");
  }
  const int x_last = x->dims->data[x->dims->size - 1];
  if (op.gate_up && x_last % 2 != 0) {
    return Fail(context, op.name, "glu=silu without an up input needs x = gate | up of even width, not " +
                                 Shape(x->dims));
  }
  const int k = op.gate_up ? x_last / 2 : x_last;
  const int n = scale->dims->data[0];
  if (k <= 0) return Fail(context, op.name, "input x has an empty last dimension " + Shape(x->dims));
  if (n <= 0) return Fail(context, op.name, "scale is empty");
  if (gamma && gamma->dims->data[0] != k) {
    return Fail(context, op.name, "gamma has shape " + Shape(gamma->dims) + ", expected [" + std::to_string(k) +
                                 "] like the last dimension of x");
  }
  if (eps && eps->bytes != sizeof(float)) {
    return Fail(context, op.name, "epsilon has shape " + Shape(eps->dims) + ", expected one value");
  }
  const size_t row_bytes = RowBytes(op.format, k);
  if (packed->dims->data[0] != n || static_cast<size_t>(packed->dims->data[1]) != row_bytes) {
    return Fail(context, op.name, "packed weights have shape " + Shape(packed->dims) + ", expected [" +
                                 std::to_string(n) + ", " + std::to_string(row_bytes) +
                                 "] for N = " + std::to_string(n) + " (scale) and K = " +
                                 std::to_string(k) + " (input x)");
  }
  if (bias && bias->dims->data[0] != n) {
    return Fail(context, op.name, "bias has shape " + Shape(bias->dims) + ", expected [" +
                                 std::to_string(n) + "] like scale");
  }
  if (!IsConstant(packed)) {
    return Fail(context, op.name, "packed weights must be a constant tensor");
  }
  if (packed->data.raw == nullptr || packed->bytes != static_cast<size_t>(n) * row_bytes) {
    return Fail(context, op.name, "packed weights buffer holds " + std::to_string(packed->bytes) +
                                 " bytes, expected " + std::to_string(n * row_bytes));
  }

  if (op.kernel == nullptr || op.kernel_source != packed->data.raw ||
      op.kernel->n() != static_cast<size_t>(n) || op.kernel->k() != static_cast<size_t>(k)) {
    std::unique_ptr<MatMulKernel> kernel;
    const Status status =
        MatMulKernel::Create(op.format, op.activations, BestIsa(op.activations),
                             packed->data.uint8, packed->bytes, n, k, &kernel);
    if (!status.ok()) return Fail(context, op.name, status.message());
    op.kernel = std::move(kernel);
    op.kernel_source = packed->data.raw;
    ReleasePages(packed->data.raw, packed->bytes);
  }

  size_t m = 1;
  for (int i = 0; i + 1 < x->dims->size; ++i) m *= x->dims->data[i];
  // The transformed x first, then the kernel's scratch at the next 64-byte boundary.
  op.input_bytes = op.transform != Transform::kNone ? (m * k * sizeof(float) + 63) / 64 * 64 : 0;
  op.scratch_bytes = op.input_bytes + op.kernel->ScratchBytes(m);
  op.pool = SharedThreadPool(context->recommended_num_threads);

  y->type = kTfLiteFloat32;
  std::vector<int> shape(x->dims->data, x->dims->data + x->dims->size);
  shape.back() = n;
  return ResizeTo(context, op.name, y, shape);
}

TfLiteStatus Invoke(TfLiteContext* context, TfLiteNode* node) {
  OpData& op = *static_cast<OpData*>(node->user_data);
  const std::vector<int>& inputs = op.node.inputs;
  const TfLiteTensor* x = &context->tensors[inputs[kInput]];
  const TfLiteTensor* scale = &context->tensors[inputs[kScale]];
  const TfLiteTensor* bias = inputs.size() > kBias && inputs[kBias] >= 0
                                 ? &context->tensors[inputs[kBias]] : nullptr;
  const TfLiteTensor* up =
      op.transform == Transform::kGlu && !op.gate_up ? &context->tensors[inputs[kUp]] : nullptr;
  const bool norm = op.transform == Transform::kRmsNorm;
  const TfLiteTensor* gamma = norm ? &context->tensors[inputs[kGamma]] : nullptr;
  const TfLiteTensor* eps = norm ? &context->tensors[inputs[kEps]] : nullptr;
  TfLiteTensor* y = &context->tensors[op.node.output];
  if (x->data.raw == nullptr || scale->data.raw == nullptr || y->data.raw == nullptr ||
      (bias && bias->data.raw == nullptr) || (up && up->data.raw == nullptr) ||
      (norm && (gamma->data.raw == nullptr || eps->data.raw == nullptr))) {
    return Fail(context, op.name, "a tensor has no data at Invoke");
  }
  const size_t k = op.kernel->k();
  const size_t m = x->bytes / (sizeof(float) * (op.gate_up ? 2 * k : k));
  uint8_t* scratch = InvokeScratch(op.scratch_bytes + 64);
  scratch += (64 - reinterpret_cast<uintptr_t>(scratch) % 64) % 64;
  const float* input = x->data.f;
  if (op.transform != Transform::kNone) {
    float* transformed = reinterpret_cast<float*>(scratch);
    if (up) {
      SiluMul(x->data.f, up->data.f, m * k, transformed);
    } else if (op.gate_up) {
      for (size_t i = 0; i < m; ++i) {
        const float* gate = x->data.f + 2 * k * i;
        SiluMul(gate, gate + k, k, transformed + k * i);
      }
    } else {
      RmsNorm(x->data.f, m, k, gamma->data.f, eps->data.f[0], transformed);
    }
    input = transformed;
  }
  op.kernel->Run(input, m, scale->data.f, bias ? bias->data.f : nullptr, y->data.f, scratch + op.input_bytes,
                 op.pool);
  return kTfLiteOk;
}

template <WeightFormat kFormat>
TfLiteRegistration MakeRegistration(void* (*init)(TfLiteContext*, const char*, size_t)) {
  return CustomRegistration(kFormat == WeightFormat::kTernary2 ? "TernaryMatMul" : "BinaryMatMul",
                            init, Free, Prepare, Invoke);
}

template <WeightFormat kFormat>
void* InitDelegated(TfLiteContext* context, const char*, size_t) {
  // buffer is the delegate's own data here; the node's options come with its tensors.
  auto* op = static_cast<OpData*>(
      Init<kFormat>(context, DelegatedNode().options, DelegatedNode().options_size));
  op->node.Set(DelegatedNode().inputs, DelegatedNode().outputs);
  return op;
}

}  // namespace

TfLiteRegistration* TernaryMatMulRegistration() {
  static TfLiteRegistration r = MakeRegistration<WeightFormat::kTernary2>(Init<WeightFormat::kTernary2>);
  return &r;
}

TfLiteRegistration* BinaryMatMulRegistration() {
  static TfLiteRegistration r = MakeRegistration<WeightFormat::kBinary1>(Init<WeightFormat::kBinary1>);
  return &r;
}

TfLiteRegistration* DelegatedMatMulRegistration(const char* custom_name) {
  static TfLiteRegistration ternary =
      MakeRegistration<WeightFormat::kTernary2>(InitDelegated<WeightFormat::kTernary2>);
  static TfLiteRegistration binary =
      MakeRegistration<WeightFormat::kBinary1>(InitDelegated<WeightFormat::kBinary1>);
  if (std::strcmp(custom_name, ternary.custom_name) == 0) return &ternary;
  if (std::strcmp(custom_name, binary.custom_name) == 0) return &binary;
  return nullptr;
}

}  // namespace tvlm
