#include "cc/c_api.h"

#include <cstring>
#include <string>

#include "cc/kernels/packing.h"
#include "cc/tflite/matmul_op.h"
#include "cc/tflite/attention_op.h"
#include "cc/tflite/int8_matmul_op.h"
#include "cc/tflite/unpack_op.h"

namespace {

bool KnownFormat(int format) { return format == TVLM_TERNARY2 || format == TVLM_BINARY1; }

int Report(const tvlm::Status& status, char* error, size_t error_size) {
  if (status.ok()) return 0;
  if (error != nullptr && error_size > 0) {
    std::strncpy(error, status.message().c_str(), error_size - 1);
    error[error_size - 1] = '\0';
  }
  return -1;
}

tvlm::Status UnknownFormat(int format) {
  return tvlm::Status::Error("unknown weight format " + std::to_string(format));
}

}  // namespace

extern "C" {

TfLiteRegistration* tvlm_register_ternary_matmul(void) { return tvlm::TernaryMatMulRegistration(); }
TfLiteRegistration* tvlm_register_binary_matmul(void) { return tvlm::BinaryMatMulRegistration(); }
TfLiteRegistration* tvlm_register_unpack_ternary(void) { return tvlm::UnpackTernaryRegistration(); }
TfLiteRegistration* tvlm_register_kv_cache_attention(void) {
  return tvlm::KVCacheAttentionRegistration();
}
TfLiteRegistration* tvlm_register_int8_matmul(void) { return tvlm::Int8MatMulRegistration(); }

size_t tvlm_row_bytes(int format, size_t k) {
  return KnownFormat(format) ? tvlm::RowBytes(static_cast<tvlm::WeightFormat>(format), k) : 0;
}

int tvlm_pack(int format, const int8_t* values, size_t rows, size_t k, uint8_t* packed,
              char* error, size_t error_size) {
  if (!KnownFormat(format)) return Report(UnknownFormat(format), error, error_size);
  return Report(tvlm::Pack(static_cast<tvlm::WeightFormat>(format), values, rows, k, packed),
                error, error_size);
}

int tvlm_unpack(int format, const uint8_t* packed, size_t rows, size_t k, int8_t* values,
                char* error, size_t error_size) {
  if (!KnownFormat(format)) return Report(UnknownFormat(format), error, error_size);
  return Report(tvlm::Unpack(static_cast<tvlm::WeightFormat>(format), packed, rows, k, values),
                error, error_size);
}

}  // extern "C"
