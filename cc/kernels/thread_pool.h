#ifndef TERNARY_VLM_CC_KERNELS_THREAD_POOL_H_
#define TERNARY_VLM_CC_KERNELS_THREAD_POOL_H_

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tvlm {

// Persistent workers for the kernels' parallel loops. A decode step calls a matmul every ~0.1 ms,
// so workers spin briefly before sleeping and no thread is created per call. Interpreters share
// pools (SharedThreadPool): a ParallelFor that finds the pool busy runs inline on its caller
// instead of waiting, which keeps both callers busy on a machine whose cores are taken anyway.
class ThreadPool {
 public:
  explicit ThreadPool(int num_threads);  // 1 = run inline on the caller
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Splits [0, n) into at most num_threads() chunks whose sizes are multiples of `grain` (the
  // last one ends at n), runs fn(begin, end) on the workers and the caller, and waits for all.
  void ParallelFor(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn);

 private:
  void WorkerLoop(int index);
  void RunChunk(int index) const;

  const int num_threads_;
  std::vector<std::thread> workers_;
  std::mutex caller_;  // held by the one ParallelFor that owns the workers
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;                    // guarded by mu_
  std::atomic<uint64_t> generation_{0};  // bumped (under mu_) once per ParallelFor
  std::atomic<int> pending_{0};          // workers that have not finished this generation

  // The current job; written before generation_ is bumped, read by workers after they see it.
  const std::function<void(size_t, size_t)>* fn_ = nullptr;
  size_t n_ = 0, grain_ = 1, units_ = 0;
  int chunks_ = 0;
};

// fn(0, n) inline when pool is null, else pool->ParallelFor.
void ParallelFor(ThreadPool* pool, size_t n, size_t grain,
                 const std::function<void(size_t, size_t)>& fn);

}  // namespace tvlm

#endif  // TERNARY_VLM_CC_KERNELS_THREAD_POOL_H_
