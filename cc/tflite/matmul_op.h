#ifndef TERNARY_VLM_CC_TFLITE_MATMUL_OP_H_
#define TERNARY_VLM_CC_TFLITE_MATMUL_OP_H_

// TFLite custom ops TernaryMatMul and BinaryMatMul:
//   inputs:  0 x float32 [..., K], 1 packed uint8 [N, RowBytes(K)] (constant, cc/kernels/packing.h),
//            2 scale float32 [N], 3 bias float32 [N] (optional: may be -1), 4 up float32 [..., K] (glu=silu
//            only, else -1), 5 gamma float32 [K] and 6 epsilon float32 (one value) (norm=rms only)
//   output:  y float32 [..., N] = (x · Wᵀ) * scale + bias, where x stands for
//              silu(x) · up                               with "glu=silu" (cc/kernels/glu.h: a Llama MLP's gate
//                                                         and up projections in, its down projection out); without
//                                                         the up input (absent or -1), x is [..., 2K]: each row
//                                                         the gate's K values, then the up's K (one op made them)
//              x / sqrt(mean(x², last axis) + eps) · gamma  with "norm=rms" (cc/kernels/rms_norm.h: a Llama
//                                                         layer's RMSNorm, in the projections that read it)
//   custom options (text, comma-separated key=value): "activations=float32" (the default) multiplies x
//            as it is, "activations=int8" quantizes each row of x to int8 first (W2A8,
//            cc/kernels/matmul.h); TernaryMatMul also takes "format=ternary5" for weights packed 5 per
//            byte (default format=ternary2, cc/kernels/packing.h); "glu=silu" or "norm=rms" (above). E.g.
//            "activations=int8,format=ternary5".
// Prepare validates every type, rank, dim and byte count and re-packs the weights once for the
// kernel; Invoke only runs it.

#include "third_party/tflite_abi/tflite_abi.h"

namespace tvlm {

TfLiteRegistration* TernaryMatMulRegistration();
TfLiteRegistration* BinaryMatMulRegistration();

// The op named custom_name for a delegate kernel that replaces one node (init() takes the node's
// tensor indices from DelegatedNode(), cc/tflite/op_util.h); nullptr for other names.
TfLiteRegistration* DelegatedMatMulRegistration(const char* custom_name);

}  // namespace tvlm

#endif  // TERNARY_VLM_CC_TFLITE_MATMUL_OP_H_
