#ifndef TERNARY_VLM_CC_KERNELS_PACKING_H_
#define TERNARY_VLM_CC_KERNELS_PACKING_H_

// The one definition of how quantized weights are stored (in .tflite files, checkpoints and
// kernels). A weight matrix is [rows = N output channels, K inputs]; each row is packed on its
// own into RowBytes(format, K) bytes, so rows start on byte boundaries for any K.
//
//   kTernary2: t in {-1, 0, +1} as the 2-bit code t + 1 (0b00 = -1, 0b01 = 0, 0b10 = +1;
//              0b11 is invalid), 4 weights per byte, weight k in bits 2*(k%4)..2*(k%4)+1
//              (least significant pair first). Padding past K holds code 0b01 (zero weight).
//   kTernary5: t in {-1, 0, +1}, 5 weights per byte (1.6 bits per weight): the byte is the base-3
//              number Σ_j (t_j + 1) · 3^j over weights 5b + j, j = 0..4 (0 to 242; 243-255 are
//              invalid). Padding past K holds digit 1 (zero weight).
//   kBinary1:  b in {-1, +1} as one bit (1 = +1, 0 = -1), 8 weights per byte, weight k in
//              bit k%8 (least significant first). Padding bits past K are 0.
//
// Padding is canonical so that a packed buffer has exactly one valid encoding; Unpack rejects
// anything else. Kernels re-pack these rows once into whatever layout they run fastest on.

#include <cstddef>
#include <cstdint>

#include "cc/kernels/status.h"

namespace tvlm {

enum class WeightFormat : int {
  kTernary2 = 0,
  kBinary1 = 1,
  kTernary5 = 2,
};
constexpr int kWeightFormats = 3;

struct WeightFormatInfo {
  WeightFormat format;
  const char* name;
  int weights_per_byte;
  int bits_per_weight_x100;  // storage cost, for reports (200 = 2 bits per weight)
};

// One table for every format: what the kernels, the TFLite ops and Python all consult.
const WeightFormatInfo& FormatInfo(WeightFormat format);

// Bytes of one packed row of k weights.
size_t RowBytes(WeightFormat format, size_t k);

// values: rows*k int8 in the format's alphabet, row-major; out: rows*RowBytes(format, k) bytes.
// Fails, naming the first offending element, if a value is outside the alphabet.
Status Pack(WeightFormat format, const int8_t* values, size_t rows, size_t k, uint8_t* out);

// The inverse. Fails, naming the row and byte, on an invalid code or non-canonical padding.
Status Unpack(WeightFormat format, const uint8_t* packed, size_t rows, size_t k, int8_t* out);

// Float weights out[r, c] = scale[r] * value[r, c] for rows [row_begin, row_end) (out points at
// row 0). Codes are not re-checked: callers validate the buffer once with Unpack, then run this
// per inference (the unpack-then-multiply strategy of the UnpackTernary op).
void Dequantize(WeightFormat format, const uint8_t* packed, size_t row_begin, size_t row_end,
                size_t k, const float* scale, float* out);

}  // namespace tvlm

#endif  // TERNARY_VLM_CC_KERNELS_PACKING_H_
