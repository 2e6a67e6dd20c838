#ifndef TERNARY_VLM_CC_KERNELS_MATMUL_H_
#define TERNARY_VLM_CC_KERNELS_MATMUL_H_

// Matmul of float activations against ternary / binary weights:
//   y[m, n] = (x[m, k] · W[n, k]ᵀ) * scale[n] + bias[n]
// W arrives in the canonical packed rows of packing.h and is re-packed once, at Create, into the
// layout of the chosen ISA's kernel. How x is multiplied (Activations):
//   kFloat32  as it is: every kernel matches the reference to ~1e-6 relative error (float
//             accumulation in a different order).
//   kInt8     each row of x is first quantized to int8 with its own scale and zero point
//             (x ≈ s · (q - z), round half to even; cc/kernels/a8/layout.h) and Σ q·t is exact in
//             int32 (W2A8, as BitNet b1.58 and bitnet.cpp's I2_S; LiteRT's dynamic-range
//             FULLY_CONNECTED under XNNPACK quantizes its input rows with a zero point too). Every
//             kernel equals the reference exactly.
// A non-finite activation (inf, NaN) makes every output that meets it through a non-zero weight
// non-finite (with int8 activations its whole row comes out NaN) and leaves other rows as they are;
// through a zero weight it may be skipped (NEON's masked ternary kernel) or give NaN (0 * inf, the
// reference and the table-lookup kernels). Sums that overflow float give inf.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "cc/kernels/packing.h"
#include "cc/kernels/status.h"
#include "cc/kernels/thread_pool.h"

namespace tvlm {

enum class Isa { kReference, kAvx2, kAvx512, kAvx512Vbmi, kAmx, kNeon, kNeonDot, kNeonI8mm };
enum class Activations { kFloat32, kInt8 };

const char* IsaName(Isa isa);  // "reference", "avx2", "avx512", "avx512_vbmi", "amx", "neon", ...
const char* ActivationsName(Activations activations);  // "float32", "int8"
// The ISAs with a kernel for `activations` this CPU can run, reference first, best last (int8 on
// AVX-512 needs AVX512BW and VNNI; avx512_vbmi, int8 only, streams the dense 1.6-bit layout of
// a8/layout.h and needs VBMI besides; neon_dot and neon_i8mm, int8 only, the AArch64 dot-product and
// int8 matrix-multiply extensions).
std::vector<Isa> AvailableIsas(Activations activations);
Isa BestIsa(Activations activations);

namespace internal {
class Kernel;
}  // namespace internal

// Below this many multiply-adds (m · n · k) a matmul runs on its caller alone. SmolLM2's decode layers
// are 0.11 M (k, v) to 0.88 M (MLP) each; measured on the 2-core Zen 5 VM, ternary decode at 2 threads
// against 1 (workers spinning 20 us, 4 interleaved runs per setting): every decode matmul inline (a
// threshold of 2^21) 0.90-1.07x; q, o and the MLP split (2^18) 1.11-1.32x; k and v split too 1.02-1.37x
// (a 576 x 192 matmul alone is slower on 2 threads than on 1 in kernel_bench).
constexpr size_t kMinParallelMacs = size_t{1} << 18;

class MatMulKernel {
 public:
  // Checks packed_bytes == n * RowBytes(format, k) and the codes and padding of every row, then
  // re-packs the rows for `isa` (which must be in AvailableIsas(activations)).
  static Status Create(WeightFormat format, Activations activations, Isa isa,
                       const uint8_t* packed, size_t packed_bytes, size_t n, size_t k,
                       std::unique_ptr<MatMulKernel>* out);
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
  Activations activations() const { return activations_; }

 private:
  MatMulKernel(WeightFormat format, Activations activations, Isa isa, size_t n, size_t k,
               std::unique_ptr<internal::Kernel> impl);

  WeightFormat format_;
  Activations activations_;
  Isa isa_;
  size_t n_, k_;
  std::unique_ptr<internal::Kernel> impl_;
  std::vector<float> weight_sums_;  // int8 activations: Σ_c W[r, c] per output row (the zero point's term)
};

}  // namespace tvlm

#endif  // TERNARY_VLM_CC_KERNELS_MATMUL_H_
