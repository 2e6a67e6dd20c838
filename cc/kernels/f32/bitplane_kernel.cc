// The NEON kernel object: BitPlaneLayout weights, padded activations per Run, and BitPlaneDotNeon
// over them.

#include <memory>
#include <vector>

#include "cc/kernels/f32/bitplane_layout.h"
#include "cc/kernels/kernel.h"

namespace tvlm {
namespace internal {
namespace {

class BitPlaneKernel : public Kernel {
 public:
  BitPlaneKernel(WeightFormat format, const int8_t* w, size_t n, size_t k)
      : layout_(format, n, k), words_(BitPlanePack(layout_, w)) {}

  size_t row_block(size_t) const override { return 4; }

  size_t ScratchBytes(size_t m) const override {
    return m * (layout_.padded_k() + 1) * sizeof(float);
  }

  void Prepare(const float* x, size_t m, void* scratch, ThreadPool*) const override {
    float* padded = static_cast<float*>(scratch);
    float* sums = padded + m * layout_.padded_k();
    for (size_t i = 0; i < m; ++i) {
      float* p = padded + i * layout_.padded_k();
      float sum = 0.0f;
      for (size_t c = 0; c < layout_.k; ++c) sum += p[c] = x[i * layout_.k + c];
      for (size_t c = layout_.k; c < layout_.padded_k(); ++c) p[c] = 0.0f;
      sums[i] = sum;
    }
  }

  void Dot(const float*, size_t m, const void* scratch, size_t begin, size_t end,
           float* y) const override {
    const float* padded = static_cast<const float*>(scratch);
    const BitPlaneArgs args = {&layout_, words_.data(), padded, padded + m * layout_.padded_k()};
    BitPlaneDotNeon(args, m, begin, end, y);
  }

 private:
  BitPlaneLayout layout_;
  std::vector<uint32_t> words_;
};

}  // namespace

std::unique_ptr<Kernel> MakeBitPlaneKernelNeon(WeightFormat format, const int8_t* w, size_t n,
                                               size_t k) {
  return std::make_unique<BitPlaneKernel>(format, w, n, k);
}

}  // namespace internal
}  // namespace tvlm
