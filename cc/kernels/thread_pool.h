#ifndef TERNARY_VLM_CC_KERNELS_THREAD_POOL_H_
#define TERNARY_VLM_CC_KERNELS_THREAD_POOL_H_

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
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

  // Runs fn(begin, end) over pieces that cover [0, n) once, each a run of whole grains (the last
  // ends at n), and waits for all. [0, n) is cut into num_threads() contiguous ranges, one per
  // thread (the caller takes the first); a thread runs its own range's pieces front to back, then
  // takes pieces from the back of the others' ranges. So each thread streams contiguous rows, and a
  // worker that is late (asleep, or its core taken by another pool's thread) costs the caller only
  // the pieces it already started: the caller runs the rest itself, never slower than one thread
  // by more than the wake-up call.
  void ParallelFor(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn);

  // Pieces per thread's range: the granularity of taking work from a late thread.
  static constexpr uint32_t kPiecesPerRange = 4;

 private:
  // One thread's range of grain units: [front, back) packed as front << 32 | back. The owner takes
  // pieces from the front, the others from the back, each with one compare-and-swap.
  struct alignas(64) Range {
    std::atomic<uint64_t> bounds{0};
  };

  void WorkerLoop(int index);
  // Runs pieces of range `index`, then of the others, until every range is empty.
  void RunPieces(int index);
  // Takes the next piece [begin, end) from the front or the back of `range`; false when it is empty.
  bool Take(Range& range, bool from_back, uint32_t* begin, uint32_t* end) const;

  const int num_threads_;
  std::unique_ptr<Range[]> ranges_;
  std::vector<std::thread> workers_;
  std::mutex caller_;  // held by the one ParallelFor that owns the workers
  std::mutex mu_;
  std::condition_variable wake_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> generation_{0};  // bumped (under mu_) once per ParallelFor
  std::atomic<size_t> remaining_{0};     // grain units of this job whose pieces have not finished
  // Piece size of the current job, in grain units; stored before the ranges (release).
  std::atomic<uint32_t> step_{1};

  // The current job, written before its ranges are stored (release); a thread reads it only after
  // taking a piece (acquire), and the job outlives every piece taken.
  const std::function<void(size_t, size_t)>* fn_ = nullptr;
  size_t n_ = 0, grain_ = 1;
};

// fn(0, n) inline when pool is null, else pool->ParallelFor.
void ParallelFor(ThreadPool* pool, size_t n, size_t grain,
                 const std::function<void(size_t, size_t)>& fn);

}  // namespace tvlm

#endif  // TERNARY_VLM_CC_KERNELS_THREAD_POOL_H_
