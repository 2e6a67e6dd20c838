#ifndef TERNARY_VLM_CC_KERNELS_F32_LUT_AVX512_H_
#define TERNARY_VLM_CC_KERNELS_F32_LUT_AVX512_H_

// AVX-512 loops over the LutLayout (lut_layout.h). Only call where the CPU has AVX-512F. Plain
// pointers only: the translation unit is built with -mavx512f and must not emit inline library
// code the linker could pick for non-AVX-512 callers.

#include <cstddef>
#include <cstdint>

namespace tvlm {
namespace internal {

struct LutLayout;

// Tables of one activation row for words [word_begin, word_end): 6 groups of 32 floats per word,
// written to tables + word * LutLayout::kWordTableFloats. x has layout.k floats.
void LutTablesAvx512(const LutLayout& layout, const float* x, size_t word_begin, size_t word_end,
                     float* tables);

// y[i, r] = dot of activation row i (its tables at tables + i * table_stride) with weight row r,
// for i < m and r in [row_begin, row_end); row_begin is a multiple of LutLayout::kRows.
void LutDotAvx512(const LutLayout& layout, const uint32_t* words, const float* tables,
                  size_t table_stride, size_t m, size_t row_begin, size_t row_end, float* y);

}  // namespace internal
}  // namespace tvlm

#endif  // TERNARY_VLM_CC_KERNELS_F32_LUT_AVX512_H_
