#ifndef TERNARY_VLM_CC_KERNELS_F32_LUT8_LAYOUT_H_
#define TERNARY_VLM_CC_KERNELS_F32_LUT8_LAYOUT_H_

// Table-lookup layout for 8-lane float permutes (AVX2 vpermps: 8 floats from one register,
// 3-bit index). A group of 3 consecutive weights of a row becomes a 3-bit index (bit j for
// weight j) per plane into a per-activation table of 8 sums of the group's 3 activations:
//   ternary: two planes, +1 weights and −1 weights; table entry e = Σ_{j in e} x_j (subset sums);
//            dot = Σ T[plane 0 index] − Σ T[plane 1 index]. 27 ternary triples do not fit 8
//            entries, two subset lookups do, and a zero weight adds exactly nothing.
//   binary:  one plane, +1 weights; entry e = Σ_j ±x_j (+ where bit j of e is set).
// Ten indices share a 32-bit word (bits 3g..3g+2 = group g; 30 weights per word and plane).
// Rows go in blocks of 8, one row per lane: word d, plane p of block b, lane l is
// words[((b * words_per_row + d) * planes + p) * 8 + l], so one load gives the indices of 8
// rows and one permute looks up 8 rows' partial sums at once. Weights past k and rows past n
// are zero-index padding: the tables treat activations past k as 0, and the kernels never store
// rows past n.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cc/kernels/packing.h"

namespace tvlm {
namespace internal {

struct Lut8Layout {
  static constexpr size_t kRows = 8;
  static constexpr size_t kGroup = 3;
  static constexpr size_t kGroupsPerWord = 10;
  static constexpr size_t kIndexBits = 3;
  static constexpr size_t kTableFloats = 8;
  static constexpr size_t kWordTableFloats = kGroupsPerWord * kTableFloats;

  Lut8Layout(WeightFormat format, size_t n, size_t k)
      : format(format), n(n), k(k), planes(format == WeightFormat::kTernary2 ? 2 : 1),
        words_per_row((k + kGroup * kGroupsPerWord - 1) / (kGroup * kGroupsPerWord)) {}
  size_t blocks() const { return (n + kRows - 1) / kRows; }

  WeightFormat format;
  size_t n, k;
  size_t planes;
  size_t words_per_row;
};

// Re-packs unpacked int8 weights [n, k] into the layout above.
std::vector<uint32_t> Lut8Pack(const Lut8Layout& layout, const int8_t* w);

// Coefficient (−1, 0 or +1) of activation j of a group in table entry `index`.
inline int Lut8Coefficient(WeightFormat format, size_t index, size_t j) {
  if ((index >> j) & 1) return 1;
  return format == WeightFormat::kBinary1 ? -1 : 0;
}

}  // namespace internal
}  // namespace tvlm

#endif  // TERNARY_VLM_CC_KERNELS_F32_LUT8_LAYOUT_H_
