// The TFLite glue on a minimal stand-in for the interpreter (our ABI structs), so it runs on the
// host and under qemu-aarch64 alike: valid nodes compute the naive result, malformed ones fail in
// Prepare with a message naming the problem.
#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "cc/kernels/packing.h"
#include "cc/tflite/matmul_op.h"
#include "cc/tflite/tests/fake_interpreter.h"
#include "cc/kernels/tests/int8_rows.h"
#include "gtest/gtest.h"
#include "third_party/tflite_abi/tflite_abi.h"

namespace tvlm {
namespace {

struct Layer {
  size_t n, k;
  std::vector<int8_t> w;
  std::vector<uint8_t> packed;
  std::vector<float> scale, bias;
};

Layer RandomLayer(WeightFormat format, size_t n, size_t k, std::mt19937& rng) {
  Layer l{n, k};
  std::uniform_int_distribution<int> pick(0, 2);
  std::uniform_real_distribution<float> uniform(0.5f, 1.5f);
  for (size_t i = 0; i < n * k; ++i) {
    const int v = pick(rng) - 1;
    l.w.push_back(static_cast<int8_t>(format == WeightFormat::kTernary2 ? v : (v >= 0 ? 1 : -1)));
  }
  l.packed.resize(n * RowBytes(format, k));
  EXPECT_TRUE(Pack(format, l.w.data(), n, k, l.packed.data()).ok());
  for (size_t i = 0; i < n; ++i) {
    l.scale.push_back(uniform(rng));
    l.bias.push_back(uniform(rng) - 1.0f);
  }
  return l;
}

TEST(MatMulOpTest, ComputesNaiveResultForBothFormats) {
  std::mt19937 rng(7);
  for (WeightFormat format : {WeightFormat::kTernary2, WeightFormat::kBinary1}) {
    for (size_t m : {1, 3, 17}) {
      Layer l = RandomLayer(format, 37, 101, rng);
      std::vector<float> x(m * l.k);
      std::normal_distribution<float> normal;
      for (auto& v : x) v = normal(rng);
      FakeInterpreter interp;
      const int xi = interp.AddTensor(kTfLiteFloat32, {static_cast<int>(m), 101}, x.data(),
                                      x.size() * 4, false);
      const int pi = interp.AddTensor(kTfLiteUInt8, {37, static_cast<int>(RowBytes(format, 101))},
                                      l.packed.data(), l.packed.size(), true);
      const int si = interp.AddTensor(kTfLiteFloat32, {37}, l.scale.data(), 37 * 4, true);
      const int bi = interp.AddTensor(kTfLiteFloat32, {37}, l.bias.data(), 37 * 4, true);
      const int yi = interp.AddTensor(kTfLiteFloat32, {1}, nullptr, 0, false);
      TfLiteRegistration* reg = format == WeightFormat::kTernary2 ? TernaryMatMulRegistration()
                                                                  : BinaryMatMulRegistration();
      std::vector<float> y;
      ASSERT_EQ(interp.Run(reg, {xi, pi, si, bi}, yi, &y), kTfLiteOk) << interp.error();
      ASSERT_EQ(interp.tensor(yi).dims->size, 2);
      EXPECT_EQ(interp.tensor(yi).dims->data[1], 37);
      for (size_t r = 0; r < m; ++r) {
        for (size_t o = 0; o < l.n; ++o) {
          double acc = 0;
          for (size_t c = 0; c < l.k; ++c) acc += double(x[r * l.k + c]) * l.w[o * l.k + c];
          const double want = acc * l.scale[o] + l.bias[o];
          EXPECT_NEAR(y[r * l.n + o], want, 1e-4 * (1 + std::fabs(want)));
        }
      }
    }
  }
}

// "activations=int8": each row of x is quantized to int8 with a zero point (a8/layout.h, computed here by
// int8_rows.h) and multiplied exactly; compared with that computed here in double.
TEST(MatMulOpTest, Int8ActivationsOptionQuantizesEachRow) {
  std::mt19937 rng(11);
  for (WeightFormat format : {WeightFormat::kTernary2, WeightFormat::kBinary1}) {
    const size_t m = 5, n = 37, k = 101;
    Layer l = RandomLayer(format, n, k, rng);
    std::vector<float> x(m * k);
    std::normal_distribution<float> normal;
    for (auto& v : x) v = normal(rng);
    FakeInterpreter interp;
    const int xi = interp.AddTensor(kTfLiteFloat32, {static_cast<int>(m), static_cast<int>(k)},
                                    x.data(), x.size() * 4, false);
    const int pi = interp.AddTensor(kTfLiteUInt8, {37, static_cast<int>(RowBytes(format, k))},
                                    l.packed.data(), l.packed.size(), true);
    const int si = interp.AddTensor(kTfLiteFloat32, {37}, l.scale.data(), 37 * 4, true);
    const int yi = interp.AddTensor(kTfLiteFloat32, {1}, nullptr, 0, false);
    TfLiteRegistration* reg = format == WeightFormat::kTernary2 ? TernaryMatMulRegistration()
                                                                : BinaryMatMulRegistration();
    std::vector<float> y, y_float;
    ASSERT_EQ(interp.Run(reg, {xi, pi, si}, yi, &y, "activations=int8"), kTfLiteOk)
        << interp.error();
    ASSERT_EQ(interp.Run(reg, {xi, pi, si}, yi, &y_float, "activations=float32"), kTfLiteOk);
    double max_quantization_error = 0.0;
    for (size_t r = 0; r < m; ++r) {
      const testing_util::Int8Row row = testing_util::QuantizeRow(x.data() + r * k, k);
      for (size_t o = 0; o < n; ++o) {
        double acc = 0.0;
        for (size_t c = 0; c < k; ++c) acc += (row.q[c] - double{row.z}) * l.w[o * k + c];
        const double want = acc * row.s * l.scale[o];
        EXPECT_NEAR(y[r * n + o], want, 1e-5 * (1 + std::fabs(want)));
        max_quantization_error =
            std::max(max_quantization_error, std::fabs(double(y[r * n + o]) - y_float[r * n + o]));
      }
    }
    // Quantization moves the result (a per-row step of (max - min)/253 over 101 inputs), but not far.
    EXPECT_GT(max_quantization_error, 0.0);
    EXPECT_LT(max_quantization_error, 0.5);
  }
}

TEST(MatMulOpTest, RejectsUnknownOptions) {
  std::vector<uint8_t> packed(4 * RowBytes(WeightFormat::kBinary1, 8), 0x55);
  std::vector<float> x(8), scale(4, 1.0f);
  for (const char* options : {"activations=int4", "int8", "activations=int8;x=1", "format=ternary5"}) {
    FakeInterpreter interp;
    const int xi = interp.AddTensor(kTfLiteFloat32, {1, 8}, x.data(), 32, false);
    const int pi = interp.AddTensor(kTfLiteUInt8, {4, 1}, packed.data(), packed.size(), true);
    const int si = interp.AddTensor(kTfLiteFloat32, {4}, scale.data(), 16, true);
    const int yi = interp.AddTensor(kTfLiteFloat32, {1}, nullptr, 0, false);
    std::vector<float> y;
    EXPECT_EQ(interp.Run(BinaryMatMulRegistration(), {xi, pi, si}, yi, &y, options), kTfLiteError);
    EXPECT_EQ(interp.error(), std::string("BinaryMatMul: unknown custom option \"") + options +
                                  "\" (expected activations=float32 or activations=int8, glu=silu, norm=rms)");
  }
  FakeInterpreter interp;
  const int xi = interp.AddTensor(kTfLiteFloat32, {1, 8}, x.data(), 32, false);
  const int pi = interp.AddTensor(kTfLiteUInt8, {4, 2}, packed.data(), packed.size(), true);
  const int si = interp.AddTensor(kTfLiteFloat32, {4}, scale.data(), 16, true);
  const int yi = interp.AddTensor(kTfLiteFloat32, {1}, nullptr, 0, false);
  std::vector<float> y;
  EXPECT_EQ(interp.Run(TernaryMatMulRegistration(), {xi, pi, si}, yi, &y, "format=ternary4"), kTfLiteError);
  EXPECT_EQ(interp.error(), "TernaryMatMul: unknown custom option \"format=ternary4\" (expected "
                            "activations=float32 or activations=int8, glu=silu, norm=rms, format=ternary2 or format=ternary5)");
  EXPECT_EQ(interp.Run(TernaryMatMulRegistration(), {xi, pi, si}, yi, &y, "activations=int8,activations=int8"),
            kTfLiteError);
  EXPECT_EQ(interp.error(), "TernaryMatMul: activations given twice in custom options "
                            "\"activations=int8,activations=int8\"");
}

// "glu=silu": x is the gate and input 4 the up projection; the op multiplies silu(x) · up (computed here in
// double) by the weights, with a bias or without (-1), float or int8 activations. A wrong up is refused.
TEST(MatMulOpTest, GluOptionMultipliesSiluOfTheGateByUp) {
  std::mt19937 rng(13);
  const size_t m = 3, n = 37, k = 101;
  Layer l = RandomLayer(WeightFormat::kTernary2, n, k, rng);
  std::vector<float> gate(m * k), up(m * k);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (auto& v : gate) v = normal(rng);
  for (auto& v : up) v = normal(rng);
  for (bool with_bias : {true, false}) {
    for (const char* activations : {"activations=float32", "activations=int8"}) {
      FakeInterpreter interp;
      const int gi = interp.AddTensor(kTfLiteFloat32, {1, int(m), int(k)}, gate.data(), gate.size() * 4, false);
      const int ui = interp.AddTensor(kTfLiteFloat32, {1, int(m), int(k)}, up.data(), up.size() * 4, false);
      const int pi = interp.AddTensor(kTfLiteUInt8, {int(n), int(RowBytes(WeightFormat::kTernary2, k))},
                                      l.packed.data(), l.packed.size(), true);
      const int si = interp.AddTensor(kTfLiteFloat32, {int(n)}, l.scale.data(), n * 4, true);
      const int bi = interp.AddTensor(kTfLiteFloat32, {int(n)}, l.bias.data(), n * 4, true);
      const int yi = interp.AddTensor(kTfLiteFloat32, {1}, nullptr, 0, false);
      std::vector<float> y;
      const std::string options = std::string(activations) + ",glu=silu";
      ASSERT_EQ(interp.Run(TernaryMatMulRegistration(), {gi, pi, si, with_bias ? bi : -1, ui}, yi, &y,
                           options.c_str()),
                kTfLiteOk) << interp.error();
      ASSERT_EQ(interp.tensor(yi).dims->size, 3);
      const bool int8 = std::string(activations) == "activations=int8";
      for (size_t r = 0; r < m; ++r) {
        std::vector<double> h(k);
        double amax = 0;
        for (size_t c = 0; c < k; ++c) {
          const double g = gate[r * k + c];
          h[c] = g / (1 + std::exp(-g)) * up[r * k + c];
          amax = std::max(amax, std::fabs(h[c]));
        }
        for (size_t o = 0; o < n; ++o) {
          double acc = 0, magnitude = 0;
          for (size_t c = 0; c < k; ++c) {
            acc += h[c] * l.w[o * k + c];
            magnitude += std::fabs(h[c]);
          }
          const double want = acc * l.scale[o] + (with_bias ? l.bias[o] : 0.0);
          // Float: silu · up within 2^-20 relative (glu.h) plus float sums. Int8: each input moves by at most
          // half a step ((max - min) / 506 <= amax / 253, a8/layout.h) when rounded.
          const double bound = (int8 ? k * amax / 253 : 1e-5 * magnitude) * l.scale[o] + 1e-5;
          EXPECT_NEAR(y[r * n + o], want, bound) << activations << " row " << r << " out " << o;
        }
      }
    }
  }
  FakeInterpreter interp;
  const int gi = interp.AddTensor(kTfLiteFloat32, {1, int(m), int(k)}, gate.data(), gate.size() * 4, false);
  const int ui = interp.AddTensor(kTfLiteFloat32, {int(m), int(k)}, up.data(), up.size() * 4, false);
  const int pi = interp.AddTensor(kTfLiteUInt8, {int(n), int(RowBytes(WeightFormat::kTernary2, k))},
                                  l.packed.data(), l.packed.size(), true);
  const int si = interp.AddTensor(kTfLiteFloat32, {int(n)}, l.scale.data(), n * 4, true);
  const int yi = interp.AddTensor(kTfLiteFloat32, {1}, nullptr, 0, false);
  std::vector<float> y;
  EXPECT_EQ(interp.Run(TernaryMatMulRegistration(), {gi, pi, si, -1, ui}, yi, &y, "glu=silu"), kTfLiteError);
  EXPECT_EQ(interp.error(), "TernaryMatMul: up has shape [3, 101], expected [1, 3, 101] like the gate x");
  // Without up, x must be gate | up: 101 columns cannot be.
  EXPECT_EQ(interp.Run(TernaryMatMulRegistration(), {gi, pi, si}, yi, &y, "glu=silu"), kTfLiteError);
  EXPECT_EQ(interp.error(), "TernaryMatMul: glu=silu without an up input needs x = gate | up of even width, not "
                            "[1, 3, 101]");
}

// glu=silu without the up input reads x = [gate | up] per row (one op made both, concat_projections.py): the same
// bits as the op given gate and up apart, and a K that does not match the weights is refused.
TEST(MatMulOpTest, GluOptionReadsGateAndUpFromOneTensor) {
  std::mt19937 rng(19);
  const size_t m = 5, n = 37, k = 64;
  Layer l = RandomLayer(WeightFormat::kTernary2, n, k, rng);
  std::vector<float> gate(m * k), up(m * k), both(2 * m * k);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (size_t r = 0; r < m; ++r) {
    for (size_t c = 0; c < k; ++c) {
      gate[r * k + c] = both[2 * r * k + c] = normal(rng);
      up[r * k + c] = both[2 * r * k + k + c] = normal(rng);
    }
  }
  for (const char* options : {"activations=float32,glu=silu", "activations=int8,glu=silu"}) {
    FakeInterpreter interp;
    const int gi = interp.AddTensor(kTfLiteFloat32, {1, int(m), int(k)}, gate.data(), gate.size() * 4, false);
    const int ui = interp.AddTensor(kTfLiteFloat32, {1, int(m), int(k)}, up.data(), up.size() * 4, false);
    const int xi = interp.AddTensor(kTfLiteFloat32, {1, int(m), int(2 * k)}, both.data(), both.size() * 4, false);
    const int pi = interp.AddTensor(kTfLiteUInt8, {int(n), int(RowBytes(WeightFormat::kTernary2, k))},
                                    l.packed.data(), l.packed.size(), true);
    const int si = interp.AddTensor(kTfLiteFloat32, {int(n)}, l.scale.data(), n * 4, true);
    const int bi = interp.AddTensor(kTfLiteFloat32, {int(n)}, l.bias.data(), n * 4, true);
    const int yi = interp.AddTensor(kTfLiteFloat32, {1}, nullptr, 0, false);
    const int zi = interp.AddTensor(kTfLiteFloat32, {1}, nullptr, 0, false);
    std::vector<float> apart, joined;
    ASSERT_EQ(interp.Run(TernaryMatMulRegistration(), {gi, pi, si, bi, ui}, yi, &apart, options), kTfLiteOk)
        << interp.error();
    ASSERT_EQ(interp.Run(TernaryMatMulRegistration(), {xi, pi, si, bi}, zi, &joined, options), kTfLiteOk)
        << interp.error();
    const TfLiteIntArray* dims = interp.tensor(zi).dims;
    ASSERT_EQ(dims->size, 3);
    EXPECT_EQ(std::vector<int>(dims->data, dims->data + 3), (std::vector<int>{1, int(m), int(n)}));
    ASSERT_EQ(joined.size(), m * n);
    for (size_t i = 0; i < m * n; ++i) EXPECT_EQ(joined[i], apart[i]) << options << " at " << i;
    // gate | up as [1, 5, 128] against weights of K = 128 columns: 64 is what x holds per half.
    Layer wide = RandomLayer(WeightFormat::kTernary2, n, 2 * k, rng);
    const int wi = interp.AddTensor(kTfLiteUInt8, {int(n), int(RowBytes(WeightFormat::kTernary2, 2 * k))},
                                    wide.packed.data(), wide.packed.size(), true);
    EXPECT_EQ(interp.Run(TernaryMatMulRegistration(), {xi, wi, si}, zi, &joined, options), kTfLiteError);
    EXPECT_NE(interp.error().find("packed weights have shape [37, 32], expected [37, 16]"), std::string::npos)
        << interp.error();
  }
}

// "norm=rms": the op normalizes each row of x (x / sqrt(mean(x²) + eps) · gamma, here in double) before the
// matmul, with float or int8 activations; gamma of the wrong length, a missing epsilon and a combination with
// glu=silu are refused.
TEST(MatMulOpTest, RmsNormOptionNormalizesEachRowFirst) {
  std::mt19937 rng(17);
  const size_t m = 4, n = 37, k = 101;
  Layer l = RandomLayer(WeightFormat::kTernary2, n, k, rng);
  std::vector<float> x(m * k), gamma(k);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (auto& v : x) v = normal(rng);
  for (auto& v : gamma) v = 1.0f + 0.3f * normal(rng);
  float eps = 1e-5f;
  for (const char* activations : {"activations=float32", "activations=int8"}) {
    FakeInterpreter interp;
    const int xi = interp.AddTensor(kTfLiteFloat32, {1, int(m), int(k)}, x.data(), x.size() * 4, false);
    const int pi = interp.AddTensor(kTfLiteUInt8, {int(n), int(RowBytes(WeightFormat::kTernary2, k))},
                                    l.packed.data(), l.packed.size(), true);
    const int si = interp.AddTensor(kTfLiteFloat32, {int(n)}, l.scale.data(), n * 4, true);
    const int gi = interp.AddTensor(kTfLiteFloat32, {int(k)}, gamma.data(), k * 4, true);
    const int ei = interp.AddTensor(kTfLiteFloat32, {}, &eps, 4, true);
    const int yi = interp.AddTensor(kTfLiteFloat32, {1}, nullptr, 0, false);
    std::vector<float> y;
    const std::string options = std::string(activations) + ",norm=rms";
    ASSERT_EQ(interp.Run(TernaryMatMulRegistration(), {xi, pi, si, -1, -1, gi, ei}, yi, &y, options.c_str()),
              kTfLiteOk) << interp.error();
    const bool int8 = std::string(activations) == "activations=int8";
    for (size_t r = 0; r < m; ++r) {
      double sum = 0;
      for (size_t c = 0; c < k; ++c) sum += double{x[r * k + c]} * x[r * k + c];
      const double inv_rms = 1 / std::sqrt(sum / k + eps);
      std::vector<double> h(k);
      double amax = 0;
      for (size_t c = 0; c < k; ++c) {
        h[c] = x[r * k + c] * inv_rms * gamma[c];
        amax = std::max(amax, std::fabs(h[c]));
      }
      for (size_t o = 0; o < n; ++o) {
        double acc = 0, magnitude = 0;
        for (size_t c = 0; c < k; ++c) {
          acc += h[c] * l.w[o * k + c];
          magnitude += std::fabs(h[c]);
        }
        const double want = acc * l.scale[o];
        // As the GLU test: the normalized input within RmsNormBound relative, or half an int8 step per input.
        const double bound = (int8 ? k * amax / 253 : 1e-5 * magnitude) * l.scale[o] + 1e-5;
        EXPECT_NEAR(y[r * n + o], want, bound) << activations << " row " << r << " out " << o;
      }
    }
  }
  FakeInterpreter interp;
  const int xi = interp.AddTensor(kTfLiteFloat32, {int(m), int(k)}, x.data(), x.size() * 4, false);
  const int pi = interp.AddTensor(kTfLiteUInt8, {int(n), int(RowBytes(WeightFormat::kTernary2, k))},
                                  l.packed.data(), l.packed.size(), true);
  const int si = interp.AddTensor(kTfLiteFloat32, {int(n)}, l.scale.data(), n * 4, true);
  const int gi = interp.AddTensor(kTfLiteFloat32, {int(k) - 1}, gamma.data(), (k - 1) * 4, true);
  const int ei = interp.AddTensor(kTfLiteFloat32, {}, &eps, 4, true);
  const int yi = interp.AddTensor(kTfLiteFloat32, {1}, nullptr, 0, false);
  std::vector<float> y;
  EXPECT_EQ(interp.Run(TernaryMatMulRegistration(), {xi, pi, si, -1, -1, gi, ei}, yi, &y, "norm=rms"), kTfLiteError);
  EXPECT_EQ(interp.error(), "TernaryMatMul: gamma has shape [100], expected [101] like the last dimension of x");
  EXPECT_EQ(interp.Run(TernaryMatMulRegistration(), {xi, pi, si, -1, -1, gi}, yi, &y, "norm=rms"), kTfLiteError);
  EXPECT_EQ(interp.error(), "TernaryMatMul: norm=rms needs 7 inputs (x, packed weights, scale, bias or -1, -1, "
                            "gamma, epsilon)");
  EXPECT_EQ(interp.Run(TernaryMatMulRegistration(), {xi, pi, si, -1, -1, gi, ei}, yi, &y, "norm=rms,glu=silu"),
            kTfLiteError);
  EXPECT_EQ(interp.error(), "TernaryMatMul: glu=silu and norm=rms, at most one of them once, in custom options "
                            "\"norm=rms,glu=silu\"");
}

// format=ternary5: the same weights packed 5 per byte give the 2-bit op's output exactly, with either
// activations; a buffer packed 4 per byte is refused by its size.
TEST(MatMulOpTest, Ternary5FormatOptionMatchesTernary2Exactly) {
  std::mt19937 rng(5);
  const size_t m = 3, n = 37, k = 101;
  Layer l = RandomLayer(WeightFormat::kTernary2, n, k, rng);
  std::vector<uint8_t> dense(n * RowBytes(WeightFormat::kTernary5, k));
  ASSERT_TRUE(Pack(WeightFormat::kTernary5, l.w.data(), n, k, dense.data()).ok());
  std::vector<float> x(m * k);
  std::normal_distribution<float> normal;
  for (auto& v : x) v = normal(rng);
  for (const std::string act : {"activations=float32", "activations=int8"}) {
    std::vector<float> y2, y5;
    for (bool five : {false, true}) {
      FakeInterpreter interp;
      std::vector<uint8_t>& p = five ? dense : l.packed;
      const int xi = interp.AddTensor(kTfLiteFloat32, {int(m), int(k)}, x.data(), x.size() * 4, false);
      const int pi = interp.AddTensor(kTfLiteUInt8, {int(n), int(p.size() / n)}, p.data(), p.size(), true);
      const int si = interp.AddTensor(kTfLiteFloat32, {int(n)}, l.scale.data(), n * 4, true);
      const int yi = interp.AddTensor(kTfLiteFloat32, {1}, nullptr, 0, false);
      const std::string options = five ? "format=ternary5," + act : act;
      ASSERT_EQ(interp.Run(TernaryMatMulRegistration(), {xi, pi, si}, yi, five ? &y5 : &y2, options.c_str()),
                kTfLiteOk) << interp.error();
    }
    EXPECT_EQ(y5, y2) << act;
  }
  FakeInterpreter interp;
  const int xi = interp.AddTensor(kTfLiteFloat32, {int(m), int(k)}, x.data(), x.size() * 4, false);
  const int pi = interp.AddTensor(kTfLiteUInt8, {int(n), int(l.packed.size() / n)}, l.packed.data(),
                                  l.packed.size(), true);
  const int si = interp.AddTensor(kTfLiteFloat32, {int(n)}, l.scale.data(), n * 4, true);
  const int yi = interp.AddTensor(kTfLiteFloat32, {1}, nullptr, 0, false);
  std::vector<float> y;
  EXPECT_EQ(interp.Run(TernaryMatMulRegistration(), {xi, pi, si}, yi, &y, "format=ternary5"), kTfLiteError);
  EXPECT_EQ(interp.error(), "TernaryMatMul: packed weights have shape [37, 26], expected [37, 21] for N = 37 "
                            "(scale) and K = 101 (input x)");
}

struct BadCase {
  const char* name;
  std::vector<int> x_shape;
  TfLiteType packed_type;
  std::vector<int> packed_shape;
  size_t packed_bytes;
  int scale_n;
  bool constant;
  const char* message;
};

TEST(MatMulOpTest, RejectsMalformedNodesWithAClearMessage) {
  std::vector<uint8_t> packed(64, 0x55);
  std::vector<float> x(64), scale(16);
  const BadCase cases[] = {
      {"short buffer", {1, 10}, kTfLiteUInt8, {6, 3}, 17, 6, true, "buffer holds 17 bytes, expected 18"},
      {"k mismatch", {1, 20}, kTfLiteUInt8, {6, 3}, 18, 6, true, "expected [6, 5]"},
      {"wrong dtype", {1, 10}, kTfLiteInt8, {6, 3}, 18, 6, true, "packed weights must be uint8"},
      {"wrong rank", {1, 10}, kTfLiteUInt8, {18}, 18, 6, true, "must have rank 2"},
      {"scale length", {1, 10}, kTfLiteUInt8, {6, 3}, 18, 5, true, "expected [5, 3]"},
      {"not constant", {1, 10}, kTfLiteUInt8, {6, 3}, 18, 6, false, "must be a constant tensor"},
      {"empty k", {1, 0}, kTfLiteUInt8, {6, 0}, 0, 6, true, "empty last dimension"},
  };
  for (const BadCase& c : cases) {
    FakeInterpreter interp;
    const int xi = interp.AddTensor(kTfLiteFloat32, c.x_shape, x.data(), 40, false);
    const int pi = interp.AddTensor(c.packed_type, c.packed_shape, packed.data(), c.packed_bytes,
                                    c.constant);
    const int si = interp.AddTensor(kTfLiteFloat32, {c.scale_n}, scale.data(), c.scale_n * 4, true);
    const int yi = interp.AddTensor(kTfLiteFloat32, {1}, nullptr, 0, false);
    std::vector<float> y;
    EXPECT_EQ(interp.Run(TernaryMatMulRegistration(), {xi, pi, si}, yi, &y), kTfLiteError) << c.name;
    EXPECT_NE(interp.error().find("TernaryMatMul: "), std::string::npos) << c.name;
    EXPECT_NE(interp.error().find(c.message), std::string::npos) << c.name << ": " << interp.error();
  }
  FakeInterpreter interp;
  const int xi = interp.AddTensor(kTfLiteFloat32, {1, 10}, x.data(), 40, false);
  std::vector<float> y;
  EXPECT_EQ(interp.Run(TernaryMatMulRegistration(), {xi, -1, 98}, 0, &y), kTfLiteError);
  EXPECT_EQ(interp.error(), "TernaryMatMul: input 1 is missing");
  EXPECT_EQ(interp.Run(TernaryMatMulRegistration(), {xi, 99, 98}, 0, &y), kTfLiteError);
  EXPECT_EQ(interp.error(), "TernaryMatMul: input 1 is tensor 99, outside the 1 tensors");
  // The optional bias too (found by //cc/tflite/fuzz:ops_fuzz: it was read without a check).
  const int pi = interp.AddTensor(kTfLiteUInt8, {4, 3}, packed.data(), 12, true);
  const int si = interp.AddTensor(kTfLiteFloat32, {4}, scale.data(), 16, true);
  EXPECT_EQ(interp.Run(TernaryMatMulRegistration(), {xi, pi, si, 1000}, xi, &y), kTfLiteError);
  EXPECT_EQ(interp.error(), "TernaryMatMul: input 3 is tensor 1000, outside the 3 tensors");
}

}  // namespace
}  // namespace tvlm
