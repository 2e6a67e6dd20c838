#include "cc/kernels/tests/int8_rows.h"

#include <algorithm>
#include <cmath>

namespace tvlm {
namespace testing_util {

Int8Row QuantizeRow(const float* x, size_t k) {
  Int8Row row;
  row.q.assign(k, 0);
  float lo = 0.0f, hi = 0.0f;
  for (size_t c = 0; c < k; ++c) {
    lo = std::min(lo, x[c]);
    hi = std::max(hi, x[c]);
  }
  if (hi == lo) return row;
  const float inv = 253.0f / (hi - lo);
  row.z = std::rint(-126.5f - lo * inv);
  for (size_t c = 0; c < k; ++c) {
    row.q[c] = static_cast<int>(std::min(127.0f, std::max(-127.0f, std::rint(x[c] * inv) + row.z)));
  }
  row.s = (hi - lo) / 253.0f;
  return row;
}

}  // namespace testing_util
}  // namespace tvlm
