#ifndef TERNARY_VLM_CC_KERNELS_A8_ISA_H_
#define TERNARY_VLM_CC_KERNELS_A8_ISA_H_

// The ISA loops over A8Layout (layout.h), one per instruction set, each in its own translation
// unit built with that ISA's flags: call one only where the CPU has it. Plain pointers only, so no
// inline library code built with those flags can be picked by the linker for other callers.
//
// Each computes y[i, r] = rows.scale[i] · (Σ_c code(r, c) · q[i, c] - rows.sum[i]) for i < m and
// r in [row_begin, row_end) (row_begin a multiple of A8Layout::kRows); y has row stride layout.n.

#include <cstddef>
#include <cstdint>

namespace tvlm {
namespace internal {

struct A8Layout;
struct A8DenseLayout;
struct A8Rows;

template <class Layout>
using A8DotFn = void (*)(const Layout& layout, const uint8_t* packed, const A8Rows& rows, size_t m,
                         size_t row_begin, size_t row_end, float* y);

#if defined(__x86_64__)
void A8DotAvx512Vnni(const A8Layout& layout, const uint8_t* packed, const A8Rows& rows, size_t m,
                     size_t row_begin, size_t row_end, float* y);
// The dense 1.6-bit layout (A8DenseLayout); needs AVX512_VBMI besides.
void A8DenseDotAvx512Vbmi(const A8DenseLayout& layout, const uint8_t* packed, const A8Rows& rows,
                          size_t m, size_t row_begin, size_t row_end, float* y);
// Intel AMX (tiles) for 16 rows and more, the VNNI loop below that; only where AmxInt8Usable().
void A8DotAmx(const A8Layout& layout, const uint8_t* packed, const A8Rows& rows, size_t m,
              size_t row_begin, size_t row_end, float* y);
// The CPU has AMX-INT8 and the OS granted this process the tile state (asked for on the first call).
bool AmxInt8Usable();
void A8DotAvx2(const A8Layout& layout, const uint8_t* packed, const A8Rows& rows, size_t m,
               size_t row_begin, size_t row_end, float* y);
#elif defined(__ARM_NEON)
void A8DotNeon(const A8Layout& layout, const uint8_t* packed, const A8Rows& rows, size_t m,
               size_t row_begin, size_t row_end, float* y);
#endif
#if defined(__aarch64__)
void A8DotNeonDot(const A8Layout& layout, const uint8_t* packed, const A8Rows& rows, size_t m,
                  size_t row_begin, size_t row_end, float* y);
void A8DotNeonI8mm(const A8Layout& layout, const uint8_t* packed, const A8Rows& rows, size_t m,
                   size_t row_begin, size_t row_end, float* y);
#endif

}  // namespace internal
}  // namespace tvlm

#endif  // TERNARY_VLM_CC_KERNELS_A8_ISA_H_
