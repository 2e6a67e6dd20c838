#ifndef TERNARY_VLM_CC_TFLITE_TESTS_FAKE_INTERPRETER_H_
#define TERNARY_VLM_CC_TFLITE_TESTS_FAKE_INTERPRETER_H_

// A minimal stand-in for the TFLite interpreter (our ABI structs) that prepares and invokes nodes,
// so op tests run on the host and under qemu alike.
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
    for (size_t i = 0; i < nodes_.size(); ++i) FreeNode(static_cast<int>(i));
    for (auto& t : tensors_) std::free(t.dims);
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

  // Prepare (and on success Invoke) one node of the op, then free it; returns the first failure.
  TfLiteStatus Run(TfLiteRegistration* reg, const std::vector<int>& inputs, int output,
                   std::vector<float>* y, const std::string& options = "") {
    const int node = AddNode(reg, inputs, output, options);
    TfLiteStatus status = Prepare(node);
    if (status == kTfLiteOk) status = Invoke(node, y);
    FreeNode(node);
    return status;
  }

  // Nodes that stay alive across calls (ops whose nodes share state): init now, free on FreeNode or
  // destruction. options: the node's custom options, handed to init() as TFLite does.
  int AddNode(TfLiteRegistration* reg, const std::vector<int>& inputs, int output,
              const std::string& options = "") {
    Node n;
    n.reg = reg;
    n.node.inputs = NewIntArray(inputs);
    n.node.outputs = NewIntArray({output});
    n.node.custom_initial_data = options.empty() ? nullptr : options.data();
    n.node.custom_initial_data_size = static_cast<int>(options.size());
    n.node.user_data = reg->init(Context(), options.empty() ? nullptr : options.data(),
                                 options.size());
    nodes_.push_back(n);
    return static_cast<int>(nodes_.size()) - 1;
  }
  TfLiteStatus Prepare(int node) { return nodes_[node].reg->prepare(Context(), &nodes_[node].node); }
  // Invokes with y as the output buffer (sized to the output's shape, filled with NaN first).
  TfLiteStatus Invoke(int node, std::vector<float>* y) {
    TfLiteTensor& out = tensors_[nodes_[node].node.outputs->data[0]];
    size_t count = 1;
    for (int i = 0; i < out.dims->size; ++i) count *= out.dims->data[i];
    y->assign(count, NAN);
    out.data.f = y->data();
    out.bytes = count * sizeof(float);
    return nodes_[node].reg->invoke(Context(), &nodes_[node].node);
  }
  void FreeNode(int node) {
    Node& n = nodes_[node];
    if (n.reg == nullptr) return;
    n.reg->free(Context(), n.node.user_data);
    std::free(n.node.inputs);
    std::free(n.node.outputs);
    n.reg = nullptr;
  }

  // Without one, GetExternalContext returns nullptr for every type.
  void set_has_cpu_backend_context(bool has) { has_backend_ = has; }

  const std::string& error() const { return error_; }
  const TfLiteTensor& tensor(int i) const { return tensors_[i]; }

 private:
  struct Node {
    TfLiteRegistration* reg = nullptr;
    TfLiteNode node{};
  };

  // The context as TFLite hands it to a kernel (tensors_ may have moved since the last call).
  TfLiteContext* Context() {
    context_.tensors = tensors_.data();
    context_.tensors_size = tensors_.size();
    context_.ResizeTensor = &FakeInterpreter::Resize;
    context_.ReportError = &FakeInterpreter::Report;
    context_.GetExternalContext = &FakeInterpreter::External;
    context_.recommended_num_threads = 2;
    impl_ = this;
    return &context_;
  }
  static TfLiteExternalContext* External(TfLiteContext*, int type) {
    // Any distinct address per interpreter will do: the ops only use it as an identity.
    return impl_->has_backend_ && type == kTfLiteCpuBackendContext
               ? reinterpret_cast<TfLiteExternalContext*>(&impl_->backend_)
               : nullptr;
  }
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

  // The one running a node on this thread (one interpreter per thread, as in TFLite).
  static inline thread_local FakeInterpreter* impl_ = nullptr;
  std::vector<TfLiteTensor> tensors_;
  std::vector<Node> nodes_;
  TfLiteContext context_{};
  bool has_backend_ = true;
  char backend_ = 0;
  std::string error_;
};

}  // namespace tvlm

#endif  // TERNARY_VLM_CC_TFLITE_TESTS_FAKE_INTERPRETER_H_
