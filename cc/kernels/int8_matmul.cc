#include "cc/kernels/int8_matmul.h"

#include <algorithm>
#include <string>

#include "cc/kernels/a8/layout.h"
#include "cc/kernels/kernel.h"

namespace tvlm {
namespace {

internal::W8DotFn DotFor(Isa isa) {
  switch (isa) {
    case Isa::kReference: return &internal::W8DotPortable;
#if defined(__x86_64__)
    case Isa::kAvx2: return &internal::W8DotAvx2;
    case Isa::kAvx512: return &internal::W8DotAvx512Vnni;
#endif
#if defined(__aarch64__)
    case Isa::kNeonDot: return &internal::W8DotNeonDot;
#endif
    default: return nullptr;
  }
}

// Threads take output rows in multiples of this: the loops' 4-row tiles, 16 at a time.
constexpr size_t kRowBlock = 16;

}  // namespace

std::vector<Isa> Int8MatMul::AvailableIsas() {
  // The W2A8 ISAs this CPU has (matmul.h), less those without an int8-weight loop: AVX-512 means VNNI
  // there, and the dense layout and AMX are W2A8 only; plain NEON runs the portable loop.
  std::vector<Isa> isas;
  for (Isa isa : ::tvlm::AvailableIsas(Activations::kInt8)) {
    if (DotFor(isa) != nullptr) isas.push_back(isa);
  }
  return isas;
}

Int8MatMul::Int8MatMul(Isa isa, internal::W8DotFn dot, const int8_t* w, size_t n, size_t k)
    : isa_(isa), dot_(dot), w_(w), n_(n), k_(k), stride_(internal::RoundUp(k, 64)), row_sums_(n) {
  for (size_t r = 0; r < n; ++r) {
    int32_t sum = 0;
    for (size_t c = 0; c < k; ++c) sum += w[r * k + c];
    row_sums_[r] = sum;
  }
}

Status Int8MatMul::Create(Isa isa, const int8_t* w, size_t n, size_t k, std::unique_ptr<Int8MatMul>* out) {
  const std::string shape = "[" + std::to_string(n) + ", " + std::to_string(k) + "]";
  if (n == 0 || k == 0) return Status::Error("empty int8 weight shape " + shape);
  if (k > kMaxK) {
    return Status::Error("int8 weights " + shape + " have more than " + std::to_string(kMaxK) +
                         " inputs (their int32 sums could overflow)");
  }
  if (w == nullptr) return Status::Error("int8 weights " + shape + " have no data");
  const auto isas = AvailableIsas();
  if (std::find(isas.begin(), isas.end(), isa) == isas.end()) {
    return Status::Error(std::string("ISA ") + IsaName(isa) + " has no int8-weight loop on this CPU");
  }
  out->reset(new Int8MatMul(isa, DotFor(isa), w, n, k));
  return Status::Ok();
}

size_t Int8MatMul::ScratchBytes(size_t m) const {
  return internal::A8ScratchBytes(m, stride_) + internal::kScratchAlign;
}

void Int8MatMul::Run(const float* x, size_t m, const float* step, float* y, void* scratch,
                     ThreadPool* pool) const {
  if (m == 0) return;
  if (m * n_ * k_ < kMinParallelMacs) pool = nullptr;
  const internal::A8Rows rows = internal::A8View(internal::AlignScratch(scratch), m, stride_);
  internal::QuantizeRows(x, m, k_, rows);
  ParallelFor(pool, n_, kRowBlock, [&](size_t begin, size_t end) {
    dot_(w_, k_, row_sums_.data(), rows, m, begin, end, n_, y);
    for (size_t i = 0; i < m; ++i) {  // the zero point's term (a8/layout.h), then the step
      float* yi = y + i * n_;
      const float o = rows.offset[i];
      for (size_t r = begin; r < end; ++r) yi[r] = (yi[r] - o * static_cast<float>(row_sums_[r])) * step[r];
    }
  });
}

}  // namespace tvlm
