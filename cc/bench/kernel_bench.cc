// Cold-weight micro-benchmark of MatMulKernel (ternary2, binary1) and Int8MatMul (int8 weights read in
// place) on every ISA this CPU runs.
//
//   tools/bazel run //cc/bench:kernel_bench -- [--threads=1,2] [--m=1,32] [--isa=avx512]
//       [--activations=float32,int8] [--formats=ternary2,binary1,int8] [--shapes=2048x8192,8192x2048]
//       [--json=PATH]
//
// Each configuration rotates over enough copies of its weights (> 64 MB together) that none is
// cache-resident when it is used, and reports the median time of one call, the packed-weight
// bandwidth that implies, and its floor: the median time to stream the same number of bytes from
// equally cold copies with a plain vectorized read (the fastest of a few software-prefetch distances),
// split over the same threads, measured in the same run right after the kernel (x_floor = kernel time / floor time; 1.0 means the kernel runs at the
// speed of reading its weights). A memcpy bandwidth line is printed for scale.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "cc/kernels/int8_matmul.h"
#include "cc/kernels/matmul.h"
#include "cc/kernels/packing.h"

namespace tvlm {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kColdBytes = 80u << 20;  // weight copies per configuration, > 64 MB (> L3)
constexpr double kMinSeconds = 0.25;      // per configuration
constexpr int kMinReps = 5, kMaxReps = 2000;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double MemcpyGbps() {
  const size_t bytes = 256u << 20;
  std::vector<char> src(bytes, 1), dst(bytes, 0);
  std::vector<double> times;
  for (int i = 0; i < 5; ++i) {
    const auto t0 = Clock::now();
    std::memcpy(dst.data(), src.data(), bytes);
    times.push_back(Seconds(t0, Clock::now()));
  }
  return bytes / Median(times) * 1e-9;
}

struct Result {
  std::string isa, activations, format;
  size_t m, k, n;
  int threads;
  double ms, gbps, floor_ms;
};

// XORs `bytes` bytes (a multiple of 64) into four independent 16-byte accumulators, prefetching
// `ahead` bytes ahead (0: none): nothing but loads, so its speed is what the memory system gives.
typedef uint64_t Vec __attribute__((vector_size(16)));
Vec StreamRead(const uint8_t* p, size_t bytes, size_t ahead) {
  Vec a = {0, 0}, b = a, c = a, d = a;
  for (size_t i = 0; i + 64 <= bytes; i += 64) {
    if (ahead) __builtin_prefetch(p + i + ahead);
    Vec v[4];
    std::memcpy(v, p + i, 64);
    a ^= v[0];
    b ^= v[1];
    c ^= v[2];
    d ^= v[3];
  }
  return a ^ b ^ c ^ d;
}

// Software prefetch distances the floor tries; it keeps the fastest (the hardware prefetcher alone
// leaves one core far below the memory's bandwidth on some CPUs, and a floor must be a floor).
constexpr size_t kFloorPrefetch[] = {0, 1024, 4096, 8192, 16384};

// Median seconds of `call(c)` over rotating copies c = copies, copies + 1, ... after one untimed
// pass over every copy (page faults, freshly written lines, thread wake-up).
template <typename Call>
double MedianSeconds(size_t copies, const Call& call) {
  for (size_t c = 0; c < copies; ++c) call(c);
  std::vector<double> times;
  const auto start = Clock::now();
  for (size_t c = copies; times.size() < kMaxReps &&
                     (times.size() < kMinReps || Seconds(start, Clock::now()) < kMinSeconds);
       ++c) {
    const auto t0 = Clock::now();
    call(c);
    times.push_back(Seconds(t0, Clock::now()));
  }
  return Median(times);
}

std::vector<int> ParseList(const std::string& s) {
  std::vector<int> out;
  for (size_t p = 0; p < s.size();) {
    out.push_back(std::atoi(s.c_str() + p));
    p = s.find(',', p);
    if (p == std::string::npos) break;
    ++p;
  }
  return out;
}

int Main(int argc, char** argv) {
  std::vector<int> threads = {1, 2}, ms = {1, 32};
  std::vector<std::pair<size_t, size_t>> shapes = {
      {576, 1536}, {1536, 576}, {2048, 2048}, {2048, 8192}, {8192, 2048}};  // K x N
  std::string json_path, isa_filter, activations_filter, formats_filter;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--threads=", 0) == 0) {
      threads = ParseList(arg.substr(10));
    } else if (arg.rfind("--m=", 0) == 0) {
      ms = ParseList(arg.substr(4));
    } else if (arg.rfind("--shapes=", 0) == 0) {
      shapes.clear();
      for (size_t p = 9; p < arg.size();) {
        const size_t x = arg.find('x', p);
        if (x == std::string::npos) break;
        shapes.emplace_back(std::atoi(arg.c_str() + p), std::atoi(arg.c_str() + x + 1));
        p = arg.find(',', x);
        if (p == std::string::npos) break;
        ++p;
      }
    } else if (arg.rfind("--json=", 0) == 0) {
      json_path = arg.substr(7);
    } else if (arg.rfind("--isa=", 0) == 0) {
      isa_filter = arg.substr(6);
    } else if (arg.rfind("--activations=", 0) == 0) {
      activations_filter = arg.substr(14);
    } else if (arg.rfind("--formats=", 0) == 0) {
      formats_filter = arg.substr(10);
    } else {
      std::fprintf(stderr,
                   "usage: %s [--threads=1,2] [--m=1,32] [--isa=NAME] [--activations=float32|int8] "
                   "[--formats=ternary2,binary1,int8] [--shapes=KxN,...] "
                   "[--json=PATH]\n",
                   argv[0]);
      return 2;
    }
  }
  const double memcpy_gbps = MemcpyGbps();
  std::printf("memcpy: %.1f GB/s copied (256 MB, 1 thread; reads + writes = 2x that)\n\n",
              memcpy_gbps);
  std::printf("%-9s %-7s %-8s %3s %5s %5s %3s %10s %8s %9s %7s\n", "isa", "act", "format", "M", "K",
              "N", "thr", "median_ms", "GB/s", "floor_ms", "x_floor");

  std::vector<Result> results;
  std::mt19937 rng(1);

  // Times run(copy, x, m, y, pool) on `copies` cold copies of `bytes` weight bytes, and the read floor of
  // those bytes, for every m and thread count; prints and keeps one result each.
  using Run = std::function<void(size_t, const float*, size_t, float*, ThreadPool*)>;
  auto measure = [&](const char* isa, const char* act, const char* format, size_t k, size_t n,
                     size_t bytes, size_t copies, const Run& run) {
    // The floor's own cold copies (64-byte aligned, a multiple of 64 bytes, like the kernels').
    const size_t floor_bytes = (bytes + 63) / 64 * 64;
    std::vector<std::vector<Vec>> floor_copies(copies, std::vector<Vec>(floor_bytes / 16, Vec{1, 2}));
    for (const size_t m : std::vector<size_t>(ms.begin(), ms.end())) {
      std::vector<float> x(m * k), y(m * n);
      for (auto& v : x) v = static_cast<float>(rng() % 2001) / 1000.0f - 1.0f;
      for (int t : threads) {
        ThreadPool pool(t);
        const double sec = MedianSeconds(copies, [&](size_t c) { run(c % copies, x.data(), m, y.data(), &pool); });
        const size_t lines = floor_bytes / 64;
        std::vector<Vec> sink(t);  // one per chunk, printed below so the reads are not dropped
        double floor_sec = 1e30;
        for (const size_t ahead : kFloorPrefetch) {
          floor_sec = std::min(floor_sec, MedianSeconds(copies, [&](size_t c) {
            const uint8_t* p = reinterpret_cast<const uint8_t*>(floor_copies[c % copies].data());
            pool.ParallelFor(lines, 1, [&](size_t begin, size_t end) {
              sink[begin * t / lines] ^= StreamRead(p + begin * 64, (end - begin) * 64, ahead);
            });
          }));
        }
        if (sink[0][0] == 0x5eed) std::printf("(checksum)\n");
        results.push_back({isa, act, format, m, k, n, t, sec * 1e3, bytes / sec * 1e-9, floor_sec * 1e3});
        const Result& r = results.back();
        std::printf("%-9s %-7s %-8s %3zu %5zu %5zu %3d %10.4f %8.1f %9.4f %7.2f\n", r.isa.c_str(),
                    r.activations.c_str(), r.format.c_str(), r.m, r.k, r.n, r.threads, r.ms, r.gbps,
                    r.floor_ms, r.ms / r.floor_ms);
        std::fflush(stdout);
      }
    }
  };

  std::vector<std::pair<Activations, Isa>> configs;
  for (Activations act : {Activations::kFloat32, Activations::kInt8}) {
    if (!activations_filter.empty() && activations_filter != ActivationsName(act)) continue;
    for (Isa isa : AvailableIsas(act)) {
      if (isa_filter.empty() || isa_filter == IsaName(isa)) configs.emplace_back(act, isa);
    }
  }
  for (const auto& [act, isa] : configs) {
    for (WeightFormat format : {WeightFormat::kTernary2, WeightFormat::kBinary1}) {
      if (!formats_filter.empty() && formats_filter.find(FormatInfo(format).name) == std::string::npos) continue;
      for (const auto& shape : shapes) {
        const size_t k = shape.first, n = shape.second;
        std::vector<int8_t> values(n * k);
        for (auto& v : values) {
          const int r = static_cast<int>(rng() % 3);
          v = static_cast<int8_t>(format == WeightFormat::kTernary2 ? r - 1 : (r & 1) * 2 - 1);
        }
        const size_t packed_bytes = n * RowBytes(format, k);
        std::vector<uint8_t> packed(packed_bytes);
        if (!Pack(format, values.data(), n, k, packed.data()).ok()) return 1;
        const size_t copies = std::max<size_t>(2, kColdBytes / packed_bytes);
        std::vector<std::unique_ptr<MatMulKernel>> kernels(copies);
        for (auto& kernel : kernels) {
          const Status s =
              MatMulKernel::Create(format, act, isa, packed.data(), packed_bytes, n, k, &kernel);
          if (!s.ok()) {
            std::fprintf(stderr, "%s\n", s.message().c_str());
            return 1;
          }
        }
        const std::vector<float> scale(n, 1.0f), bias(n, 0.5f);
        std::vector<uint8_t> scratch;
        measure(IsaName(isa), ActivationsName(act), FormatInfo(format).name, k, n, packed_bytes, copies,
                [&](size_t c, const float* x, size_t m, float* y, ThreadPool* pool) {
                  if (scratch.size() < kernels[c]->ScratchBytes(m)) scratch.resize(kernels[c]->ScratchBytes(m));
                  kernels[c]->Run(x, m, scale.data(), bias.data(), y, scratch.data(), pool);
                });
      }
    }
  }
  // Int8 weights read in place (Int8MatMul: a tied LM head), int8 activations; SmolLM2's head is 576 x 49152.
  const bool int8_wanted = (activations_filter.empty() || activations_filter == "int8") &&
                           (formats_filter.empty() || formats_filter.find("int8") != std::string::npos);
  for (Isa isa : int8_wanted ? Int8MatMul::AvailableIsas() : std::vector<Isa>{}) {
    if (!isa_filter.empty() && isa_filter != IsaName(isa)) continue;
    for (const auto& shape : shapes) {
      const size_t k = shape.first, n = shape.second;
      const size_t copies = std::max<size_t>(2, kColdBytes / (n * k));
      std::vector<std::vector<int8_t>> weights(copies, std::vector<int8_t>(n * k));
      std::vector<std::unique_ptr<Int8MatMul>> kernels(copies);
      for (size_t c = 0; c < copies; ++c) {
        for (auto& v : weights[c]) v = static_cast<int8_t>(static_cast<int>(rng() % 255) - 127);
        const Status s = Int8MatMul::Create(isa, weights[c].data(), n, k, &kernels[c]);
        if (!s.ok()) {
          std::fprintf(stderr, "%s\n", s.message().c_str());
          return 1;
        }
      }
      const std::vector<float> step(n, 0.01f);
      std::vector<uint8_t> scratch;
      measure(IsaName(isa), "int8", "int8", k, n, n * k, copies,
              [&](size_t c, const float* x, size_t m, float* y, ThreadPool* pool) {
                if (scratch.size() < kernels[c]->ScratchBytes(m)) scratch.resize(kernels[c]->ScratchBytes(m));
                kernels[c]->Run(x, m, step.data(), y, scratch.data(), pool);
              });
    }
  }
  if (!json_path.empty()) {
    FILE* f = std::fopen(json_path.c_str(), "w");
    if (f == nullptr) {
      std::perror(json_path.c_str());
      return 1;
    }
    std::fprintf(f, "{\n  \"memcpy_gbps\": %.3f,\n  \"results\": [\n", memcpy_gbps);
    for (size_t i = 0; i < results.size(); ++i) {
      const Result& r = results[i];
      std::fprintf(f,
                   "    {\"isa\": \"%s\", \"activations\": \"%s\", \"format\": \"%s\", \"m\": %zu, "
                   "\"k\": %zu, \"n\": %zu, "
                   "\"threads\": %d, \"median_ms\": %.5f, \"weight_gbps\": %.3f, \"floor_ms\": %.5f}%s\n",
                   r.isa.c_str(), r.activations.c_str(), r.format.c_str(), r.m, r.k, r.n, r.threads, r.ms, r.gbps,
                   r.floor_ms, i + 1 < results.size() ? "," : "");
    }
    std::fprintf(f, "  ]\n}\n");
    std::fclose(f);
  }
  return 0;
}

}  // namespace
}  // namespace tvlm

int main(int argc, char** argv) { return tvlm::Main(argc, argv); }
