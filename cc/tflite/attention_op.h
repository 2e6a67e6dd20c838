#ifndef TERNARY_VLM_CC_TFLITE_ATTENTION_OP_H_
#define TERNARY_VLM_CC_TFLITE_ATTENTION_OP_H_

// TFLite custom op KVCacheAttention: one decoder layer's KV-cache update and causal attention, with
// the cache owned by the op (cc/kernels/attention.h) instead of resource variables. Stock TFLite
// reads each cache variable into a fresh tensor, dynamic-update-slices it, re-assigns it and runs
// attention over all max_len positions; this op writes the new tokens in place and reads only the
// positions a query sees.
//   inputs:  0 q float32 [H, G*T, D]  (H KV heads; row g*T + t: query head g of the group, token t)
//            1 new keys float32 [H, D, T], 2 new values float32 [H, T, D]
//            3 update index int32 [3] = {0, 0, start} (the export's index into the key cache)
//            4 scale float32 [] (constant), 5 cache int32 [2] = {cache id, max_len} (constant)
//   output:  float32 [H, G*T, D]
// or, token-major (q of rank 4: the projections' own layout, export/tflite/attention_layout.py):
//   inputs:  0 q float32 [1, T, H*G, D] (query head h*G + g reads KV head h), 1 new keys and 2 new values
//            float32 [1, T, H, D], 3-5 as above
//   output:  float32 [1, T, H*G*D] (what the output projection reads)
// Nodes with the same cache id in the subgraphs of one interpreter (prefill, decode) share one
// cache; the interpreter is identified by its CPU-backend external context, which TFLite creates
// once per interpreter and hands to every subgraph. A new conversation needs no reset: prefill
// overwrites from position 0 and no query reads past its own position.

#include "third_party/tflite_abi/tflite_abi.h"

namespace tvlm {

TfLiteRegistration* KVCacheAttentionRegistration();

// The same op for a delegate kernel (see DelegatedMatMulRegistration); nullptr for other names.
TfLiteRegistration* DelegatedAttentionRegistration(const char* custom_name);

}  // namespace tvlm

#endif  // TERNARY_VLM_CC_TFLITE_ATTENTION_OP_H_
