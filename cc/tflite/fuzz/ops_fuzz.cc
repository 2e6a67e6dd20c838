// Fuzz target for the custom ops through their TFLite entry points (init, Prepare, Invoke, free) on
// the fake interpreter: the input bytes choose an op, the tensors' types, shapes and values, the
// custom options, missing or out-of-range tensor indices, and the inputs' data. Whatever the bytes,
// an op must return an error status with a message or compute; it must never crash, read or write
// out of bounds, or allocate without limit (ASan and UBSan report those).
//
// As TFLite guarantees, each tensor's buffer holds exactly product(dims) elements of its type; what
// varies is whether those shapes and values make sense to the op (a packed buffer of the wrong size
// for the scale and the input is a shape that does not fit, as a converter bug would write it).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "cc/tflite/attention_op.h"
#include "cc/tflite/int8_matmul_op.h"
#include "cc/tflite/matmul_op.h"
#include "cc/tflite/tests/fake_interpreter.h"
#include "cc/tflite/unpack_op.h"
#include "third_party/tflite_abi/tflite_abi.h"

namespace tvlm {
namespace {

// Reads the fuzz input front to back; past its end every read is 0.
class Bytes {
 public:
  Bytes(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint8_t U8() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint32_t U32() { return U8() | U8() << 8 | U8() << 16 | uint32_t{U8()} << 24; }
  int Below(int n) { return U8() % n; }
  bool Rare() { return U8() < 24; }  // ~9 %: a deliberate fault
  std::string Rest() {
    std::string s(reinterpret_cast<const char*>(data_ + pos_), size_ - pos_);
    pos_ = size_;
    return s;
  }

 private:
  const uint8_t* data_;
  size_t size_, pos_ = 0;
};

// What the inputs reached, printed at exit: a fuzzer whose inputs all fail the first check in
// Prepare would test little.
struct Reach {
  long nodes = 0, prepared = 0, invoked = 0, invoke_errors = 0;
  ~Reach() {
    std::fprintf(stderr, "ops_fuzz: %ld nodes, %ld passed Prepare, %ld invocations (%ld errors)\n",
                 nodes, prepared, invoked, invoke_errors);
  }
} reach;

class Case {
 public:
  explicit Case(Bytes* in) : in_(in), rng_(in->U32()) {}

  // A tensor of `type` (sometimes another type) and `shape` (sometimes another rank or a changed
  // dimension), filled with data from the seeded generator; `values` overrides int32 contents.
  int Tensor(TfLiteType type, std::vector<int> shape, bool constant,
             const std::vector<int>& values = {}) {
    if (in_->Rare()) type = kTypes[in_->Below(sizeof(kTypes) / sizeof(kTypes[0]))];
    if (in_->Rare()) shape.push_back(1 + in_->Below(3));
    if (in_->Rare() && !shape.empty()) shape.pop_back();
    if (in_->Rare() && !shape.empty()) shape[in_->Below(shape.size())] += in_->Below(5) - 2;
    size_t count = 1;
    for (int& d : shape) {
      d = std::max(d, 0);
      count *= d;
    }
    std::vector<uint8_t>& b = buffers_.emplace_back(count * ElementBytes(type));
    for (auto& byte : b) byte = static_cast<uint8_t>(rng_());
    if (type == kTfLiteFloat32) {  // finite values of either sign, mostly small
      std::normal_distribution<float> normal;
      for (size_t i = 0; i < count; ++i) {
        const float v = normal(rng_);
        std::memcpy(b.data() + 4 * i, &v, 4);
      }
    }
    if (type == kTfLiteInt32) {
      for (size_t i = 0; i < count && i < values.size(); ++i)
        std::memcpy(b.data() + 4 * i, &values[i], 4);
    }
    return interp_.AddTensor(type, shape, b.empty() ? nullptr : b.data(), b.size(),
                             in_->Rare() ? !constant : constant);
  }

  // The buffer of the tensor made last (to change its contents between invocations).
  std::vector<uint8_t>& LastBuffer() { return buffers_.back(); }

