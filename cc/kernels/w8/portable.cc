// The int8-weight loop in plain C++: the reference the ISA loops are tested against, and what runs
// where no ISA loop does (ARM without the dot product, other CPUs); -O3 vectorizes its inner sum.

#include "cc/kernels/a8/layout.h"
#include "cc/kernels/w8/isa.h"

namespace tvlm {
namespace internal {

void W8DotPortable(const int8_t* w, size_t k, const int32_t*, const A8Rows& rows, size_t m,
                   size_t row_begin, size_t row_end, size_t n, float* y) {
  for (size_t r = row_begin; r < row_end; ++r) {
    const int8_t* wr = w + r * k;
    for (size_t i = 0; i < m; ++i) {
      const int8_t* q = rows.q + i * rows.stride;
      int32_t sum = 0;
      for (size_t c = 0; c < k; ++c) sum += int32_t{q[c]} * int32_t{wr[c]};
      y[i * n + r] = rows.scale[i] * static_cast<float>(sum);
    }
  }
}

}  // namespace internal
}  // namespace tvlm
