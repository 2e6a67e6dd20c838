// The table-lookup kernel objects: AVX-512 over LutLayout (5-bit indices, 16 rows per vector)
// and AVX2 over Lut8Layout (3-bit indices, 8 rows per vector). Both re-pack the weights once,
// build per-activation tables in Prepare and look them up in Dot.

#include <algorithm>
#include <memory>
#include <vector>

#include "cc/kernels/f32/lut8_avx2.h"
#include "cc/kernels/f32/lut8_layout.h"
#include "cc/kernels/f32/lut_avx512.h"
#include "cc/kernels/f32/lut_layout.h"
#include "cc/kernels/kernel.h"

namespace tvlm {
namespace internal {
namespace {

template <class Layout>
struct LutOps {
  std::vector<uint32_t> (*pack)(const Layout&, const int8_t*);
  void (*tables)(const Layout&, const float*, size_t, size_t, float*);
  void (*dot)(const Layout&, const uint32_t*, const float*, size_t, size_t, size_t, size_t,
              float*);
  size_t row_block;  // the ISA loop's widest tile, so threads never split one
};

template <class Layout>
class LutKernel : public Kernel {
 public:
  LutKernel(const LutOps<Layout>& ops, WeightFormat format, const int8_t* w, size_t n, size_t k)
      : ops_(ops), layout_(format, n, k), words_(ops.pack(layout_, w)) {}

  size_t row_block(size_t) const override { return ops_.row_block; }

  size_t ScratchBytes(size_t m) const override { return m * TableStride() * sizeof(float); }

  void Prepare(const float* x, size_t m, void* scratch, ThreadPool* pool) const override {
    float* tables = static_cast<float*>(scratch);
    const size_t words = layout_.words_per_row;
    // Units are (activation row, word) pairs; a chunk may span rows.
    ParallelFor(pool, m * words, 64, [&](size_t begin, size_t end) {
      while (begin < end) {
        const size_t i = begin / words, d0 = begin % words, d1 = std::min(words, d0 + end - begin);
        ops_.tables(layout_, x + i * layout_.k, d0, d1, tables + i * TableStride());
        begin += d1 - d0;
      }
    });
  }

  void Dot(const float*, size_t m, const void* scratch, size_t begin, size_t end,
           float* y) const override {
    ops_.dot(layout_, words_.data(), static_cast<const float*>(scratch), TableStride(), m, begin,
             end, y);
  }

 private:
  size_t TableStride() const { return layout_.words_per_row * Layout::kWordTableFloats; }

  LutOps<Layout> ops_;
  Layout layout_;
  std::vector<uint32_t> words_;
};

}  // namespace

std::unique_ptr<Kernel> MakeLutKernelAvx512(WeightFormat format, const int8_t* w, size_t n,
                                            size_t k) {
  static const LutOps<LutLayout> kOps = {&LutPack, &LutTablesAvx512, &LutDotAvx512,
                                         4 * LutLayout::kRows};
  return std::make_unique<LutKernel<LutLayout>>(kOps, format, w, n, k);
}

std::unique_ptr<Kernel> MakeLutKernelAvx2(WeightFormat format, const int8_t* w, size_t n,
                                          size_t k) {
  static const LutOps<Lut8Layout> kOps = {&Lut8Pack, &Lut8TablesAvx2, &Lut8DotAvx2,
                                          Lut8Layout::kRows};
  return std::make_unique<LutKernel<Lut8Layout>>(kOps, format, w, n, k);
}

}  // namespace internal
}  // namespace tvlm
