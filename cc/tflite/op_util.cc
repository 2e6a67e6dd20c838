#include "cc/tflite/op_util.h"

#include <cstdlib>
#include <cstring>
#include <vector>

namespace tvlm {

uint8_t* InvokeScratch(size_t bytes) {
  static thread_local std::vector<uint8_t> buffer;
  if (buffer.size() < bytes) buffer.resize(bytes);
  return buffer.data();
}

TfLiteStatus Fail(TfLiteContext* context, const char* op, const std::string& message) {
  context->ReportError(context, "%s: %s", op, message.c_str());
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

TfLiteStatus CheckTensor(TfLiteContext* context, const char* op, const TfLiteTensor* t,
                         const char* what, TfLiteType type, int rank) {
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

TfLiteStatus CheckIndices(TfLiteContext* context, const char* op, const std::vector<int>& inputs,
                          size_t required) {
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i] < 0 && (i < required || inputs[i] != -1)) {
      return Fail(context, op, "input " + std::to_string(i) + " is missing");
    }
    if (inputs[i] >= 0 && static_cast<size_t>(inputs[i]) >= context->tensors_size) {
      return Fail(context, op, "input " + std::to_string(i) + " is tensor " +
                                   std::to_string(inputs[i]) + ", outside the " +
                                   std::to_string(context->tensors_size) + " tensors");
    }
  }
  return kTfLiteOk;
}

bool IsConstant(const TfLiteTensor* t) {
  return t->allocation_type == kTfLiteMmapRo || t->allocation_type == kTfLitePersistentRo;
}

TfLiteStatus ResizeTo(TfLiteContext* context, const char* op, TfLiteTensor* t,
                      const std::vector<int>& shape) {
  auto* dims = static_cast<TfLiteIntArray*>(std::malloc(sizeof(int) * (shape.size() + 1)));
  if (dims == nullptr) return Fail(context, op, "out of memory");
  dims->size = static_cast<int>(shape.size());
  std::memcpy(dims->data, shape.data(), sizeof(int) * shape.size());
  return context->ResizeTensor(context, t, dims);
}

TfLiteRegistration CustomRegistration(const char* name,
                                      void* (*init)(TfLiteContext*, const char*, size_t),
                                      void (*free)(TfLiteContext*, void*),
                                      TfLiteStatus (*prepare)(TfLiteContext*, TfLiteNode*),
                                      TfLiteStatus (*invoke)(TfLiteContext*, TfLiteNode*)) {
  TfLiteRegistration r{};
  r.init = init;
  r.free = free;
  r.prepare = prepare;
  r.invoke = invoke;
  r.builtin_code = kTfLiteBuiltinCustom;
  r.custom_name = name;
  r.version = 1;
  return r;
}

NodeTensors& DelegatedNode() {
  static thread_local NodeTensors node;
  return node;
}

void NodeIndices::Set(const TfLiteIntArray* in, const TfLiteIntArray* out) {
  if (in != nullptr) inputs.assign(in->data, in->data + in->size);
  if (out != nullptr && out->size == 1) output = out->data[0];
}

TfLiteStatus BindNode(TfLiteContext* context, const char* op, const TfLiteNode* node,
                      NodeIndices* indices, size_t min_inputs, size_t max_inputs,
                      const char* inputs) {
  if (indices->inputs.empty()) indices->Set(node->inputs, node->outputs);
  const size_t n = indices->inputs.size();
  if (n < min_inputs || n > max_inputs) {
    const std::string count = min_inputs == max_inputs
                                  ? std::to_string(min_inputs)
                                  : std::to_string(min_inputs) + " or " + std::to_string(max_inputs);
    return Fail(context, op, "expects " + count + " inputs (" + inputs + "), got " +
                                 std::to_string(n));
  }
  if (indices->output < 0 || static_cast<size_t>(indices->output) >= context->tensors_size) {
    return Fail(context, op, "expects exactly 1 output");
  }
  return CheckIndices(context, op, indices->inputs, min_inputs);
}

}  // namespace tvlm
