#include "cc/kernels/matmul.h"

#if defined(__aarch64__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

#include <algorithm>
#include <string>

#include "cc/kernels/kernel.h"
#include "cc/kernels/vector_clones.h"

namespace tvlm {

const char* IsaName(Isa isa) {
  switch (isa) {
    case Isa::kReference: return "reference";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx512Vbmi: return "avx512_vbmi";
    case Isa::kAmx: return "amx";
    case Isa::kNeon: return "neon";
    case Isa::kNeonDot: return "neon_dot";
    case Isa::kNeonI8mm: return "neon_i8mm";
  }
  return "unknown";
}

const char* ActivationsName(Activations activations) {
  return activations == Activations::kInt8 ? "int8" : "float32";
}

std::vector<Isa> AvailableIsas(Activations activations) {
  std::vector<Isa> isas = {Isa::kReference};
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) isas.push_back(Isa::kAvx2);
  const bool avx512_int8 =
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni");
  // The dense 1.6-bit layout streams 20 % fewer bytes but decodes them with 16 vector ops per 64 bytes
  // against 8: on a Xeon (Sapphire Rapids) it takes 1.1-1.25x the 2-bit loop's time at M = 1 (1 and 2
  // threads) and ~1.9x at M = 32 (docs/BENCHMARKS.md), so it ranks below it.
  if (activations == Activations::kInt8 && avx512_int8 && __builtin_cpu_supports("avx512vbmi")) {
    isas.push_back(Isa::kAvx512Vbmi);
  }
  if (__builtin_cpu_supports("avx512f") && (activations == Activations::kFloat32 || avx512_int8)) {
    isas.push_back(Isa::kAvx512);
  }
  // AMX tiles (Sapphire Rapids and later) for int8 activations: prefill; decode runs the VNNI loop.
  if (activations == Activations::kInt8 && avx512_int8 && internal::AmxUsable()) isas.push_back(Isa::kAmx);
#elif defined(__ARM_NEON)
  // Advanced SIMD is mandatory on AArch64. On 32-bit ARM it is a build-time choice: our armv7
  // target compiles with -mfpu=neon-vfpv4, so its binaries already require NEON everywhere.
  isas.push_back(Isa::kNeon);
#endif
#if defined(__aarch64__)
  const bool dot = getauxval(AT_HWCAP) & HWCAP_ASIMDDP;
  if (activations == Activations::kInt8 && dot) {
    isas.push_back(Isa::kNeonDot);
    if (getauxval(AT_HWCAP2) & HWCAP2_I8MM) isas.push_back(Isa::kNeonI8mm);
  }
#endif
  return isas;
}

Isa BestIsa(Activations activations) { return AvailableIsas(activations).back(); }

MatMulKernel::MatMulKernel(WeightFormat format, Activations activations, Isa isa, size_t n,
                           size_t k, std::unique_ptr<internal::Kernel> impl)
    : format_(format),
      activations_(activations),
      isa_(isa),
      n_(n),
      k_(k),
      impl_(std::move(impl)) {}

namespace {

std::unique_ptr<internal::Kernel> MakeKernel(WeightFormat format, Activations activations, Isa isa,
                                             const int8_t* w, size_t n, size_t k) {
  using namespace internal;  // NOLINT: the Make* factories of kernel.h
  const bool int8 = activations == Activations::kInt8;
  switch (isa) {
    case Isa::kReference:
      return int8 ? MakeReferenceInt8Kernel(w, n, k) : MakeReferenceKernel(w, n, k);
#if defined(__x86_64__)
    case Isa::kAvx2:
      return int8 ? MakeA8KernelAvx2(w, n, k) : MakeLutKernelAvx2(format, w, n, k);
    case Isa::kAvx512:
      return int8 ? MakeA8KernelAvx512Vnni(w, n, k) : MakeLutKernelAvx512(format, w, n, k);
    case Isa::kAvx512Vbmi:
      return int8 ? MakeA8KernelAvx512Vbmi(w, n, k) : nullptr;
    case Isa::kAmx:
      return int8 ? MakeA8KernelAmx(w, n, k) : nullptr;
#elif defined(__ARM_NEON)
    case Isa::kNeon:
      return int8 ? MakeA8KernelNeon(w, n, k) : MakeBitPlaneKernelNeon(format, w, n, k);
#endif
#if defined(__aarch64__)
    case Isa::kNeonDot:
      return int8 ? MakeA8KernelNeonDot(w, n, k) : nullptr;
    case Isa::kNeonI8mm:
      return int8 ? MakeA8KernelNeonI8mm(w, n, k) : nullptr;
#endif
    default:
      return nullptr;
  }
}

// y[i, r] = (y[i, r] - offset[i] · sums[r]) · scale[r] (+ bias[r]) for rows i < m and columns [begin, end) (offset
// nullptr: no zero-point term): one clone per ISA, since the baseline SSE2 loop took ~2 % of a SmolLM2 prefill (the
// library is built with -ffp-contract=off, so every clone rounds each product and sum separately, as the baseline
// does: the same floats whatever the ISA).
TVLM_VECTOR_CLONES void ScaleColumns(float* __restrict y, size_t m, size_t n, size_t begin, size_t end,
                                     const float* __restrict scale, const float* __restrict bias,
                                     const float* __restrict offset, const float* __restrict sums) {
  for (size_t i = 0; i < m; ++i) {
    float* __restrict yi = y + i * n;
    if (offset != nullptr) {
      const float o = offset[i];
      if (bias != nullptr) {
        for (size_t r = begin; r < end; ++r) yi[r] = (yi[r] - o * sums[r]) * scale[r] + bias[r];
      } else {
        for (size_t r = begin; r < end; ++r) yi[r] = (yi[r] - o * sums[r]) * scale[r];
      }
    } else if (bias != nullptr) {
      for (size_t r = begin; r < end; ++r) yi[r] = yi[r] * scale[r] + bias[r];
    } else {
      for (size_t r = begin; r < end; ++r) yi[r] *= scale[r];
    }
  }
}

}  // namespace

