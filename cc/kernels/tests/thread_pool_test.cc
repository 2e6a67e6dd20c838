#include "cc/kernels/thread_pool.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace tvlm {
namespace {

TEST(ThreadPoolTest, CoversEveryIndexOnceInGrainMultiples) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.num_threads(), threads);
    for (size_t n : {1, 2, 7, 63, 64, 65, 1001}) {
      for (size_t grain : {1, 3, 4, 16, 2000}) {
        std::vector<std::atomic<int>> hits(n);
        std::atomic<int> calls{0};
        pool.ParallelFor(n, grain, [&](size_t begin, size_t end) {
          calls.fetch_add(1);
          EXPECT_LT(begin, end);
          EXPECT_EQ(begin % grain, 0u);
          EXPECT_TRUE(end == n || end % grain == 0);
          for (size_t i = begin; i < end; ++i) hits[i].fetch_add(1);
        });
        EXPECT_LE(calls.load(), threads * static_cast<int>(ThreadPool::kPiecesPerRange));
        for (size_t i = 0; i < n; ++i) {
          ASSERT_EQ(hits[i].load(), 1) << "threads=" << threads << " n=" << n << " i=" << i;
        }
      }
    }
  }
}

TEST(ThreadPoolTest, ReusesWorkersAcrossManyCalls) {
  ThreadPool pool(2);
  std::atomic<size_t> total{0};
  for (int call = 0; call < 10000; ++call) {
    pool.ParallelFor(10, 1, [&](size_t begin, size_t end) { total.fetch_add(end - begin); });
  }
  EXPECT_EQ(total.load(), 100000u);
}

// Two interpreters share a pool (SharedThreadPool): two callers at once must each cover their own
// range exactly once (one on the workers, the other inline).
TEST(ThreadPoolTest, TwoCallersAtOnceEachCoverTheirRange) {
  ThreadPool pool(2);
  std::atomic<size_t> totals[2] = {{0}, {0}};
  auto caller = [&](int who) {
    for (int call = 0; call < 2000; ++call) {
      pool.ParallelFor(100 + who, 1,
                       [&](size_t begin, size_t end) { totals[who].fetch_add(end - begin); });
    }
  };
  std::thread a(caller, 0), b(caller, 1);
  a.join();
  b.join();
  EXPECT_EQ(totals[0].load(), 2000u * 100);
  EXPECT_EQ(totals[1].load(), 2000u * 101);
}

// A worker that is late does not hold the caller back: the caller runs the pieces of the worker's
// range that the worker has not started. Here the worker's first piece cannot finish until the caller
// has run a piece of the worker's range (n = 8 on 2 threads: the worker's range is [4, 8), one unit a
// piece), so a pool that left the worker's range to the worker would wait out the 10 s below.
TEST(ThreadPoolTest, CallerRunsTheLateWorkersPieces) {
  ThreadPool pool(2);
  const std::thread::id caller = std::this_thread::get_id();
  std::mutex mu;
  std::condition_variable cv;
  bool caller_took_worker_range = false, worker_gave_up = false;
  pool.ParallelFor(8, 1, [&](size_t begin, size_t end) {
    if (begin < 4) return;
    std::unique_lock<std::mutex> lock(mu);
    if (std::this_thread::get_id() == caller) {
      caller_took_worker_range = true;
      cv.notify_all();
    } else if (!caller_took_worker_range) {
      worker_gave_up = !cv.wait_for(lock, std::chrono::seconds(10), [&] { return caller_took_worker_range; });
    }
  });
  EXPECT_TRUE(caller_took_worker_range);
  EXPECT_FALSE(worker_gave_up);
}

TEST(ThreadPoolTest, NullPoolRunsInline) {
  size_t seen = 0;
  ParallelFor(nullptr, 9, 4, [&](size_t begin, size_t end) { seen += end - begin; });
  EXPECT_EQ(seen, 9u);
}

}  // namespace
}  // namespace tvlm
