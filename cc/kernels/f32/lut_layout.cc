#include "cc/kernels/f32/lut_layout.h"

namespace tvlm {
namespace internal {

LutLayout::LutLayout(WeightFormat format, size_t n, size_t k)
    : format(format), n(n), k(k), group(format == WeightFormat::kTernary2 ? 3 : 5) {
  const size_t per_word = kGroupsPerWord * group;
  words_per_row = (k + per_word - 1) / per_word;
}

int LutCoefficient(WeightFormat format, size_t index, size_t j) {
  if (format == WeightFormat::kBinary1) return (index >> j) & 1 ? 1 : -1;
  if (index >= 27) return 0;  // unused entries
  for (; j > 0; --j) index /= 3;
  return static_cast<int>(index % 3) - 1;
}

std::vector<uint32_t> LutPack(const LutLayout& layout, const int8_t* w) {
  const size_t words = layout.words_per_row;
  const bool ternary = layout.format == WeightFormat::kTernary2;
  std::vector<uint32_t> out(layout.blocks() * words * LutLayout::kRows, 0);
  for (size_t r = 0; r < layout.n; ++r) {
    const int8_t* row = w + r * layout.k;
    uint32_t* lane = out.data() + (r / LutLayout::kRows) * words * LutLayout::kRows +
                     r % LutLayout::kRows;
    for (size_t d = 0; d < words; ++d) {
      uint32_t word = 0;
      for (size_t g = 0; g < LutLayout::kGroupsPerWord; ++g) {
        uint32_t index = 0;
        for (size_t j = layout.group; j-- > 0;) {
          const size_t c = (d * LutLayout::kGroupsPerWord + g) * layout.group + j;
          const int v = c < layout.k ? row[c] : (ternary ? 0 : -1);
          index = ternary ? index * 3 + static_cast<uint32_t>(v + 1) : index * 2 + (v > 0);
        }
        word |= index << (LutLayout::kIndexBits * g);
      }
      lane[d * LutLayout::kRows] = word;
    }
  }
  return out;
}

}  // namespace internal
}  // namespace tvlm
