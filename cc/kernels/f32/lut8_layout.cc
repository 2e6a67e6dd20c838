#include "cc/kernels/f32/lut8_layout.h"

namespace tvlm {
namespace internal {

std::vector<uint32_t> Lut8Pack(const Lut8Layout& layout, const int8_t* w) {
  constexpr size_t kRows = Lut8Layout::kRows;
  const size_t words = layout.words_per_row, planes = layout.planes;
  std::vector<uint32_t> out(layout.blocks() * words * planes * kRows, 0);
  for (size_t r = 0; r < layout.n; ++r) {
    const int8_t* row = w + r * layout.k;
    uint32_t* lane = out.data() + (r / kRows) * words * planes * kRows + r % kRows;
    for (size_t c = 0; c < layout.k; ++c) {
      if (row[c] == 0 || (row[c] < 0 && planes == 1)) continue;  // no bit in any plane
      const size_t plane = row[c] > 0 ? 0 : 1;
      const size_t d = c / (Lut8Layout::kGroup * Lut8Layout::kGroupsPerWord);
      const size_t g = c / Lut8Layout::kGroup % Lut8Layout::kGroupsPerWord;
      lane[(d * planes + plane) * kRows] |= 1u << (g * Lut8Layout::kIndexBits + c % 3);
    }
  }
  return out;
}

}  // namespace internal
}  // namespace tvlm
