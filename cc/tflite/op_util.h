#ifndef TERNARY_VLM_CC_TFLITE_OP_UTIL_H_
#define TERNARY_VLM_CC_TFLITE_OP_UTIL_H_

// What every custom op here needs from TFLite: one-line "<Op>: <message>" errors, tensor checks,
// output shapes, and the node hand-over used when the delegate plugin runs an op.

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "third_party/tflite_abi/tflite_abi.h"

namespace tvlm {

// Reports "<op>: <message>" through the interpreter and fails.
TfLiteStatus Fail(TfLiteContext* context, const char* op, const std::string& message);

std::string Shape(const TfLiteIntArray* dims);
const char* TypeName(TfLiteType type);

// Fails unless t has the given type and rank (-1: any rank >= 1).
TfLiteStatus CheckTensor(TfLiteContext* context, const char* op, const TfLiteTensor* t,
                         const char* what, TfLiteType type, int rank);

// Fails unless the first `required` inputs are tensors of the context ("input <i> is missing") and
// every other one is a tensor too or -1 (an absent optional input).
TfLiteStatus CheckIndices(TfLiteContext* context, const char* op, const std::vector<int>& inputs,
                          size_t required);

bool IsConstant(const TfLiteTensor* t);

// A custom op's registration (version 1).
TfLiteRegistration CustomRegistration(const char* name,
                                      void* (*init)(TfLiteContext*, const char*, size_t),
                                      void (*free)(TfLiteContext*, void*),
                                      TfLiteStatus (*prepare)(TfLiteContext*, TfLiteNode*),
                                      TfLiteStatus (*invoke)(TfLiteContext*, TfLiteNode*));

// Per-node state: init and free for an op whose state is OpData (a struct with a NodeIndices `node`,
// cleaned up by its destructor). The delegate kernel's init takes the replaced node's tensors from
// DelegatedNode() (below).
template <typename OpData>
void* InitOp(TfLiteContext*, const char*, size_t) {
  return new OpData;
}
template <typename OpData>
void* InitDelegatedOp(TfLiteContext*, const char*, size_t);
template <typename OpData>
void FreeOp(TfLiteContext*, void* data) {
  delete static_cast<OpData*>(data);
}

// An op's two registrations: `plain` for resolvers (AddCustom by name), and the delegate plugin's
// kernel, returned by Delegated() for the op's own custom name only.
template <typename OpData>
struct OpRegistrations {
  OpRegistrations(const char* name, TfLiteStatus (*prepare)(TfLiteContext*, TfLiteNode*),
                  TfLiteStatus (*invoke)(TfLiteContext*, TfLiteNode*))
      : plain(CustomRegistration(name, InitOp<OpData>, FreeOp<OpData>, prepare, invoke)),
        delegated(CustomRegistration(name, InitDelegatedOp<OpData>, FreeOp<OpData>, prepare, invoke)) {}

  TfLiteRegistration* Delegated(const char* custom_name) {
    return std::strcmp(custom_name, plain.custom_name) == 0 ? &delegated : nullptr;
  }

  TfLiteRegistration plain, delegated;
};

// Scratch for the kernels of our matmul ops (activation tables, quantized rows): live only within one Invoke,
// and a thread runs one node at a time, so one buffer per thread, grown to the largest need, serves every node
// and op (per-node buffers of a 135M-parameter model's 210 prefill nodes held ~450 MB).
uint8_t* InvokeScratch(size_t bytes);

// Resizes t to `shape` (TfLiteIntArrayCreate is not exported: same layout, freed by the runtime).
TfLiteStatus ResizeTo(TfLiteContext* context, const char* op, TfLiteTensor* t,
                      const std::vector<int>& shape);

// Inputs/outputs of the node being replaced, set by the delegate just before it asks TFLite to
// replace that node (TFLite calls the kernel's init() synchronously from inside that request).
struct NodeTensors {
  const TfLiteIntArray* inputs = nullptr;
  const TfLiteIntArray* outputs = nullptr;
  const char* options = nullptr;  // the node's custom options (what a plain init() is given)
  size_t options_size = 0;
};
NodeTensors& DelegatedNode();

template <typename OpData>
void* InitDelegatedOp(TfLiteContext*, const char*, size_t) {
  auto* op = new OpData;
  op->node.Set(DelegatedNode().inputs, DelegatedNode().outputs);
  return op;
}

// The tensor indices an op reads in Prepare: the node's own, or those DelegatedNode() held at init.
struct NodeIndices {
  std::vector<int> inputs;  // empty until Prepare unless a delegate set them
  int output = -1;
  void Set(const TfLiteIntArray* in, const TfLiteIntArray* out);
};

// Prepare's first step: takes the node's indices (unless a delegate set them at init) and fails
// unless it has min..max inputs (described as `inputs`, e.g. "x, packed weights, scale[, bias]"),
// the first min of them present, and exactly one output.
TfLiteStatus BindNode(TfLiteContext* context, const char* op, const TfLiteNode* node,
                      NodeIndices* indices, size_t min_inputs, size_t max_inputs,
                      const char* inputs);

}  // namespace tvlm

#endif  // TERNARY_VLM_CC_TFLITE_OP_UTIL_H_
