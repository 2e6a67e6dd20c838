#ifndef TERNARY_VLM_THIRD_PARTY_TFLITE_ABI_TFLITE_ABI_H_
#define TERNARY_VLM_THIRD_PARTY_TFLITE_ABI_TFLITE_ABI_H_

// The subset of TensorFlow Lite's C ABI (tensorflow/lite/core/c/common.h) that our custom ops and
// delegate plugin use, written from TFLite's public C API documentation because no pip wheel ships
// the headers. Layouts are those of LiteRT 2.3.0 on LP64 targets (x86-64, AArch64); the
// static_asserts pin them, and the ops check sizes they can observe at run time.
//
// Only structs the runtime hands us are declared; TfLiteContext is declared up to the last member
// we call (we never allocate one), so its size is not asserted.

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum TfLiteStatus {
  kTfLiteOk = 0,
  kTfLiteError = 1,
  kTfLiteDelegateError = 2,
  kTfLiteApplicationError = 3,
} TfLiteStatus;

typedef enum TfLiteType {
  kTfLiteNoType = 0,
  kTfLiteFloat32 = 1,
  kTfLiteInt32 = 2,
  kTfLiteUInt8 = 3,
  kTfLiteInt64 = 4,
  kTfLiteString = 5,
  kTfLiteBool = 6,
  kTfLiteInt16 = 7,
  kTfLiteComplex64 = 8,
  kTfLiteInt8 = 9,
  kTfLiteFloat16 = 10,
  kTfLiteFloat64 = 11,
} TfLiteType;

typedef enum TfLiteAllocationType {
  kTfLiteMemNone = 0,
  kTfLiteMmapRo = 1,  // constant data mapped from the model file
  kTfLiteArenaRw = 2,
  kTfLiteArenaRwPersistent = 3,
  kTfLiteDynamic = 4,
  kTfLitePersistentRo = 5,
  kTfLiteCustom = 6,
  kTfLiteVariantObject = 7,
} TfLiteAllocationType;

// A flexible array of ints; TfLiteIntArrayCreate is not exported, so we malloc these ourselves
// (the runtime releases them with free()).
typedef struct TfLiteIntArray {
  int size;
  int data[];
} TfLiteIntArray;

typedef struct TfLiteQuantizationParams {
  float scale;
  int32_t zero_point;
} TfLiteQuantizationParams;

typedef struct TfLiteQuantization {
  int type;
  void* params;
} TfLiteQuantization;

struct TfLiteDelegate;
struct TfLiteContext;

typedef struct TfLiteTensor {
  TfLiteType type;
  union {
    void* raw;
    float* f;
    uint8_t* uint8;
    int32_t* i32;
  } data;
  TfLiteIntArray* dims;
  TfLiteQuantizationParams params;
  TfLiteAllocationType allocation_type;
  size_t bytes;
  const void* allocation;
  const char* name;
  struct TfLiteDelegate* delegate;
  int buffer_handle;
  bool data_is_stale;
  bool is_variable;
  TfLiteQuantization quantization;
  void* sparsity;
  const TfLiteIntArray* dims_signature;
} TfLiteTensor;

typedef struct TfLiteNode {
  TfLiteIntArray* inputs;
  TfLiteIntArray* outputs;
  TfLiteIntArray* intermediates;
  TfLiteIntArray* temporaries;
  void* user_data;
  void* builtin_data;
  const void* custom_initial_data;
  int custom_initial_data_size;
  struct TfLiteDelegate* delegate;
  bool might_have_side_effect;
} TfLiteNode;

typedef struct TfLiteRegistration {
  void* (*init)(struct TfLiteContext* context, const char* buffer, size_t length);
  void (*free)(struct TfLiteContext* context, void* buffer);
  TfLiteStatus (*prepare)(struct TfLiteContext* context, TfLiteNode* node);
  TfLiteStatus (*invoke)(struct TfLiteContext* context, TfLiteNode* node);
  const char* (*profiling_string)(const struct TfLiteContext* context, const TfLiteNode* node);
  int32_t builtin_code;
  const char* custom_name;
  int version;
  void* registration_external;
  void* async_kernel;
  uint64_t inplace_operator;
} TfLiteRegistration;

// Index of the CUSTOM operator in TFLite's BuiltinOperator enum (schema.fbs).
enum { kTfLiteBuiltinCustom = 32 };

