#ifndef TERNARY_VLM_CC_KERNELS_F32_BITPLANE_LAYOUT_H_
#define TERNARY_VLM_CC_KERNELS_F32_BITPLANE_LAYOUT_H_

// Bit-plane layout for kernels that turn weight bits into lane masks (NEON). Each row is
// cut into 32-weight words; plane 0 has bit c set where weight c is +1, plane 1 (ternary only)
// where it is -1. Word w of row r, plane p: words[(r * words_per_row + w) * planes + p].
//   ternary: dot = Σ_{+1} x − Σ_{−1} x
//   binary:  dot = 2 Σ_{+1} x − Σ x   (Σ x once per activation row)
// Activations are zero-padded to words_per_row * 32, so padding bits never matter.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cc/kernels/packing.h"

namespace tvlm {
namespace internal {

struct BitPlaneLayout {
  static constexpr size_t kWordBits = 32;

  BitPlaneLayout(WeightFormat format, size_t n, size_t k)
      : format(format), n(n), k(k), planes(format == WeightFormat::kTernary2 ? 2 : 1),
        words_per_row((k + kWordBits - 1) / kWordBits) {}
  size_t padded_k() const { return words_per_row * kWordBits; }

  WeightFormat format;
  size_t n, k;
  size_t planes;
  size_t words_per_row;
};

std::vector<uint32_t> BitPlanePack(const BitPlaneLayout& layout, const int8_t* w);

// What the ISA loops read: the weights, the zero-padded activations [m, padded_k] and, for
// binary, Σ x per activation row.
struct BitPlaneArgs {
  const BitPlaneLayout* layout;
  const uint32_t* words;
  const float* x;
  const float* x_sum;
};

// The NEON loop (bitplane_neon.cc); rows [begin, end) of y[m, n].
void BitPlaneDotNeon(const BitPlaneArgs& a, size_t m, size_t begin, size_t end, float* y);

// The loop over tiles, apart from the ISA's sums: rows in tiles of kRows, each activation row
// against the tile, which stays in L1 across activation rows. Ops::Sums<R, P>(x, words, words_per_row, sums) writes
// sums[r][p] = Σ of x over the bits of plane p of row r.
template <class Ops>
void BitPlaneLoop(const BitPlaneArgs& a, size_t m, size_t begin, size_t end, float* y) {
  constexpr size_t kRows = 4;
  const BitPlaneLayout& l = *a.layout;
  const size_t row_words = l.words_per_row * l.planes;
  for (size_t r0 = begin, rows; r0 < end; r0 += rows) {
    rows = end - r0 >= kRows ? kRows : 1;  // tail rows go one at a time
    const uint32_t* w = a.words + r0 * row_words;
    for (size_t i = 0; i < m; ++i) {
      const float* x = a.x + i * l.padded_k();
      float sums[kRows][2];
      if (l.planes == 2) {
        rows == kRows ? Ops::template Sums<kRows, 2>(x, w, l.words_per_row, sums)
                      : Ops::template Sums<1, 2>(x, w, l.words_per_row, sums);
      } else {
        rows == kRows ? Ops::template Sums<kRows, 1>(x, w, l.words_per_row, sums)
                      : Ops::template Sums<1, 1>(x, w, l.words_per_row, sums);
      }
      for (size_t r = 0; r < rows; ++r) {
        y[i * l.n + r0 + r] =
            l.planes == 2 ? sums[r][0] - sums[r][1] : 2.0f * sums[r][0] - a.x_sum[i];
      }
    }
  }
}

}  // namespace internal
}  // namespace tvlm

#endif  // TERNARY_VLM_CC_KERNELS_F32_BITPLANE_LAYOUT_H_
