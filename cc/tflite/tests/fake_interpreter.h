#ifndef TERNARY_VLM_CC_TFLITE_TESTS_FAKE_INTERPRETER_H_
#define TERNARY_VLM_CC_TFLITE_TESTS_FAKE_INTERPRETER_H_

// A minimal stand-in for the TFLite interpreter (our ABI structs) that prepares and invokes one
// node, so op tests run on the host and under qemu alike.
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "third_party/tflite_abi/tflite_abi.h"

namespace tvlm {

inline TfLiteIntArray* NewIntArray(const std::vector<int>& v) {
  auto* a = static_cast<TfLiteIntArray*>(std::malloc(sizeof(int) * (v.size() + 1)));
  a->size = static_cast<int>(v.size());
  for (size_t i = 0; i < v.size(); ++i) a->data[i] = v[i];
  return a;
}

class FakeInterpreter {
 public:
  ~FakeInterpreter() {
    for (auto& t : tensors_) std::free(t.dims);
    std::free(node_.inputs);
    std::free(node_.outputs);
  }

  int AddTensor(TfLiteType type, const std::vector<int>& shape, void* data, size_t bytes,
                bool constant) {
    TfLiteTensor t{};
    t.type = type;
    t.dims = NewIntArray(shape);
    t.data.raw = data;
    t.bytes = bytes;
    t.allocation_type = constant ? kTfLiteMmapRo : kTfLiteArenaRw;
    tensors_.push_back(t);
    return static_cast<int>(tensors_.size()) - 1;
  }

  // Prepare (and on success Invoke) one node of the op; returns the Prepare status.
  TfLiteStatus Run(TfLiteRegistration* reg, const std::vector<int>& inputs, int output,
                   std::vector<float>* y) {
    TfLiteContext context{};
    context.tensors = tensors_.data();
    context.tensors_size = tensors_.size();
    context.ResizeTensor = &FakeInterpreter::Resize;
    context.ReportError = &FakeInterpreter::Report;
    context.recommended_num_threads = 2;
    impl_ = this;
    node_.inputs = NewIntArray(inputs);
    node_.outputs = NewIntArray({output});
    node_.user_data = reg->init(&context, nullptr, 0);
    TfLiteStatus status = reg->prepare(&context, &node_);
    if (status == kTfLiteOk) {
      TfLiteTensor& out = tensors_[output];
      size_t count = 1;
      for (int i = 0; i < out.dims->size; ++i) count *= out.dims->data[i];
      y->assign(count, NAN);
      out.data.f = y->data();
      out.bytes = count * sizeof(float);
      status = reg->invoke(&context, &node_);
    }
    reg->free(&context, node_.user_data);
    return status;
  }

  const std::string& error() const { return error_; }
  const TfLiteTensor& tensor(int i) const { return tensors_[i]; }

 private:
  static TfLiteStatus Resize(TfLiteContext* context, TfLiteTensor* tensor, TfLiteIntArray* dims) {
    std::free(tensor->dims);
    tensor->dims = dims;
    return kTfLiteOk;
  }
  static void Report(TfLiteContext*, const char* format, ...) {
    char buffer[1024];
    va_list args;
    va_start(args, format);
    std::vsnprintf(buffer, sizeof(buffer), format, args);
    va_end(args);
    impl_->error_ = buffer;
  }

  static inline FakeInterpreter* impl_ = nullptr;  // the one running a node (tests are serial)
  std::vector<TfLiteTensor> tensors_;
  TfLiteNode node_{};
  std::string error_;
};

}  // namespace tvlm

#endif  // TERNARY_VLM_CC_TFLITE_TESTS_FAKE_INTERPRETER_H_
