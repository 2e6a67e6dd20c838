#ifndef TERNARY_VLM_CC_KERNELS_F32_LUT_LAYOUT_H_
#define TERNARY_VLM_CC_KERNELS_F32_LUT_LAYOUT_H_

// Table-lookup layout for 16-lane float permutes (AVX-512 vpermi2ps: 32 floats from two
// registers, 5-bit index). A group of G consecutive weights of a row becomes one 5-bit index
// into a per-activation table of all 2^5 signed sums of the G activations it covers:
//   ternary: G = 3, index = Σ_j (t_j + 1) · 3^j   (27 of 32 entries; 1.78 bits per weight)
//   binary:  G = 5, index = Σ_j b_j · 2^j, b = 1 for +1   (32 entries; 1.07 bits per weight)
// Six indices share a 32-bit word (bits 5j..5j+4 = group j). Rows go in blocks of 16, one row per
// lane: word d of block b, lane l is words[(b * words_per_row + d) * 16 + l]. So one vector load
// gives the indices of 16 rows and one permute looks up 16 rows' partial sums at once, with the
// table (2 vectors) shared by every row. Weights past k and rows past n are zero-index padding:
// the tables treat activations past k as 0 and the kernels never store rows past n.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cc/kernels/packing.h"

namespace tvlm {
namespace internal {

struct LutLayout {
  static constexpr size_t kRows = 16;
  static constexpr size_t kGroupsPerWord = 6;
  static constexpr size_t kIndexBits = 5;
  static constexpr size_t kTableFloats = 32;
  static constexpr size_t kWordTableFloats = kGroupsPerWord * kTableFloats;

  LutLayout(WeightFormat format, size_t n, size_t k);
  size_t blocks() const { return (n + kRows - 1) / kRows; }

  WeightFormat format;
  size_t n, k;
  size_t group;          // weights per index
  size_t words_per_row;  // ceil(k / (6 * group))
};

// Re-packs unpacked int8 weights [n, k] into the layout above.
std::vector<uint32_t> LutPack(const LutLayout& layout, const int8_t* w);

// Sign pattern of table entry `index` for weight j of a group: -1, 0 or +1.
int LutCoefficient(WeightFormat format, size_t index, size_t j);

}  // namespace internal
}  // namespace tvlm

#endif  // TERNARY_VLM_CC_KERNELS_F32_LUT_LAYOUT_H_
