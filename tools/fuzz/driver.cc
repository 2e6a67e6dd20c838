// A bounded mutation fuzzer for LLVMFuzzerTestOneInput targets, for compilers without libFuzzer
// (the project's gcc builds, under --config=sanitize in CI). It runs every seed file given on the
// command line (files or folders), then mutated seeds and random inputs until FUZZ_SECONDS (default
// 20) have passed, and prints how many inputs it tried. Without coverage guidance it finds less
// than libFuzzer in the same time, so it stands for a regression sweep; --config=fuzz (clang)
// builds the same target with libFuzzer for long runs (docs/RELIABILITY.md).
//
// When a sanitizer stops the process, the input that did it is printed in hex and written to
// $TEST_UNDECLARED_OUTPUTS_DIR (or the working directory) as fuzz-crash, to become a unit test.
#include <dirent.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
// Provided by the sanitizer runtimes; absent (null) in a build without them.
extern "C" void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

namespace {

std::vector<uint8_t> current;  // the input being run, for the death callback

void SaveCurrent() {
  std::fprintf(stderr, "\nfuzz: the input that failed (%zu bytes):", current.size());
  for (size_t i = 0; i < current.size(); ++i)
    std::fprintf(stderr, "%s%02x", i % 32 ? "" : "\n", current[i]);
  const char* dir = std::getenv("TEST_UNDECLARED_OUTPUTS_DIR");
  const std::string path = std::string(dir ? dir : ".") + "/fuzz-crash";
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(current.data()), current.size());
  std::fprintf(stderr, "\nfuzz: written to %s\n", path.c_str());
}

void Run(const std::vector<uint8_t>& input) {
  current = input;
  LLVMFuzzerTestOneInput(current.data(), current.size());
}

void AddSeeds(const std::string& path, std::vector<std::vector<uint8_t>>* seeds) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    std::fprintf(stderr, "fuzz: seed path %s does not exist\n", path.c_str());
    std::exit(2);
  }
  if (S_ISDIR(st.st_mode)) {
    DIR* dir = opendir(path.c_str());
    while (dirent* e = readdir(dir)) {
      if (e->d_name[0] != '.') AddSeeds(path + "/" + e->d_name, seeds);
    }
    closedir(dir);
    return;
  }
  std::ifstream file(path, std::ios::binary);
  seeds->emplace_back(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
}

// One of libFuzzer's simple mutations: flip a bit, set a byte to a random or boundary value,
// insert or erase bytes, or splice in part of another seed.
std::vector<uint8_t> Mutate(std::vector<uint8_t> x, const std::vector<std::vector<uint8_t>>& seeds,
                            std::mt19937_64& rng) {
  // Uniform in [0, n) as a size_t (rng() is 64-bit, size_t 32-bit on armv7).
  auto below = [&rng](size_t n) { return static_cast<size_t>(rng() % n); };
  const size_t count = 1 + below(4);
  for (size_t i = 0; i < count; ++i) {
    const size_t at = x.empty() ? 0 : below(x.size());
    switch (below(6)) {
      case 0:
        if (!x.empty()) x[at] ^= 1u << below(8);
        break;
      case 1:
        if (!x.empty()) x[at] = static_cast<uint8_t>(rng());
        break;
      case 2:
        if (!x.empty()) x[at] = (const uint8_t[]){0, 1, 0x7f, 0x80, 0xff}[below(5)];
        break;
      case 3:
        x.insert(x.begin() + at, 1 + below(8), static_cast<uint8_t>(rng()));
        break;
      case 4:
        if (!x.empty()) x.erase(x.begin() + at, x.begin() + std::min(x.size(), at + 1 + below(8)));
        break;
      default: {
        const auto& other = seeds[below(seeds.size())];
        if (!other.empty()) {
          const size_t from = below(other.size()), n = std::min(other.size() - from, 1 + below(16));
          x.insert(x.begin() + at, other.begin() + from, other.begin() + from + n);
        }
      }
    }
  }
  if (x.size() > 4096) x.resize(4096);
  return x;
}

}  // namespace

int main(int argc, char** argv) {
  if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(SaveCurrent);
  std::set_terminate([] {  // an exception escaping the target (through a C entry point)
    SaveCurrent();
    std::abort();
  });
  std::vector<std::vector<uint8_t>> seeds;
  for (int i = 1; i < argc; ++i) {
    if (argv[i][0] != '-') AddSeeds(argv[i], &seeds);
  }
  const char* seconds_env = std::getenv("FUZZ_SECONDS");
  const double seconds = seconds_env ? std::atof(seconds_env) : 20.0;
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };

  for (const auto& seed : seeds) Run(seed);
  seeds.emplace_back();  // the empty input, and random inputs grown from it
  std::mt19937_64 rng(0x7e57);
  size_t runs = seeds.size() - 1;
  while (elapsed() < seconds) {
    for (int i = 0; i < 64; ++i, ++runs)
      Run(Mutate(seeds[static_cast<size_t>(rng() % seeds.size())], seeds, rng));
  }
  std::printf("fuzz: %zu inputs (%zu seeds) in %.1f s, no crash\n", runs, seeds.size() - 1,
              elapsed());
  return 0;
}
