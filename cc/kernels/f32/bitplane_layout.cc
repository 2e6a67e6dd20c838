#include "cc/kernels/f32/bitplane_layout.h"

namespace tvlm {
namespace internal {

std::vector<uint32_t> BitPlanePack(const BitPlaneLayout& layout, const int8_t* w) {
  const size_t words = layout.words_per_row, planes = layout.planes;
  std::vector<uint32_t> out(layout.n * words * planes, 0);
  for (size_t r = 0; r < layout.n; ++r) {
    for (size_t c = 0; c < layout.k; ++c) {
      const int v = w[r * layout.k + c];
      if (v == 0) continue;
      const size_t plane = v > 0 ? 0 : 1;
      if (plane >= planes) continue;  // binary -1: no bit
      out[(r * words + c / 32) * planes + plane] |= 1u << (c % 32);
    }
  }
  return out;
}

}  // namespace internal
}  // namespace tvlm
