#include "cc/kernels/packing.h"

#include <array>
#include <string>

namespace tvlm {
namespace {

constexpr WeightFormatInfo kFormats[] = {
    {WeightFormat::kTernary2, "ternary2", 4, 200},
    {WeightFormat::kBinary1, "binary1", 8, 100},
    {WeightFormat::kTernary5, "ternary5", 5, 160},
};

constexpr unsigned kPow3[5] = {1, 3, 9, 27, 81};

constexpr uint8_t kTernaryZeroCode = 1;

std::string Where(size_t row, size_t col) {
  return "[" + std::to_string(row) + ", " + std::to_string(col) + "]";
}

}  // namespace

const WeightFormatInfo& FormatInfo(WeightFormat format) {
  return kFormats[static_cast<int>(format)];
}

size_t RowBytes(WeightFormat format, size_t k) {
  const size_t per_byte = FormatInfo(format).weights_per_byte;
  return (k + per_byte - 1) / per_byte;
}

Status Pack(WeightFormat format, const int8_t* values, size_t rows, size_t k, uint8_t* out) {
  const size_t row_bytes = RowBytes(format, k);
  for (size_t r = 0; r < rows; ++r) {
    const int8_t* v = values + r * k;
    uint8_t* o = out + r * row_bytes;
    if (format == WeightFormat::kTernary2) {
      for (size_t b = 0; b < row_bytes; ++b) o[b] = 0x55;  // four zero codes
      for (size_t c = 0; c < k; ++c) {
        if (v[c] < -1 || v[c] > 1) {
          return Status::Error("ternary value " + std::to_string(v[c]) + " at " + Where(r, c) +
                               " is not in {-1, 0, 1}");
        }
        const unsigned shift = 2 * (c % 4);
        o[c / 4] = static_cast<uint8_t>((o[c / 4] & ~(3u << shift)) | ((v[c] + 1) << shift));
      }
    } else if (format == WeightFormat::kTernary5) {
      for (size_t b = 0; b < row_bytes; ++b) o[b] = 121;  // five zero weights (digits 1)
      for (size_t c = 0; c < k; ++c) {
        if (v[c] < -1 || v[c] > 1) {
          return Status::Error("ternary value " + std::to_string(v[c]) + " at " + Where(r, c) +
                               " is not in {-1, 0, 1}");
        }
        o[c / 5] = static_cast<uint8_t>(o[c / 5] + v[c] * static_cast<int>(kPow3[c % 5]));
      }
    } else {
      for (size_t b = 0; b < row_bytes; ++b) o[b] = 0;
      for (size_t c = 0; c < k; ++c) {
        if (v[c] != -1 && v[c] != 1) {
          return Status::Error("binary value " + std::to_string(v[c]) + " at " + Where(r, c) +
                               " is not in {-1, 1}");
        }
        if (v[c] == 1) o[c / 8] = static_cast<uint8_t>(o[c / 8] | (1u << (c % 8)));
      }
    }
  }
  return Status::Ok();
}

Status Unpack(WeightFormat format, const uint8_t* packed, size_t rows, size_t k, int8_t* out) {
  const size_t row_bytes = RowBytes(format, k);
  const size_t per_byte = FormatInfo(format).weights_per_byte;
  for (size_t r = 0; r < rows; ++r) {
    const uint8_t* p = packed + r * row_bytes;
    int8_t* o = out + r * k;
    for (size_t c = 0; c < row_bytes * per_byte; ++c) {
      if (format == WeightFormat::kTernary2) {
        const unsigned code = (p[c / 4] >> (2 * (c % 4))) & 3u;
        if (code == 3) return Status::Error("invalid ternary code 3 at " + Where(r, c));
        if (c < k) {
          o[c] = static_cast<int8_t>(static_cast<int>(code) - 1);
        } else if (code != kTernaryZeroCode) {
          return Status::Error("non-zero ternary padding at " + Where(r, c) + " (k = " +
                               std::to_string(k) + ")");
        }
      } else if (format == WeightFormat::kTernary5) {
        const unsigned byte = p[c / 5];
        if (byte > 242) {
          return Status::Error("invalid ternary5 byte " + std::to_string(byte) + " in row " +
                               std::to_string(r) + ", byte " + std::to_string(c / 5) +
                               " (bytes hold 0-242)");
        }
        const unsigned digit = byte / kPow3[c % 5] % 3;
        if (c < k) {
          o[c] = static_cast<int8_t>(static_cast<int>(digit) - 1);
        } else if (digit != 1) {
          return Status::Error("non-zero ternary padding at " + Where(r, c) + " (k = " +
                               std::to_string(k) + ")");
        }
      } else {
        const unsigned bit = (p[c / 8] >> (c % 8)) & 1u;
        if (c < k) {
          o[c] = bit ? 1 : -1;
        } else if (bit) {
          return Status::Error("non-zero binary padding at " + Where(r, c) + " (k = " +
                               std::to_string(k) + ")");
        }
      }
    }
  }
  return Status::Ok();
}

namespace {

// Byte -> the weights_per_byte values it encodes (invalid codes -> 0, never reached).
using ByteTable = std::array<std::array<float, 8>, 256>;

ByteTable MakeByteTable(WeightFormat format) {
  ByteTable table{};
  for (unsigned byte = 0; byte < 256; ++byte) {
    for (int j = 0; j < FormatInfo(format).weights_per_byte; ++j) {
      if (format == WeightFormat::kTernary2) {
        const unsigned code = (byte >> (2 * j)) & 3u;
        table[byte][j] = code == 3 ? 0.0f : static_cast<float>(static_cast<int>(code) - 1);
      } else if (format == WeightFormat::kTernary5) {
        table[byte][j] = byte > 242 ? 0.0f : static_cast<float>(static_cast<int>(byte / kPow3[j] % 3) - 1);
      } else {
        table[byte][j] = (byte >> j) & 1u ? 1.0f : -1.0f;
      }
    }
  }
  return table;
}

}  // namespace

void Dequantize(WeightFormat format, const uint8_t* packed, size_t row_begin, size_t row_end,
                size_t k, const float* scale, float* out) {
  static const ByteTable ternary = MakeByteTable(WeightFormat::kTernary2);
  static const ByteTable binary = MakeByteTable(WeightFormat::kBinary1);
  static const ByteTable ternary5 = MakeByteTable(WeightFormat::kTernary5);
  const ByteTable& table = format == WeightFormat::kTernary2   ? ternary
                           : format == WeightFormat::kTernary5 ? ternary5
                                                               : binary;
  const size_t per_byte = FormatInfo(format).weights_per_byte;
  const size_t row_bytes = RowBytes(format, k), full_bytes = k / per_byte;
  for (size_t r = row_begin; r < row_end; ++r) {
    const uint8_t* p = packed + r * row_bytes;
    float* o = out + r * k;
    const float s = scale[r];
    for (size_t b = 0; b < full_bytes; ++b) {
      const float* values = table[p[b]].data();
      for (size_t j = 0; j < per_byte; ++j) o[b * per_byte + j] = s * values[j];
    }
    for (size_t c = full_bytes * per_byte; c < k; ++c) o[c] = s * table[p[c / per_byte]][c % per_byte];
  }
}

}  // namespace tvlm
