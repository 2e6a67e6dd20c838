#ifndef TERNARY_VLM_CC_C_API_H_
#define TERNARY_VLM_CC_C_API_H_

/* C API of libternary_ops.so for native apps: the custom-op registrations and the weight packing
   they consume. The library also exports TFLite's external-delegate plugin entry points
   (tflite_plugin_create_delegate / tflite_plugin_destroy_delegate). */

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct TfLiteRegistration;

/* For a TFLite C++ app: resolver.AddCustom("TernaryMatMul", tvlm_register_ternary_matmul()). */
struct TfLiteRegistration* tvlm_register_ternary_matmul(void);
struct TfLiteRegistration* tvlm_register_binary_matmul(void);
/* resolver.AddCustom("UnpackTernary", ...): packed ternary weights -> float32 for a builtin op. */
struct TfLiteRegistration* tvlm_register_unpack_ternary(void);
/* resolver.AddCustom("KVCacheAttention", ...): a decoder layer's KV-cache update + attention, the cache
   owned by the op and shared by the interpreter's signatures (cc/tflite/attention_op.h). */
struct TfLiteRegistration* tvlm_register_kv_cache_attention(void);
/* resolver.AddCustom("Int8MatMul", ...): a dynamic-range int8 matmul (a tied LM head) on the ops' own
   thread pool, weights read in place (cc/tflite/int8_matmul_op.h). */
struct TfLiteRegistration* tvlm_register_int8_matmul(void);

enum { TVLM_TERNARY2 = 0, TVLM_BINARY1 = 1 };

/* Bytes of one packed row of k weights; 0 for an unknown format. */
size_t tvlm_row_bytes(int format, size_t k);

/* Pack rows*k values ({-1,0,1} or {-1,1}) into rows*tvlm_row_bytes(format, k) bytes.
   Returns 0 on success; otherwise -1 and a message in error (if error_size > 0). */
int tvlm_pack(int format, const int8_t* values, size_t rows, size_t k, uint8_t* packed,
              char* error, size_t error_size);

/* The inverse of tvlm_pack; rejects invalid codes and non-canonical padding. */
int tvlm_unpack(int format, const uint8_t* packed, size_t rows, size_t k, int8_t* values,
                char* error, size_t error_size);

#ifdef __cplusplus
}
#endif

#endif /* TERNARY_VLM_CC_C_API_H_ */
