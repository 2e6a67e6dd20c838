#ifndef TERNARY_VLM_CC_KERNELS_F32_LUT_WALK_H_
#define TERNARY_VLM_CC_KERNELS_F32_LUT_WALK_H_

// The loop nest the table-lookup kernels (AVX-512 lut_avx512.cc, AVX2 lut8_avx2.cc) share: which
// row blocks, activation rows and K-word chunks each call of a kernel's tile covers. Everything is
// in an anonymous namespace on purpose: each ISA unit compiles its own copy with its own -m flags,
// so the linker can never hand one ISA's code to the other.

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace tvlm {
namespace internal {
namespace {

// Activation rows per tile when m > 1: each index vector is reused for this many rows.
constexpr int kRowsPerTile = 2;
// For m > 1 the tables of all rows outgrow the caches: K is walked in chunks whose tables for one
// tile of activation rows stay in L1, over a slab of weight rows that stays in L2.
constexpr size_t kL1TableBytes = 24 * 1024;
constexpr size_t kL2WeightBytes = 512 * 1024;

inline size_t Min(size_t a, size_t b) { return a < b ? a : b; }
inline size_t Max(size_t a, size_t b) { return a > b ? a : b; }

// What a tile reads and writes: packed words, per-row activation tables, y [m, n].
struct LutArgs {
  const uint32_t* words;
  size_t words_per_row;
  const float* tables;
  size_t table_stride;
  float* y;
  size_t n;
};

// Calls tiles(rows, block_begin, block_end, i0, d0, d1) — rows a std::integral_constant<int, 1 or
// kRowsPerTile>: activation rows [i0, i0 + rows) against row blocks [block_begin, block_end) over
// K words [d0, d1) — until row blocks [b0, b1) × all m rows × all words are covered, each (block,
// row, word) once and the words of a (block, row) in increasing chunks. One activation row: whole
// rows at once, each weight streamed exactly once. word_table_bytes: one word's table of one
// activation row; block_word_bytes: one word of one row block's weights; slabs are multiples of
// slab_blocks row blocks.
template <typename Tiles>
void WalkTiles(size_t m, size_t words_per_row, size_t b0, size_t b1, size_t word_table_bytes,
               size_t block_word_bytes, size_t slab_blocks, const Tiles& tiles) {
  size_t chunk = words_per_row, slab = b1 - b0;
  if (m > 1) {
    chunk = Max(1, kL1TableBytes / (kRowsPerTile * word_table_bytes));
    slab = Max(slab_blocks, kL2WeightBytes / (words_per_row * block_word_bytes));
    slab -= slab % slab_blocks;
  }
  for (size_t s0 = b0; s0 < b1; s0 += slab) {
    const size_t s1 = Min(b1, s0 + slab);
    for (size_t d0 = 0; d0 < words_per_row; d0 += chunk) {
      const size_t d1 = Min(words_per_row, d0 + chunk);
      size_t i0 = 0;
      for (; i0 + kRowsPerTile <= m; i0 += kRowsPerTile) {
        tiles(std::integral_constant<int, kRowsPerTile>(), s0, s1, i0, d0, d1);
      }
      for (; i0 < m; ++i0) tiles(std::integral_constant<int, 1>(), s0, s1, i0, d0, d1);
    }
  }
}

}  // namespace
}  // namespace internal
}  // namespace tvlm

#endif  // TERNARY_VLM_CC_KERNELS_F32_LUT_WALK_H_