MatMulKernel::~MatMulKernel() = default;

Status MatMulKernel::Create(WeightFormat format, Activations activations, Isa isa,
                            const uint8_t* packed, size_t packed_bytes, size_t n, size_t k,
                            std::unique_ptr<MatMulKernel>* out) {
  const std::string shape = "[" + std::to_string(n) + ", " + std::to_string(k) + "]";
  if (n == 0 || k == 0) return Status::Error("empty weight shape " + shape);
  const size_t expected = n * RowBytes(format, k);
  if (packed_bytes != expected) {
    return Status::Error(std::string(FormatInfo(format).name) + " weights of shape " + shape +
                         " need " + std::to_string(expected) + " packed bytes, found " +
                         std::to_string(packed_bytes));
  }
  const auto isas = AvailableIsas(activations);
  if (std::find(isas.begin(), isas.end(), isa) == isas.end()) {
    return Status::Error(std::string("ISA ") + IsaName(isa) + " has no " +
                         ActivationsName(activations) + "-activation kernel on this CPU");
  }
  std::vector<int8_t> w(n * k);
  Status status = Unpack(format, packed, n, k, w.data());
  if (!status.ok()) return status;

  // Kernels see the alphabet only: both ternary storage formats re-pack the same way.
  const WeightFormat alphabet = format == WeightFormat::kTernary5 ? WeightFormat::kTernary2 : format;
  std::unique_ptr<internal::Kernel> impl = MakeKernel(alphabet, activations, isa, w.data(), n, k);
  if (!impl) return Status::Error(std::string("no kernel for ISA ") + IsaName(isa));
  out->reset(new MatMulKernel(format, activations, isa, n, k, std::move(impl)));
  if (activations == Activations::kInt8) {  // Σ_c W[r, c] for the zero point's term (exact: |Σ| <= k < 2^24)
    (*out)->weight_sums_.resize(n);
    for (size_t r = 0; r < n; ++r) {
      int32_t sum = 0;
      for (size_t c = 0; c < k; ++c) sum += w[r * k + c];
      (*out)->weight_sums_[r] = static_cast<float>(sum);
    }
  }
  return Status::Ok();
}

size_t MatMulKernel::ScratchBytes(size_t m) const {
  const size_t bytes = impl_->ScratchBytes(m);
  return bytes == 0 ? 0 : bytes + internal::kScratchAlign;
}

void MatMulKernel::Run(const float* x, size_t m, const float* scale, const float* bias, float* y,
                       void* scratch, ThreadPool* pool) const {
  if (m == 0) return;
  if (m * n_ * k_ < kMinParallelMacs) pool = nullptr;
  void* aligned = internal::AlignScratch(scratch);
  impl_->Prepare(x, m, aligned, pool);
  const float* offset = impl_->RowOffsets(aligned, m);
  ParallelFor(pool, n_, impl_->row_block(m), [&](size_t begin, size_t end) {
    impl_->Dot(x, m, aligned, begin, end, y);
    ScaleColumns(y, m, n_, begin, end, scale, bias, offset, weight_sums_.data());
  });
}

}  // namespace tvlm
