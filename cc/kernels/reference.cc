// The ground truth: plain loops over the unpacked int8 weights; float accumulation in k order, or
// (int8 activations) exact int32 sums of the quantized rows.

#include <memory>
#include <vector>

#include "cc/kernels/a8/layout.h"
#include "cc/kernels/kernel.h"

namespace tvlm {
namespace internal {
namespace {

class ReferenceKernel : public Kernel {
 public:
  ReferenceKernel(const int8_t* w, size_t n, size_t k) : w_(w, w + n * k), n_(n), k_(k) {}

  size_t row_block(size_t) const override { return 1; }
  size_t ScratchBytes(size_t) const override { return 0; }
  void Prepare(const float*, size_t, void*, ThreadPool*) const override {}

  void Dot(const float* x, size_t m, const void*, size_t begin, size_t end,
           float* y) const override {
    for (size_t i = 0; i < m; ++i) {
      for (size_t r = begin; r < end; ++r) {
        float acc = 0.0f;
        for (size_t c = 0; c < k_; ++c) acc += x[i * k_ + c] * static_cast<float>(w_[r * k_ + c]);
        y[i * n_ + r] = acc;
      }
    }
  }

 private:
  std::vector<int8_t> w_;
  size_t n_, k_;
};

class ReferenceInt8Kernel : public Kernel {
 public:
  ReferenceInt8Kernel(const int8_t* w, size_t n, size_t k) : w_(w, w + n * k), n_(n), k_(k) {}

  size_t row_block(size_t) const override { return 1; }
  size_t ScratchBytes(size_t m) const override { return A8ScratchBytes(m, k_); }
  void Prepare(const float* x, size_t m, void* scratch, ThreadPool*) const override {
    QuantizeRows(x, m, k_, A8View(scratch, m, k_));
  }

  void Dot(const float*, size_t m, const void* scratch, size_t begin, size_t end,
           float* y) const override {
    const A8Rows rows = A8View(const_cast<void*>(scratch), m, k_);
    for (size_t i = 0; i < m; ++i) {
      const int8_t* q = rows.q + i * k_;
      for (size_t r = begin; r < end; ++r) {
        int32_t acc = 0;
        for (size_t c = 0; c < k_; ++c) acc += int32_t{q[c]} * w_[r * k_ + c];
        y[i * n_ + r] = static_cast<float>(acc) * rows.scale[i];
      }
    }
  }

  const float* RowOffsets(const void* scratch, size_t m) const override {
    return A8View(const_cast<void*>(scratch), m, k_).offset;
  }

 private:
  std::vector<int8_t> w_;
  size_t n_, k_;
};

}  // namespace

std::unique_ptr<Kernel> MakeReferenceKernel(const int8_t* w, size_t n, size_t k) {
  return std::make_unique<ReferenceKernel>(w, n, k);
}

std::unique_ptr<Kernel> MakeReferenceInt8Kernel(const int8_t* w, size_t n, size_t k) {
  return std::make_unique<ReferenceInt8Kernel>(w, n, k);
}

}  // namespace internal
}  // namespace tvlm
