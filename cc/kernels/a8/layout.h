#ifndef TERNARY_VLM_CC_KERNELS_A8_LAYOUT_H_
#define TERNARY_VLM_CC_KERNELS_A8_LAYOUT_H_

// What the int8-activation (W2A8) kernels share: the per-row activation quantization and one
// re-packed weight layout.
//
// Activations: each row of x is quantized with a zero point (asymmetric, as XNNPACK's qd8 rows): over
// [lo, hi] = [min(x, 0), max(x, 0)], s = (hi - lo) / 253, z = round-half-even(-126.5 - lo / s) and
// q = round-half-even(x / s) + z, so that x ≈ s · (q - z) within s / 2 and 0 is exact. The 253 steps span
// 255 levels: lo / s + z lies in [-127, -126] and hi / s + z in [126, 127], so q stays within ±127 whatever
// way z rounded (a clamp guards the last float rounding) and every kernel's integer bounds are those of
// symmetric int8. A row symmetric about 0 gets z = 0; a row of one sign twice the resolution of
// s = max|x| / 127 (which cost the SmolLM2 ternary export 2.3-6 % perplexity, docs/BENCHMARKS.md). An
// all-zero row gives q = 0, s = 0, z = 0; one whose range overflows float (or holds an inf or NaN), NaN.
// Every kernel computes s · Σ q·t exactly in int32, then one float rounding; the zero point's share,
// -(s · z) · Σ t per output, is subtracted by the shared epilogue (matmul.cc, int8_matmul.cc): the same
// float operations for every ISA.
//
// Weights: output rows in blocks of 16, K in chunks of 16. A chunk is 64 bytes; byte 4r + j holds,
// in bits 2g..2g+1, the code t + 1 (0, 1 or 2) of block row r and input 16c + 4g + j. Shifting a
// chunk right by 2g and masking with 3 leaves, per row, the unsigned codes of 4 consecutive inputs
// in one 32-bit lane: the u8 operand of vpdpbusd (AVX-512 VNNI) and vpmaddubsw (AVX2, bytes 0-31 =
// rows 0-7, 32-63 = rows 8-15) and 4 rows of a NEON register, against those 4 activation bytes
// broadcast. Since Σ (t+1)·q = Σ t·q + Σ q, the kernels subtract each activation row's sum.
// Padding (inputs past k: q = 0; rows past n: never stored) holds code 1.

#include <cstddef>
#include <cstdint>
#include <vector>

namespace tvlm {
namespace internal {

// Both weight layouts below: output rows in blocks of 16, K in chunks of kChunk inputs, 64 bytes a chunk.
template <size_t Chunk>
struct A8Blocks {
  static constexpr size_t kRows = 16;
  static constexpr size_t kChunk = Chunk;
  static constexpr size_t kChunkBytes = 64;

  A8Blocks(size_t n, size_t k)
      : n(n), k(k), k_padded((k + kChunk - 1) / kChunk * kChunk), chunks(k_padded / kChunk),
        blocks((n + kRows - 1) / kRows) {}

  size_t n, k;
  size_t k_padded;  // k rounded up to kChunk: the stride of quantized activation rows
  size_t chunks;    // k_padded / kChunk
  size_t blocks;    // ceil(n / kRows)
  size_t block_bytes() const { return chunks * kChunkBytes; }
  // The re-packed block holding output row `row` (a multiple of kRows).
  const uint8_t* block(const uint8_t* packed, size_t row) const {
    return packed + row / kRows * block_bytes();
  }
};

struct A8Layout : A8Blocks<16> {
  using A8Blocks::A8Blocks;
};

// Re-packs unpacked weights [n, k] (values in {-1, 0, +1}) into blocks * block_bytes() bytes.
std::vector<uint8_t> A8Pack(const A8Layout& layout, const int8_t* w);

// The dense layout (1.6 bits per weight, 20 % fewer bytes to stream than A8Layout): output rows in
// blocks of 16, K in chunks of 20. A chunk is 64 bytes; byte 4r + j is the base-3 number
// Σ_g (t + 1) · 3^g whose digit g < 4 is the weight of block row r and input 20c + 4g + j and whose
// digit 4 is that of input 20c + 16 + j (0 to 242). A byte lookup (a8/avx512_vbmi.cc) turns it into
// the A8Layout byte of its first four digits plus the code of the fifth, so the dot products are
// those of A8Layout. Padding holds code 1, as there.
struct A8DenseLayout : A8Blocks<20> {
  using A8Blocks::A8Blocks;
};

std::vector<uint8_t> A8Pack(const A8DenseLayout& layout, const int8_t* w);

// Quantized activation rows in a kernel's scratch: q [m, stride] (zero past k), scale [m], sum [m] (Σ q),
// offset [m] (s · z: what each output of the row owes per unit of its weight row's sum).
struct A8Rows {
  int8_t* q;
  float* scale;
  int32_t* sum;
  float* offset;
  size_t stride;
};

size_t A8ScratchBytes(size_t m, size_t stride);
A8Rows A8View(void* scratch, size_t m, size_t stride);

// Quantizes rows [0, m) of x [m, k] into rows (above).
void QuantizeRows(const float* x, size_t m, size_t k, const A8Rows& rows);

}  // namespace internal
}  // namespace tvlm

#endif  // TERNARY_VLM_CC_KERNELS_A8_LAYOUT_H_
