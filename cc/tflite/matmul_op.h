#ifndef TERNARY_VLM_CC_TFLITE_MATMUL_OP_H_
#define TERNARY_VLM_CC_TFLITE_MATMUL_OP_H_

// TFLite custom ops TernaryMatMul and BinaryMatMul:
//   inputs:  0 x float32 [..., K], 1 packed uint8 [N, RowBytes(K)] (constant, cc/kernels/packing.h),
//            2 scale float32 [N], 3 bias float32 [N] (optional)
//   output:  y float32 [..., N] = (x · Wᵀ) * scale + bias
// Prepare validates every type, rank, dim and byte count and re-packs the weights once for the
// kernel; Invoke only runs it.

#include "third_party/tflite_abi/tflite_abi.h"

namespace tvlm {

TfLiteRegistration* TernaryMatMulRegistration();
TfLiteRegistration* BinaryMatMulRegistration();

// The same ops for a delegate kernel that replaces one node: init() receives the
// TfLiteDelegateParams and takes the replaced node's tensor indices from DelegatedNode().
TfLiteRegistration* DelegatedRegistration(const char* custom_name);

// Inputs/outputs of the node being replaced, set by the delegate just before it asks TFLite to
// replace that node (TFLite calls the kernel's init() synchronously from inside that request).
struct NodeTensors {
  const TfLiteIntArray* inputs = nullptr;
  const TfLiteIntArray* outputs = nullptr;
};
NodeTensors& DelegatedNode();

}  // namespace tvlm

#endif  // TERNARY_VLM_CC_TFLITE_MATMUL_OP_H_
