#ifndef TERNARY_VLM_CC_KERNELS_VECTOR_CLONES_H_
#define TERNARY_VLM_CC_KERNELS_VECTOR_CLONES_H_

// TVLM_VECTOR_CLONES before a function compiles it once per x86 ISA (AVX-512F, AVX2, the baseline);
// glibc picks the clone at load time. For plain loops that the compiler vectorizes: each clone computes the
// same results as the baseline as long as the loop does not reassociate a float sum and its translation unit
// does not contract a multiply and an add into an FMA (-ffp-contract=off where that matters). Not under TSan:
// the clone resolver runs during relocation, before TSan's runtime is up, and GCC instruments it (a segfault
// at load). Elsewhere (ARM) the one baseline build.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__SANITIZE_THREAD__)
#define TVLM_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TVLM_VECTOR_CLONES
#endif

#include <cstdint>

namespace tvlm {

// Before a helper that a clone calls: always inlined, so that it compiles for the clone's ISA (a helper left out of
// line is compiled once, for the baseline, whichever clone calls it).
#define TVLM_INLINE __attribute__((always_inline)) inline

// Eight lanes as one GCC/Clang vector, for loops the compiler would not vectorize well by itself (a select, a
// register-blocked accumulation): one register in the AVX2 and AVX-512 clones, two in the SSE2 baseline and on
// NEON. Wider vector types do not fit an AVX2 register, and GCC spills them through the stack at every
// operation. Lane by lane the arithmetic is the scalar arithmetic, so every clone still rounds alike. Passed
// by value only to TVLM_INLINE helpers (the translation units that use them build with -Wno-psabi: no call ever
// crosses a clone boundary with one).
typedef float F32x8 __attribute__((vector_size(8 * sizeof(float))));
typedef int32_t I32x8 __attribute__((vector_size(8 * sizeof(int32_t))));

}  // namespace tvlm

#endif  // TERNARY_VLM_CC_KERNELS_VECTOR_CLONES_H_
