#include "cc/kernels/a8/layout.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "cc/kernels/vector_clones.h"

namespace tvlm {
namespace internal {

std::vector<uint8_t> A8Pack(const A8Layout& layout, const int8_t* w) {
  std::vector<uint8_t> out(layout.blocks * layout.block_bytes(), 0);
  for (size_t b = 0; b < layout.blocks; ++b) {
    for (size_t c = 0; c < layout.chunks; ++c) {
      uint8_t* chunk = out.data() + b * layout.block_bytes() + c * A8Layout::kChunkBytes;
      for (size_t r = 0; r < A8Layout::kRows; ++r) {
        const size_t row = b * A8Layout::kRows + r;
        for (size_t g = 0; g < 4; ++g) {
          for (size_t j = 0; j < 4; ++j) {
            const size_t col = c * A8Layout::kChunk + 4 * g + j;
            const int t = row < layout.n && col < layout.k ? w[row * layout.k + col] : 0;
            chunk[4 * r + j] |= static_cast<uint8_t>((t + 1) << (2 * g));
          }
        }
      }
    }
  }
  return out;
}

std::vector<uint8_t> A8Pack(const A8DenseLayout& layout, const int8_t* w) {
  std::vector<uint8_t> out(layout.blocks * layout.block_bytes(), 0);
  for (size_t b = 0; b < layout.blocks; ++b) {
    for (size_t c = 0; c < layout.chunks; ++c) {
      uint8_t* chunk = out.data() + b * layout.block_bytes() + c * A8DenseLayout::kChunkBytes;
      for (size_t r = 0; r < A8DenseLayout::kRows; ++r) {
        const size_t row = b * A8DenseLayout::kRows + r;
        for (size_t j = 0; j < 4; ++j) {
          unsigned value = 0;
          for (size_t g = 5; g-- > 0;) {  // digit 4 (input 16 + j) is the most significant
            const size_t col = c * A8DenseLayout::kChunk + 4 * g + j;
            const int t = row < layout.n && col < layout.k ? w[row * layout.k + col] : 0;
            value = 3 * value + static_cast<unsigned>(t + 1);
          }
          chunk[4 * r + j] = static_cast<uint8_t>(value);
        }
      }
    }
  }
  return out;
}

namespace {
constexpr size_t kAlign = 64;
size_t Aligned(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }
// The quantized rows, then 64 readable bytes: an AMX tile reads 64 inputs at a time, past k_padded
// in the last row (its codes there are 0, amx.cc).
size_t QBytes(size_t m, size_t stride) { return Aligned(m * stride + 64); }
}  // namespace

size_t A8ScratchBytes(size_t m, size_t stride) {
  return QBytes(m, stride) + 2 * Aligned(m * sizeof(float)) + Aligned(m * sizeof(int32_t));
}

A8Rows A8View(void* scratch, size_t m, size_t stride) {
  uint8_t* p = static_cast<uint8_t*>(scratch);
  A8Rows rows;
  rows.q = reinterpret_cast<int8_t*>(p);
  rows.scale = reinterpret_cast<float*>(p + QBytes(m, stride));
  rows.sum = reinterpret_cast<int32_t*>(p + QBytes(m, stride) + Aligned(m * sizeof(float)));
  rows.offset = reinterpret_cast<float*>(p + QBytes(m, stride) + Aligned(m * sizeof(float)) +
                                         Aligned(m * sizeof(int32_t)));
  rows.stride = stride;
  return rows;
}

namespace {
// Float bits as signed integers in the floats' order (negative floats' magnitude bits reversed): an
// integer min/max reduction vectorizes where a float one (NaN rules) does not. A NaN lands beyond ±inf.
inline int32_t Ordered(float f) {
  int32_t b;
  std::memcpy(&b, &f, 4);
  return b ^ ((b >> 31) & 0x7FFFFFFF);
}
inline float FromOrdered(int32_t o) {
  const int32_t b = o ^ ((o >> 31) & 0x7FFFFFFF);
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
// Adding and subtracting 1.5 · 2^23 rounds a float below 2^22 in magnitude to an integer, half to even
// (the default rounding mode), as numpy's and JAX's round do; unlike a call to nearbyint it vectorizes.
constexpr float kRound = 12582912.0f;
}  // namespace

// One clone per x86 ISA: the baseline's SSE2 has no 32-bit integer min/max, and the range pass alone
// took most of the ~5 ms a SmolLM2 prefill of 64 rows spent here (3 ms saved). The clones give equal
// results (each product is rounded before the rounding trick's add: -ffp-contract=off in BUILD).
TVLM_VECTOR_CLONES void QuantizeRows(const float* x, size_t m, size_t k, const A8Rows& rows) {
  for (size_t i = 0; i < m; ++i) {
    const float* xi = x + i * k;
    int8_t* q = rows.q + i * rows.stride;
    int32_t lo_bits = 0, hi_bits = 0;  // Ordered(0.0f): the range always holds 0
    for (size_t c = 0; c < k; ++c) {
      const int32_t o = Ordered(xi[c]);
      lo_bits = std::min(lo_bits, o);
      hi_bits = std::max(hi_bits, o);
    }
    const float lo = FromOrdered(lo_bits), hi = FromOrdered(hi_bits);
    const float range = hi - lo;
    if (!(range <= std::numeric_limits<float>::max())) {  // an inf or NaN input, or a range past float: a NaN row
      std::memset(q, 0, rows.stride);
      rows.scale[i] = std::numeric_limits<float>::quiet_NaN();
      rows.sum[i] = 0;
      rows.offset[i] = 0.0f;
      continue;
    }
    const float inv = range > 0.0f ? 253.0f / range : 0.0f;
    // lo · inv lies in [-253, 0] up to one rounding, so z lies in [-126, 127].
    const float z = (-126.5f - lo * inv + kRound) - kRound;
    int32_t sum = 0;
    for (size_t c = 0; c < k; ++c) {
      // In [-127, 127] but for the roundings of x · inv and lo · inv (layout.h): the clamp keeps it there.
      const float v = ((xi[c] * inv + kRound) - kRound) + z;
      q[c] = static_cast<int8_t>(std::min(127.0f, std::max(-127.0f, v)));
      sum += q[c];
    }
    std::memset(q + k, 0, rows.stride - k);
    rows.scale[i] = range / 253.0f;
    rows.sum[i] = sum;
    rows.offset[i] = rows.scale[i] * z;
  }
}

}  // namespace internal
}  // namespace tvlm
