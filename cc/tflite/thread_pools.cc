#include "cc/tflite/thread_pools.h"

#include <map>
#include <memory>
#include <mutex>

namespace tvlm {

ThreadPool* SharedThreadPool(int num_threads) {
  if (num_threads < 1) num_threads = 1;
  static std::mutex mutex;
  // Leaked on purpose: ops may run during static destruction of the host application.
  static auto* pools = new std::map<int, std::unique_ptr<ThreadPool>>;
  std::lock_guard<std::mutex> lock(mutex);
  auto& pool = (*pools)[num_threads];
  if (pool == nullptr) pool = std::make_unique<ThreadPool>(num_threads);
  return pool.get();
}

}  // namespace tvlm