// Opaque here: the ops only compare these pointers.
typedef struct TfLiteExternalContext TfLiteExternalContext;

typedef struct TfLiteContext {
  size_t tensors_size;
  TfLiteStatus (*GetExecutionPlan)(struct TfLiteContext* context, TfLiteIntArray** execution_plan);
  TfLiteTensor* tensors;
  void* impl_;
  TfLiteStatus (*ResizeTensor)(struct TfLiteContext* context, TfLiteTensor* tensor,
                               TfLiteIntArray* new_size);
  void (*ReportError)(struct TfLiteContext* context, const char* format, ...);
  TfLiteStatus (*AddTensors)(struct TfLiteContext* context, int tensors_to_add,
                             int* first_new_tensor_index);
  TfLiteStatus (*GetNodeAndRegistration)(struct TfLiteContext* context, int node_index,
                                         TfLiteNode** node, TfLiteRegistration** registration);
  TfLiteStatus (*ReplaceNodeSubsetsWithDelegateKernels)(struct TfLiteContext* context,
                                                        TfLiteRegistration registration,
                                                        const TfLiteIntArray* nodes_to_replace,
                                                        struct TfLiteDelegate* delegate);
  int recommended_num_threads;
  // Interpreter-wide contexts, one array shared by all subgraphs of an interpreter.
  TfLiteExternalContext* (*GetExternalContext)(struct TfLiteContext* context, int type);
  void (*SetExternalContext)(struct TfLiteContext* context, int type,
                             TfLiteExternalContext* external_context);
} TfLiteContext;

// TfLiteExternalContextType values used here (the interpreter creates this one at construction).
enum { kTfLiteCpuBackendContext = 3 };

enum {
  kTfLiteDelegateFlagsNone = 0,
  // Lets the interpreter accept models whose custom ops only this delegate resolves.
  kTfLiteDelegateFlagsAllowDynamicTensors = 1,
};

typedef struct TfLiteDelegate {
  void* data_;
  TfLiteStatus (*Prepare)(TfLiteContext* context, struct TfLiteDelegate* delegate);
  TfLiteStatus (*CopyFromBufferHandle)(TfLiteContext* context, struct TfLiteDelegate* delegate,
                                       int buffer_handle, TfLiteTensor* tensor);
  TfLiteStatus (*CopyToBufferHandle)(TfLiteContext* context, struct TfLiteDelegate* delegate,
                                     int buffer_handle, TfLiteTensor* tensor);
  void (*FreeBufferHandle)(TfLiteContext* context, struct TfLiteDelegate* delegate, int* handle);
  int64_t flags;
  void* opaque_delegate_builder;
} TfLiteDelegate;

// What a delegate kernel's init() receives as its buffer.
typedef struct TfLiteDelegateParams {
  TfLiteDelegate* delegate;
  TfLiteIntArray* nodes_to_replace;
  TfLiteIntArray* input_tensors;
  TfLiteIntArray* output_tensors;
} TfLiteDelegateParams;

// Marks an absent optional input in TfLiteNode::inputs.
enum { kTfLiteOptionalTensor = -1 };

#ifdef __cplusplus
}  // extern "C"

#if defined(__x86_64__) || defined(__aarch64__)
static_assert(sizeof(TfLiteTensor) == 112, "TfLiteTensor layout differs from LiteRT 2.3.0");
static_assert(sizeof(TfLiteNode) == 80, "TfLiteNode layout differs from LiteRT 2.3.0");
static_assert(sizeof(TfLiteRegistration) == 88, "TfLiteRegistration layout differs from LiteRT 2.3.0");
static_assert(sizeof(TfLiteDelegate) == 56, "TfLiteDelegate layout differs from LiteRT 2.3.0");
static_assert(offsetof(TfLiteTensor, bytes) == 40, "TfLiteTensor::bytes offset");
static_assert(offsetof(TfLiteTensor, dims_signature) == 104, "TfLiteTensor::dims_signature offset");
static_assert(offsetof(TfLiteContext, recommended_num_threads) == 72,
              "TfLiteContext::recommended_num_threads offset");
static_assert(offsetof(TfLiteContext, GetExternalContext) == 80,
              "TfLiteContext::GetExternalContext offset");
#endif
#endif  // __cplusplus

#endif  // TERNARY_VLM_THIRD_PARTY_TFLITE_ABI_TFLITE_ABI_H_
