#ifndef TERNARY_VLM_CC_KERNELS_F32_LUT8_AVX2_H_
#define TERNARY_VLM_CC_KERNELS_F32_LUT8_AVX2_H_

// AVX2 loops over the Lut8Layout (lut8_layout.h). Only call where the CPU has AVX2 and FMA.
// Plain pointers only: the translation unit is built with -mavx2 and must not emit inline
// library code the linker could pick for other callers.

#include <cstddef>
#include <cstdint>

namespace tvlm {
namespace internal {

struct Lut8Layout;

// Tables of one activation row for words [word_begin, word_end): 10 groups of 8 floats per word,
// written to tables + word * Lut8Layout::kWordTableFloats. x has layout.k floats.
void Lut8TablesAvx2(const Lut8Layout& layout, const float* x, size_t word_begin, size_t word_end,
                    float* tables);

// y[i, r] = dot of activation row i (its tables at tables + i * table_stride) with weight row r,
// for i < m and r in [row_begin, row_end); row_begin is a multiple of Lut8Layout::kRows.
void Lut8DotAvx2(const Lut8Layout& layout, const uint32_t* words, const float* tables,
                 size_t table_stride, size_t m, size_t row_begin, size_t row_end, float* y);

}  // namespace internal
}  // namespace tvlm

#endif  // TERNARY_VLM_CC_KERNELS_F32_LUT8_AVX2_H_
