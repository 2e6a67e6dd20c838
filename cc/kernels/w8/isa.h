#ifndef TERNARY_VLM_CC_KERNELS_W8_ISA_H_
#define TERNARY_VLM_CC_KERNELS_W8_ISA_H_

// The int8-weight loops behind Int8MatMul (../int8_matmul.h), one per instruction set, each in its own
// translation unit built with that ISA's flags: call one only where the CPU has it.
//
// Each computes, one weight row at a time (w8/avx512.cc says why), y[i, r] = rows.scale[i] · float(Σ_c q[i, c] · w[r, c]) for i < m and r in
// [row_begin, row_end): w is int8 [.., k] row-major (read in place), q the activation rows of
// a8/layout.h (stride a multiple of 64, zero past k), y has row stride n. The sums are exact int32, so
// every loop gives the same floats. row_sums[r] = Σ_c w[r, c] (the AVX-512 loop multiplies q + 128,
// unsigned, and subtracts 128 · row_sums; the others ignore it).

#include <cstddef>
#include <cstdint>

namespace tvlm {
namespace internal {

struct A8Rows;

using W8DotFn = void (*)(const int8_t* w, size_t k, const int32_t* row_sums, const A8Rows& rows, size_t m,
                         size_t row_begin, size_t row_end, size_t n, float* y);

void W8DotPortable(const int8_t* w, size_t k, const int32_t* row_sums, const A8Rows& rows, size_t m,
                   size_t row_begin, size_t row_end, size_t n, float* y);
#if defined(__x86_64__)
void W8DotAvx512Vnni(const int8_t* w, size_t k, const int32_t* row_sums, const A8Rows& rows, size_t m,
                     size_t row_begin, size_t row_end, size_t n, float* y);
void W8DotAvx2(const int8_t* w, size_t k, const int32_t* row_sums, const A8Rows& rows, size_t m,
               size_t row_begin, size_t row_end, size_t n, float* y);
#endif
#if defined(__aarch64__)
void W8DotNeonDot(const int8_t* w, size_t k, const int32_t* row_sums, const A8Rows& rows, size_t m,
                  size_t row_begin, size_t row_end, size_t n, float* y);
#endif

}  // namespace internal
}  // namespace tvlm

#endif  // TERNARY_VLM_CC_KERNELS_W8_ISA_H_
