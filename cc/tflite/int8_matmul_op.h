#ifndef TERNARY_VLM_CC_TFLITE_INT8_MATMUL_OP_H_
#define TERNARY_VLM_CC_TFLITE_INT8_MATMUL_OP_H_

// TFLite custom op Int8MatMul: a dynamic-range int8 FULLY_CONNECTED run by our kernels and our
// interpreter-wide thread pool (the export gives a tied LM head to it, export/tflite/int8_head.py):
//   inputs:  0 x float32 [..., K], 1 weights int8 [N, K] (constant; read in place, not copied, so a
//            table the embedding lookup also reads stays one copy), 2 step float32 [N] (constant)
//   output:  y float32 [M, N] = step[n] · s · Σ q · W[n], M the product of x's leading dims (as a
//            FULLY_CONNECTED without keep_num_dims; x's rows quantized to int8, q and s, as the W2A8 ops
//            do: cc/kernels/int8_matmul.h)
//   no custom options.

#include "third_party/tflite_abi/tflite_abi.h"

namespace tvlm {

TfLiteRegistration* Int8MatMulRegistration();

// The same op for a delegate kernel (see DelegatedMatMulRegistration); nullptr for other names.
TfLiteRegistration* DelegatedInt8MatMulRegistration(const char* custom_name);

}  // namespace tvlm

#endif  // TERNARY_VLM_CC_TFLITE_INT8_MATMUL_OP_H_
