#ifndef TERNARY_VLM_CC_KERNELS_MATMUL_H_
#define TERNARY_VLM_CC_KERNELS_MATMUL_H_

// Float-activation matmul against ternary / binary weights:
//   y[m, n] = (x[m, k] · W[n, k]ᵀ) * scale[n] + bias[n]
// W arrives in the canonical packed rows of packing.h and is re-packed once, at Create, into the
// layout of the chosen ISA's kernel. Every kernel matches the reference to ~1e-6 relative error
// (float accumulation in a different order; no activation quantization).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "cc/kernels/packing.h"
#include "cc/kernels/status.h"
#include "cc/kernels/thread_pool.h"

namespace tvlm {

enum class Isa { kReference, kAvx2, kAvx512, kNeon };

const char* IsaName(Isa isa);  // "reference", "avx2", "avx512", "neon"
std::vector<Isa> AvailableIsas();  // those this CPU can run, reference first, best last
Isa BestIsa();

namespace internal {
class Kernel;
}  // namespace internal

class MatMulKernel {
 public:
  // Checks packed_bytes == n * RowBytes(format, k) and the codes and padding of every row, then
  // re-packs the rows for `isa` (which must be in AvailableIsas()).
  static Status Create(WeightFormat format, Isa isa, const uint8_t* packed, size_t packed_bytes,
                       size_t n, size_t k, std::unique_ptr<MatMulKernel>* out);
  ~MatMulKernel();

  // Scratch Run needs for m rows of x; the caller allocates it once (any alignment).
  size_t ScratchBytes(size_t m) const;

  // x: [m, k], scale: [n], bias: [n] or nullptr, y: [m, n]. pool may be nullptr (one thread).
  void Run(const float* x, size_t m, const float* scale, const float* bias, float* y,
           void* scratch, ThreadPool* pool) const;

  Isa isa() const { return isa_; }
  size_t n() const { return n_; }
  size_t k() const { return k_; }
  WeightFormat format() const { return format_; }

 private:
  MatMulKernel(WeightFormat format, Isa isa, size_t n, size_t k,
               std::unique_ptr<internal::Kernel> impl);

  WeightFormat format_;
  Isa isa_;
  size_t n_, k_;
  std::unique_ptr<internal::Kernel> impl_;
};

}  // namespace tvlm

#endif  // TERNARY_VLM_CC_KERNELS_MATMUL_H_
