#ifndef TERNARY_VLM_CC_TFLITE_UNPACK_OP_H_
#define TERNARY_VLM_CC_TFLITE_UNPACK_OP_H_

// TFLite custom op UnpackTernary: the "unpack, then multiply with a builtin op" strategy.
//   inputs:  0 packed uint8 [N, RowBytes(K)] (constant, cc/kernels/packing.h ternary2),
//            1 scale float32 [N], 2 shape int32 [2] = {N, K} (constant; K is not implied by the
//            packed row length)
//   output:  w float32 [N, K] = scale[n] * t[n, k], recomputed at every Invoke, so the float
//            weights only ever occupy the interpreter's arena (one layer at a time), not the file.
// Prepare validates types, shapes, byte counts and every 2-bit code once; Invoke only unpacks.

#include "third_party/tflite_abi/tflite_abi.h"

namespace tvlm {

TfLiteRegistration* UnpackTernaryRegistration();

// The same op for a delegate kernel (see DelegatedMatMulRegistration); nullptr for other names.
TfLiteRegistration* DelegatedUnpackRegistration(const char* custom_name);

}  // namespace tvlm

#endif  // TERNARY_VLM_CC_TFLITE_UNPACK_OP_H_
