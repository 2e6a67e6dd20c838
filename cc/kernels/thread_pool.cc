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

// Short: inside an interpreter other ops run between two matmuls on XNNPACK's own threads, and
// workers still spinning then take their cores (300 us made 2-thread decoding 50x slower).
constexpr auto kSpinTime = std::chrono::microseconds(20);

}  // namespace

ThreadPool::ThreadPool(int num_threads) : num_threads_(std::max(1, num_threads)) {
  for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::RunChunk(int index) const {
  if (index >= chunks_) return;
  // Chunk i gets grain units [i * units / chunks, (i + 1) * units / chunks): sizes differ by <= 1.
  const size_t u0 = units_ * index / chunks_, u1 = units_ * (index + 1) / chunks_;
  const size_t begin = u0 * grain_, end = std::min(n_, u1 * grain_);
  if (begin < end) (*fn_)(begin, end);
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
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
    }
    RunChunk(index);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::ParallelFor(size_t n, size_t grain,
                             const std::function<void(size_t, size_t)>& fn) {
  if (n == 0) return;
  grain = std::max<size_t>(1, grain);
  const size_t units = (n + grain - 1) / grain;
  std::unique_lock<std::mutex> owner(caller_, std::defer_lock);
  if (num_threads_ == 1 || units == 1 || !owner.try_lock()) {
    fn(0, n);
    return;
  }
  fn_ = &fn;
  n_ = n;
  grain_ = grain;
  units_ = units;
  chunks_ = static_cast<int>(std::min<size_t>(units, num_threads_));
  pending_.store(num_threads_ - 1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mu_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  RunChunk(0);
  while (pending_.load(std::memory_order_acquire) != 0) CpuRelax();
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
