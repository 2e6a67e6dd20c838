#ifndef TERNARY_VLM_CC_KERNELS_INT8_MATMUL_H_
#define TERNARY_VLM_CC_KERNELS_INT8_MATMUL_H_

// Matmul of float activations against int8 weights read in place, with one step per output row, as a
// dynamic-range int8 FULLY_CONNECTED stores them in a .tflite:
//   y[i, r] = step[r] · (s[i] · Σ_c q[i, c] · W[r, c] - s[i] · z[i] · Σ_c W[r, c])
// where x's rows are quantized to q, s, z exactly as the W2A8 kernels do (a8/layout.h): Σ q·W is exact in
// int32, and the rest is the same float operations for every ISA's loop, so all give the same floats. The weights are not copied: a tied LM head's int8
// table, which the embedding lookup reads too, is streamed from the model file as it is, on the same
// thread pool as the ternary layers (so decode needs no second pool).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "cc/kernels/matmul.h"
#include "cc/kernels/status.h"
#include "cc/kernels/thread_pool.h"
#include "cc/kernels/w8/isa.h"

namespace tvlm {

class Int8MatMul {
 public:
  // The ISAs with an int8-weight loop on this CPU, reference (portable C++) first, best last:
  // avx2, avx512 (VNNI) on x86; neon_dot on AArch64 with the dot product.
  static std::vector<Isa> AvailableIsas();
  static Isa BestIsa() { return AvailableIsas().back(); }

  // w: [n, k] int8, which must outlive the object. k is at most kMaxK (the sums stay within int32).
  static Status Create(Isa isa, const int8_t* w, size_t n, size_t k, std::unique_ptr<Int8MatMul>* out);
  static constexpr size_t kMaxK = size_t{1} << 16;

  size_t ScratchBytes(size_t m) const;  // for m rows of x; any alignment

  // x: [m, k], step: [n], y: [m, n]. pool may be nullptr (one thread).
  void Run(const float* x, size_t m, const float* step, float* y, void* scratch, ThreadPool* pool) const;

  Isa isa() const { return isa_; }
  size_t n() const { return n_; }
  size_t k() const { return k_; }

 private:
  Int8MatMul(Isa isa, internal::W8DotFn dot, const int8_t* w, size_t n, size_t k);

  Isa isa_;
  internal::W8DotFn dot_;
  const int8_t* w_;
  size_t n_, k_, stride_;
  std::vector<int32_t> row_sums_;  // Σ_c W[r, c] (w8/isa.h)
};

}  // namespace tvlm

#endif  // TERNARY_VLM_CC_KERNELS_INT8_MATMUL_H_
