#include "cc/kernels/thread_pool.h"

#include <algorithm>
#include <chrono>

namespace tvlm {
namespace {

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
  asm volatile("yield");
#endif
}

// Between two of our ops a decode step runs a few small XNNPACK ops (norms, residual adds), so a
// worker that spins ~100 us is still awake for the next matmul of the layer. Measured on the 2-core
// Zen 5 VM, SmolLM2 ternary decode at 2 threads, 4 interleaved runs each: spinning 20 us 1.22x one
// thread, 100 us 1.25-1.30x, 300 us 1.12x, 1 ms 1.10x (XNNPACK's own worker then waits for the core).
// Before the caller could run a late worker's pieces (ParallelFor), 300 us made decoding 50x slower.
constexpr auto kSpinTime = std::chrono::microseconds(100);

constexpr uint64_t Pack(uint32_t front, uint32_t back) { return uint64_t{front} << 32 | back; }
constexpr uint32_t Front(uint64_t bounds) { return static_cast<uint32_t>(bounds >> 32); }
constexpr uint32_t Back(uint64_t bounds) { return static_cast<uint32_t>(bounds); }

}  // namespace

ThreadPool::ThreadPool(int num_threads)
    : num_threads_(std::max(1, num_threads)), ranges_(new Range[num_threads_]) {
  for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

bool ThreadPool::Take(Range& range, bool from_back, uint32_t* begin, uint32_t* end) const {
  uint64_t bounds = range.bounds.load(std::memory_order_acquire);
  for (;;) {
    const uint32_t front = Front(bounds), back = Back(bounds);
    if (front >= back) return false;
    // Read after the bounds (acquire): the step of the job they belong to.
    const uint32_t step = std::min(step_.load(std::memory_order_relaxed), back - front);
    *begin = from_back ? back - step : front;
    *end = from_back ? back : front + step;
    const uint64_t rest = from_back ? Pack(front, *begin) : Pack(*end, back);
    if (range.bounds.compare_exchange_weak(bounds, rest, std::memory_order_acq_rel,
                                           std::memory_order_acquire)) {
      return true;
    }
  }
}

void ThreadPool::RunPieces(int index) {
  uint32_t begin, end;
  auto run = [&] {
    (*fn_)(size_t{begin} * grain_, std::min(n_, size_t{end} * grain_));
    remaining_.fetch_sub(end - begin, std::memory_order_acq_rel);
  };
  while (Take(ranges_[index], false, &begin, &end)) run();
  for (int i = 1; i < num_threads_; ++i) {
    Range& other = ranges_[(index + i) % num_threads_];
    while (Take(other, true, &begin, &end)) run();
  }
}

void ThreadPool::WorkerLoop(int index) {
  uint64_t seen = 0;
  for (;;) {
    const auto spin_until = std::chrono::steady_clock::now() + kSpinTime;
    uint64_t g;
    for (int i = 0; (g = generation_.load(std::memory_order_acquire)) == seen; ++i) {
      if ((i & 63) == 63 && std::chrono::steady_clock::now() > spin_until) {
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      } else {
        CpuRelax();
      }
    }
    seen = g;
    if (stop_.load(std::memory_order_relaxed)) return;
    RunPieces(index);
  }
}

void ThreadPool::ParallelFor(size_t n, size_t grain,
                             const std::function<void(size_t, size_t)>& fn) {
  if (n == 0) return;
  grain = std::max<size_t>(1, grain);
  const size_t units = (n + grain - 1) / grain;
  std::unique_lock<std::mutex> owner(caller_, std::defer_lock);
  // Ranges count units in 32 bits: a loop of 2^32 grains or more runs inline.
  if (num_threads_ == 1 || units == 1 || units > UINT32_MAX || !owner.try_lock()) {
    fn(0, n);
    return;
  }
  // Every piece of the previous job has finished (remaining_ reached 0), so nothing reads these.
  fn_ = &fn;
  n_ = n;
  grain_ = grain;
  const size_t per_range = (units + num_threads_ - 1) / num_threads_;
  step_.store(static_cast<uint32_t>(std::max<size_t>(1, (per_range + kPiecesPerRange - 1) / kPiecesPerRange)),
              std::memory_order_relaxed);
  remaining_.store(units, std::memory_order_relaxed);
  for (int i = 0; i < num_threads_; ++i) {
    const size_t front = std::min(units, units * i / num_threads_);
    const size_t back = std::min(units, units * (i + 1) / num_threads_);
    ranges_[i].bounds.store(Pack(static_cast<uint32_t>(front), static_cast<uint32_t>(back)),
                            std::memory_order_release);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  RunPieces(0);
  while (remaining_.load(std::memory_order_acquire) != 0) CpuRelax();
}

void ParallelFor(ThreadPool* pool, size_t n, size_t grain,
                 const std::function<void(size_t, size_t)>& fn) {
  if (pool == nullptr) {
    if (n > 0) fn(0, n);
  } else {
    pool->ParallelFor(n, grain, fn);
  }
}

}  // namespace tvlm
