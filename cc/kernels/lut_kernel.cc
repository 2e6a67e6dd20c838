// The AVX-512 kernel object: LutLayout weights, tables built per Run, LutDotAvx512 over them.

#include <algorithm>
#include <memory>
#include <vector>

#include "cc/kernels/kernel.h"
#include "cc/kernels/lut_avx512.h"
#include "cc/kernels/lut_layout.h"

namespace tvlm {
namespace internal {
namespace {

class LutKernelAvx512 : public Kernel {
 public:
  LutKernelAvx512(WeightFormat format, const int8_t* w, size_t n, size_t k)
      : layout_(format, n, k), words_(LutPack(layout_, w)) {}

  // Four blocks per tile, so threads never split a tile.
  size_t row_block() const override { return 4 * LutLayout::kRows; }

  size_t ScratchBytes(size_t m) const override { return m * TableStride() * sizeof(float); }

  void Prepare(const float* x, size_t m, void* scratch, ThreadPool* pool) const override {
    float* tables = static_cast<float*>(scratch);
    const size_t words = layout_.words_per_row;
    // Units are (activation row, word) pairs; a chunk may span rows.
    ParallelFor(pool, m * words, 64, [&](size_t begin, size_t end) {
      while (begin < end) {
        const size_t i = begin / words, d0 = begin % words, d1 = std::min(words, d0 + end - begin);
        LutTablesAvx512(layout_, x + i * layout_.k, d0, d1, tables + i * TableStride());
        begin += d1 - d0;
      }
    });
  }

  void Dot(const float*, size_t m, const void* scratch, size_t begin, size_t end,
           float* y) const override {
    LutDotAvx512(layout_, words_.data(), static_cast<const float*>(scratch), TableStride(), m,
                 begin, end, y);
  }

 private:
  size_t TableStride() const { return layout_.words_per_row * LutLayout::kWordTableFloats; }

  LutLayout layout_;
  std::vector<uint32_t> words_;
};

}  // namespace

std::unique_ptr<Kernel> MakeLutKernelAvx512(WeightFormat format, const int8_t* w, size_t n,
                                            size_t k) {
  return std::make_unique<LutKernelAvx512>(format, w, n, k);
}

}  // namespace internal
}  // namespace tvlm
