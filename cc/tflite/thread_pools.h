#ifndef TERNARY_VLM_CC_TFLITE_THREAD_POOLS_H_
#define TERNARY_VLM_CC_TFLITE_THREAD_POOLS_H_

#include "cc/kernels/thread_pool.h"

namespace tvlm {

// One persistent pool per thread count, shared by every op in the process (an interpreter's
// num_threads arrives as recommended_num_threads; values < 1 mean 1).
ThreadPool* SharedThreadPool(int num_threads);

}  // namespace tvlm

#endif  // TERNARY_VLM_CC_TFLITE_THREAD_POOLS_H_
