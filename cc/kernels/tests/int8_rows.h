#ifndef TERNARY_VLM_CC_KERNELS_TESTS_INT8_ROWS_H_
#define TERNARY_VLM_CC_KERNELS_TESTS_INT8_ROWS_H_

// The int8 activation rows of a8/layout.h, written for tests independently of the kernels (plain loops,
// std::rint, each float operation as written: int8_rows.cc is built with -ffp-contract=off).

#include <cstddef>
#include <vector>

namespace tvlm {
namespace testing_util {

struct Int8Row {
  std::vector<int> q;  // in [-127, 127]
  float s = 0.0f;      // step: x ≈ s · (q - z)
  float z = 0.0f;      // zero point, an integer in [-127, 127]
};

// Over [lo, hi] = [min(x, 0), max(x, 0)]: s = (hi - lo) / 253, z = round-half-even(-126.5 - lo · 253 / (hi - lo)),
// q = clamp(round-half-even(x · 253 / (hi - lo)) + z, -127, 127); an all-zero row gives q = 0, s = 0, z = 0.
Int8Row QuantizeRow(const float* x, size_t k);

}  // namespace testing_util
}  // namespace tvlm

#endif  // TERNARY_VLM_CC_KERNELS_TESTS_INT8_ROWS_H_