  // The node's input list, with an input sometimes dropped, added, or pointing nowhere.
  std::vector<int> Inputs(std::vector<int> inputs) {
    if (in_->Rare()) inputs.pop_back();
    if (in_->Rare()) inputs.push_back(-1);
    if (in_->Rare()) inputs[in_->Below(inputs.size())] = in_->Rare() ? -1 : 1000;
    return inputs;
  }

  std::string Options(const char* usual) {
    switch (in_->Below(8)) {
      case 0:
        return "";
      case 1:
        return "activations=float32";
      case 2:
        return "activations=int8";
      case 3:
        return in_->Rest();
      default:
        return usual;
    }
  }

  int Dim(int max) { return 1 + in_->Below(max); }
  int Int() { return in_->Rare() ? static_cast<int>(in_->U32()) : in_->Below(40) - 4; }

  // Prepares and invokes `reg` on one node, `steps` times (the KV cache keeps state across them);
  // before_step(s) may change input data between invocations, as TFLite's caller does.
  void Run(TfLiteRegistration* reg, const std::vector<int>& inputs, const std::string& options,
           int steps, const std::function<void(int)>& before_step = nullptr) {
    const int output = interp_.AddTensor(kTfLiteFloat32, {1}, nullptr, 0, false);
    const int node = interp_.AddNode(reg, inputs, output, options);
    ++reach.nodes;
    if (interp_.Prepare(node) == kTfLiteOk) {
      ++reach.prepared;
      std::vector<float> y;
      for (int s = 0; s < steps; ++s) {
        if (before_step) before_step(s);
        ++reach.invoked;
        if (interp_.Invoke(node, &y) != kTfLiteOk) {
          ++reach.invoke_errors;
          break;
        }
      }
    }
    interp_.FreeNode(node);
  }

  Bytes* in() { return in_; }

 private:
  static size_t ElementBytes(TfLiteType type) {
    switch (type) {
      case kTfLiteFloat32:
      case kTfLiteInt32:
        return 4;
      case kTfLiteInt64:
        return 8;
      case kTfLiteFloat16:
        return 2;
      default:
        return 1;
    }
  }
  static constexpr TfLiteType kTypes[] = {kTfLiteFloat32, kTfLiteUInt8, kTfLiteInt8,
                                          kTfLiteInt32,   kTfLiteInt64, kTfLiteFloat16};

