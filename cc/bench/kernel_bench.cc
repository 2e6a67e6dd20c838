// Cold-weight micro-benchmark of MatMulKernel on every ISA this CPU runs.
//
//   tools/bazel run //cc/bench:kernel_bench -- [--threads=1,2] [--m=1,32] [--isa=avx512]
//       [--activations=float32,int8] [--shapes=2048x8192,8192x2048] [--json=PATH]
//
// Each configuration rotates over enough copies of its weights (> 64 MB together) that none is
// cache-resident when it is used, and reports the median time of one call, the packed-weight
// bandwidth that implies, and a memcpy bandwidth line for scale.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

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
  double ms, gbps;
};

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
  std::string json_path, isa_filter, activations_filter;
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
    } else {
      std::fprintf(stderr,
                   "usage: %s [--threads=1,2] [--m=1,32] [--isa=NAME] [--activations=float32|int8] "
                   "[--shapes=KxN,...] "
                   "[--json=PATH]\n",
                   argv[0]);
      return 2;
    }
  }
  const double memcpy_gbps = MemcpyGbps();
  std::printf("memcpy: %.1f GB/s copied (256 MB, 1 thread; reads + writes = 2x that)\n\n",
              memcpy_gbps);
  std::printf("%-9s %-7s %-8s %3s %5s %5s %3s %10s %8s\n", "isa", "act", "format", "M", "K", "N",
              "thr", "median_ms", "GB/s");

  std::vector<Result> results;
  std::mt19937 rng(1);
  std::vector<std::pair<Activations, Isa>> configs;
  for (Activations act : {Activations::kFloat32, Activations::kInt8}) {
    if (!activations_filter.empty() && activations_filter != ActivationsName(act)) continue;
    for (Isa isa : AvailableIsas(act)) {
      if (isa_filter.empty() || isa_filter == IsaName(isa)) configs.emplace_back(act, isa);
    }
  }
  for (const auto& [act, isa] : configs) {
    for (WeightFormat format : {WeightFormat::kTernary2, WeightFormat::kBinary1}) {
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
        for (const size_t m : std::vector<size_t>(ms.begin(), ms.end())) {
          std::vector<float> x(m * k), y(m * n);
          for (auto& v : x) v = static_cast<float>(rng() % 2001) / 1000.0f - 1.0f;
          std::vector<uint8_t> scratch(kernels[0]->ScratchBytes(m));
          for (int t : threads) {
            ThreadPool pool(t);
            auto call = [&](size_t c) {
              kernels[c % copies]->Run(x.data(), m, scale.data(), bias.data(), y.data(),
                                       scratch.data(), &pool);
            };
            call(0);  // warm-up (page faults, thread wake-up)
            std::vector<double> times;
            const auto start = Clock::now();
            for (size_t c = 1; times.size() < kMaxReps &&
                               (times.size() < kMinReps || Seconds(start, Clock::now()) < kMinSeconds);
                 ++c) {
              const auto t0 = Clock::now();
              call(c);
              times.push_back(Seconds(t0, Clock::now()));
            }
            const double sec = Median(times);
            results.push_back({IsaName(isa), ActivationsName(act), FormatInfo(format).name, m, k,
                               n, t, sec * 1e3, packed_bytes / sec * 1e-9});
            const Result& r = results.back();
            std::printf("%-9s %-7s %-8s %3zu %5zu %5zu %3d %10.4f %8.1f\n", r.isa.c_str(),
                        r.activations.c_str(), r.format.c_str(), r.m, r.k, r.n, r.threads, r.ms,
                        r.gbps);
            std::fflush(stdout);
          }
        }
      }
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
                   "\"threads\": %d, \"median_ms\": %.5f, \"weight_gbps\": %.3f}%s\n",
                   r.isa.c_str(), r.activations.c_str(), r.format.c_str(), r.m, r.k, r.n, r.threads, r.ms, r.gbps,
                   i + 1 < results.size() ? "," : "");
    }
    std::fprintf(f, "  ]\n}\n");
    std::fclose(f);
  }
  return 0;
}

}  // namespace
}  // namespace tvlm

int main(int argc, char** argv) { return tvlm::Main(argc, argv); }
