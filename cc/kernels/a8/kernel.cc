// The int8-activation kernel object: quantizes x once per Run (Prepare), then the ISA loop
// (isa.h) runs each thread's rows over the shared A8Layout.

#include "cc/kernels/kernel.h"

#include <memory>
#include <vector>

#include "cc/kernels/a8/isa.h"
#include "cc/kernels/a8/layout.h"

namespace tvlm {
namespace internal {
namespace {

template <class Layout>
class A8Kernel : public Kernel {
 public:
  A8Kernel(A8DotFn<Layout> dot, const int8_t* w, size_t n, size_t k)
      : dot_(dot), layout_(n, k), packed_(A8Pack(layout_, w)) {}

  // Several rows run 4-block tiles (isa.h's loops); a thread's share must not split one, or its
  // last blocks fall to the one-block path.
  size_t row_block(size_t m) const override { return m >= 4 ? 4 * Layout::kRows : Layout::kRows; }

  size_t ScratchBytes(size_t m) const override { return A8ScratchBytes(m, layout_.k_padded); }

  void Prepare(const float* x, size_t m, void* scratch, ThreadPool*) const override {
    QuantizeRows(x, m, layout_.k, A8View(scratch, m, layout_.k_padded));
  }

  void Dot(const float*, size_t m, const void* scratch, size_t begin, size_t end,
           float* y) const override {
    const A8Rows rows = A8View(const_cast<void*>(scratch), m, layout_.k_padded);
    dot_(layout_, packed_.data(), rows, m, begin, end, y);
  }

  const float* RowOffsets(const void* scratch, size_t m) const override {
    return A8View(const_cast<void*>(scratch), m, layout_.k_padded).offset;
  }

 private:
  A8DotFn<Layout> dot_;
  Layout layout_;
  std::vector<uint8_t> packed_;
};

}  // namespace

#if defined(__x86_64__)
std::unique_ptr<Kernel> MakeA8KernelAvx512Vnni(const int8_t* w, size_t n, size_t k) {
  return std::make_unique<A8Kernel<A8Layout>>(&A8DotAvx512Vnni, w, n, k);
}
std::unique_ptr<Kernel> MakeA8KernelAvx512Vbmi(const int8_t* w, size_t n, size_t k) {
  return std::make_unique<A8Kernel<A8DenseLayout>>(&A8DenseDotAvx512Vbmi, w, n, k);
}
std::unique_ptr<Kernel> MakeA8KernelAmx(const int8_t* w, size_t n, size_t k) {
  return std::make_unique<A8Kernel<A8Layout>>(&A8DotAmx, w, n, k);
}
bool AmxUsable() { return AmxInt8Usable(); }
std::unique_ptr<Kernel> MakeA8KernelAvx2(const int8_t* w, size_t n, size_t k) {
  return std::make_unique<A8Kernel<A8Layout>>(&A8DotAvx2, w, n, k);
}
#elif defined(__ARM_NEON)
std::unique_ptr<Kernel> MakeA8KernelNeon(const int8_t* w, size_t n, size_t k) {
  return std::make_unique<A8Kernel<A8Layout>>(&A8DotNeon, w, n, k);
}
#endif
#if defined(__aarch64__)
std::unique_ptr<Kernel> MakeA8KernelNeonDot(const int8_t* w, size_t n, size_t k) {
  return std::make_unique<A8Kernel<A8Layout>>(&A8DotNeonDot, w, n, k);
}
std::unique_ptr<Kernel> MakeA8KernelNeonI8mm(const int8_t* w, size_t n, size_t k) {
  return std::make_unique<A8Kernel<A8Layout>>(&A8DotNeonI8mm, w, n, k);
}
#endif

}  // namespace internal
}  // namespace tvlm
