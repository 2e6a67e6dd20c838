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

#endif  // TERNARY_VLM_CC_KERNELS_VECTOR_CLONES_H_