  Bytes* in_;
  std::mt19937 rng_;
  std::deque<std::vector<uint8_t>> buffers_;  // a deque: tensors' data pointers stay put
  FakeInterpreter interp_;
};

int RowBytes(bool ternary, int k) { return ternary ? (k + 3) / 4 : (k + 7) / 8; }

void MatMul(Case* c, bool ternary) {
  const int m = c->Dim(6), n = c->Dim(40), k = c->Dim(300);
  const int rows = c->in()->Rare() ? c->Dim(40) : n;  // packed rows vs scale length
  const int row_bytes = RowBytes(ternary, c->in()->Rare() ? c->Dim(300) : k);
  const uint8_t shape = c->in()->U8();
  const bool glu = shape & 2;  // x is the gate, input 4 the up projection (sometimes of another shape)
  const bool gate_up = glu && (shape & 16);  // no input 4: x = gate | up, 2K wide (sometimes not)
  const bool norm = !glu && (shape & 8);  // inputs 5 and 6: gamma [K] (or not) and epsilon (or not one value)
  std::vector<int> inputs = {
      c->Tensor(kTfLiteFloat32, {m, gate_up ? (c->in()->Rare() ? c->Dim(600) : 2 * k) : k}, false),
      c->Tensor(kTfLiteUInt8, {rows, row_bytes}, true),
      c->Tensor(kTfLiteFloat32, {n}, true),
  };
  if (shape & 1) {
    inputs.push_back(c->Tensor(kTfLiteFloat32, {n}, true));
  } else if (glu || norm) {
    inputs.push_back(-1);
  }
  if (glu && !gate_up) inputs.push_back(c->Tensor(kTfLiteFloat32, {m, c->in()->Rare() ? c->Dim(300) : k}, false));
  if (norm) {
    inputs.push_back(-1);
    inputs.push_back(c->Tensor(kTfLiteFloat32, {c->in()->Rare() ? c->Dim(300) : k}, true));
    inputs.push_back(c->Tensor(kTfLiteFloat32, {c->in()->Rare() ? c->Dim(3) : 1}, true));
  }
  const char* transform = glu ? "glu=silu" : norm ? "norm=rms" : nullptr;
  const std::string options = transform == nullptr ? "" : std::string(shape & 4 ? "activations=int8," : "") + transform;
  c->Run(ternary ? TernaryMatMulRegistration() : BinaryMatMulRegistration(), c->Inputs(inputs),
         c->Options(options.c_str()), 2);
}

void Unpack(Case* c) {
  const int n = c->Dim(40), k = c->Dim(300);
  const int rows = c->in()->Rare() ? c->Dim(40) : n;
  std::vector<int> inputs = {
      c->Tensor(kTfLiteUInt8, {rows, RowBytes(true, c->in()->Rare() ? c->Dim(300) : k)}, true),
      c->Tensor(kTfLiteFloat32, {n}, true),
      c->Tensor(kTfLiteInt32, {2}, true,
                {c->in()->Rare() ? c->Int() : n, c->in()->Rare() ? c->Int() : k}),
  };
  c->Run(UnpackTernaryRegistration(), c->Inputs(inputs), c->Options(""), 1);
}

void Int8MatMul(Case* c) {
  const int m = c->Dim(6), n = c->Dim(40), k = c->Dim(300);
  std::vector<int> inputs = {
      c->Tensor(kTfLiteFloat32, {m, k}, false),
      c->Tensor(kTfLiteInt8, {c->in()->Rare() ? c->Dim(40) : n, c->in()->Rare() ? c->Dim(300) : k}, true),
      c->Tensor(kTfLiteFloat32, {n}, true),
  };
  c->Run(Int8MatMulRegistration(), c->Inputs(inputs), c->Options(""), 2);
}

void Attention(Case* c) {
  const int heads = c->Dim(4), dim = c->Dim(20), t = c->Dim(6), groups = c->Dim(3);
  const int max_len = c->in()->Rare() ? c->Int() : c->Dim(40);
  // Head-major q [H, G·T, D], keys [H, D, T], values [H, T, D], or token-major q [1, T, H·G, D], keys and values
  // [1, T, H, D] (sometimes with one dim off).
  const bool token_major = c->in()->U8() & 1;
  const int odd = c->in()->Rare() ? c->Dim(4) : 0;
  std::vector<int> inputs;
  if (token_major) {
    inputs = {c->Tensor(kTfLiteFloat32, {1, t, heads * groups + odd, dim}, false),
              c->Tensor(kTfLiteFloat32, {1, t, heads, dim}, false),
              c->Tensor(kTfLiteFloat32, {1, t + odd, heads, dim}, false)};
  } else {
    inputs = {c->Tensor(kTfLiteFloat32, {heads, groups * t, dim}, false),
              c->Tensor(kTfLiteFloat32, {heads, dim, t}, false),
              c->Tensor(kTfLiteFloat32, {heads, t, dim + odd}, false)};
  }
  inputs.push_back(c->Tensor(kTfLiteInt32, {3}, false, {0, 0, 0}));
  std::vector<uint8_t>& index = c->LastBuffer();
  inputs.push_back(c->Tensor(kTfLiteFloat32, {}, true));
  inputs.push_back(c->Tensor(kTfLiteInt32, {2}, true, {c->Int(), max_len}));
  // Decode steps at positions from the input: in order, repeated, backwards, negative or far out.
  c->Run(KVCacheAttentionRegistration(), c->Inputs(inputs), c->Options(""), 1 + c->in()->Below(4),
         [&](int) {
           const int start = c->Int();
           if (index.size() >= 12) std::memcpy(index.data() + 8, &start, 4);
         });
}

}  // namespace
}  // namespace tvlm

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tvlm::Bytes in(data, size);
  tvlm::Case c(&in);
  switch (in.Below(5)) {
    case 0:
      tvlm::MatMul(&c, true);
      break;
    case 1:
      tvlm::MatMul(&c, false);
      break;
    case 2:
      tvlm::Unpack(&c);
      break;
    case 3:
      tvlm::Int8MatMul(&c);
      break;
    default:
      tvlm::Attention(&c);
      break;
  }
  return 0;
}
