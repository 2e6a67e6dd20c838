// A TFLite external-delegate plugin whose only job is to resolve our custom ops in stock
// interpreters that cannot register custom ops from Python:
//   Interpreter(model_path=..., experimental_delegates=[load_delegate("libternary_ops.so")])
// Prepare finds every CUSTOM node named TernaryMatMul/BinaryMatMul/Int8MatMul/UnpackTernary/
// KVCacheAttention and replaces it, one node at a time (so adjacent ops are not merged), with a
// delegate kernel running the same op.

#include <cstring>
#include <vector>

#include "cc/tflite/attention_op.h"
#include "cc/tflite/int8_matmul_op.h"
#include "cc/tflite/matmul_op.h"
#include "cc/tflite/op_util.h"
#include "cc/tflite/unpack_op.h"
#include "third_party/tflite_abi/tflite_abi.h"

namespace tvlm {
namespace {

TfLiteStatus PrepareDelegate(TfLiteContext* context, TfLiteDelegate* delegate) {
  TfLiteIntArray* plan = nullptr;
  if (context->GetExecutionPlan(context, &plan) != kTfLiteOk) return kTfLiteError;
  struct Match {
    int node;
    TfLiteRegistration* replacement;
  };
  std::vector<Match> matches;  // collected first: replacing nodes changes the plan
  for (int i = 0; i < plan->size; ++i) {
    TfLiteNode* node = nullptr;
    TfLiteRegistration* registration = nullptr;
    if (context->GetNodeAndRegistration(context, plan->data[i], &node, &registration) != kTfLiteOk) {
      return kTfLiteError;
    }
    if (registration->builtin_code != kTfLiteBuiltinCustom || registration->custom_name == nullptr) {
      continue;
    }
    TfLiteRegistration* replacement = DelegatedMatMulRegistration(registration->custom_name);
    if (replacement == nullptr) replacement = DelegatedUnpackRegistration(registration->custom_name);
    if (replacement == nullptr) {
      replacement = DelegatedAttentionRegistration(registration->custom_name);
    }
    if (replacement == nullptr) {
      replacement = DelegatedInt8MatMulRegistration(registration->custom_name);
    }
    if (replacement != nullptr) {
      matches.push_back({plan->data[i], replacement});
    }
  }
  for (const Match& match : matches) {
    TfLiteNode* node = nullptr;
    TfLiteRegistration* registration = nullptr;
    if (context->GetNodeAndRegistration(context, match.node, &node, &registration) != kTfLiteOk) {
      return kTfLiteError;
    }
    // The kernel's init() reads the node's tensors from here, synchronously within the call below.
    DelegatedNode() = NodeTensors{node->inputs, node->outputs,
                                  static_cast<const char*>(node->custom_initial_data),
                                  static_cast<size_t>(node->custom_initial_data_size)};
    struct {
      int size;
      int data[1];
    } one_node = {1, {match.node}};
    const TfLiteStatus status = context->ReplaceNodeSubsetsWithDelegateKernels(
        context, *match.replacement, reinterpret_cast<const TfLiteIntArray*>(&one_node), delegate);
    DelegatedNode() = NodeTensors{};
    if (status != kTfLiteOk) return status;
  }
  return kTfLiteOk;
}

}  // namespace
}  // namespace tvlm

extern "C" {

// The external-delegate plugin interface (tensorflow/lite/delegates/external). No options.
TfLiteDelegate* tflite_plugin_create_delegate(const char* const* keys, const char* const* values,
                                              size_t num_options, void (*report_error)(const char*)) {
  (void)keys;
  (void)values;
  if (num_options != 0) {
    if (report_error) report_error("ternary_ops delegate: takes no options");
    return nullptr;
  }
  auto* delegate = new TfLiteDelegate{};
  delegate->Prepare = tvlm::PrepareDelegate;
  // Without this flag the interpreter rejects the still-unresolved custom ops before Prepare.
  delegate->flags = kTfLiteDelegateFlagsAllowDynamicTensors;
  return delegate;
}

void tflite_plugin_destroy_delegate(TfLiteDelegate* delegate) { delete delegate; }

}  // extern "C"
