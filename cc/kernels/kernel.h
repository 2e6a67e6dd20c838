#ifndef TERNARY_VLM_CC_KERNELS_KERNEL_H_
#define TERNARY_VLM_CC_KERNELS_KERNEL_H_

// What MatMulKernel asks of each implementation. The implementations own their re-packed
// weights; MatMulKernel owns validation, threading and the scale/bias epilogue.

#include <cstddef>
#include <cstdint>
#include <memory>

#include "cc/kernels/packing.h"
#include "cc/kernels/thread_pool.h"

namespace tvlm {
namespace internal {

class Kernel {
 public:
  virtual ~Kernel() = default;
  // Threads get output channels in multiples of this, for m activation rows.
  virtual size_t row_block(size_t m) const = 0;
  virtual size_t ScratchBytes(size_t m) const = 0;
  // Once per Run, before any Dot: per-activation state (padded x, tables) in scratch.
  virtual void Prepare(const float* x, size_t m, void* scratch, ThreadPool* pool) const = 0;
  // y[i, r] = Σ_c x[i, c] · W[r, c] for i < m, r in [begin, end); y has row stride n.
  virtual void Dot(const float* x, size_t m, const void* scratch, size_t begin, size_t end,
                   float* y) const = 0;
  // Int8 activations with a zero point (a8/layout.h): each y[i, r] that Dot leaves still owes
  // -offset[i] · Σ_c W[r, c], which MatMulKernel's epilogue subtracts. nullptr: nothing owed.
  virtual const float* RowOffsets(const void* /*scratch*/, size_t /*m*/) const { return nullptr; }
};

// Each takes the validated weights unpacked to int8 ([n, k], values in the format's alphabet).
// Float activations:
std::unique_ptr<Kernel> MakeReferenceKernel(const int8_t* w, size_t n, size_t k);
#if defined(__x86_64__)
std::unique_ptr<Kernel> MakeLutKernelAvx512(WeightFormat format, const int8_t* w, size_t n,
                                            size_t k);
std::unique_ptr<Kernel> MakeLutKernelAvx2(WeightFormat format, const int8_t* w, size_t n,
                                          size_t k);
#elif defined(__ARM_NEON)  // AArch64, and armv7 built with -mfpu=neon*
std::unique_ptr<Kernel> MakeBitPlaneKernelNeon(WeightFormat format, const int8_t* w, size_t n,
                                               size_t k);
#endif
// Int8 activations (a8/layout.h; binary weights are codes 0 and 2 of the same 2-bit layout):
std::unique_ptr<Kernel> MakeReferenceInt8Kernel(const int8_t* w, size_t n, size_t k);
#if defined(__x86_64__)
std::unique_ptr<Kernel> MakeA8KernelAvx512Vnni(const int8_t* w, size_t n, size_t k);
std::unique_ptr<Kernel> MakeA8KernelAvx512Vbmi(const int8_t* w, size_t n, size_t k);  // dense layout
std::unique_ptr<Kernel> MakeA8KernelAmx(const int8_t* w, size_t n, size_t k);
bool AmxUsable();  // AMX-INT8 present and the tile state granted to this process (a8/amx.cc)
std::unique_ptr<Kernel> MakeA8KernelAvx2(const int8_t* w, size_t n, size_t k);
#elif defined(__ARM_NEON)
std::unique_ptr<Kernel> MakeA8KernelNeon(const int8_t* w, size_t n, size_t k);
#endif
#if defined(__aarch64__)
std::unique_ptr<Kernel> MakeA8KernelNeonDot(const int8_t* w, size_t n, size_t k);  // ARMv8.2 sdot
std::unique_ptr<Kernel> MakeA8KernelNeonI8mm(const int8_t* w, size_t n, size_t k);  // + smmla
#endif

// Scratch handed to kernels may have any alignment; vector code wants 64 bytes.
constexpr size_t kScratchAlign = 64;
inline void* AlignScratch(void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  return reinterpret_cast<void*>((a + kScratchAlign - 1) & ~uintptr_t{kScratchAlign - 1});
}
inline size_t RoundUp(size_t v, size_t to) { return (v + to - 1) / to * to; }

}  // namespace internal
}  // namespace tvlm

#endif  // TERNARY_VLM_CC_KERNELS_KERNEL_H_
