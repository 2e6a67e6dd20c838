#include "cc/kernels/packing.h"

#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace tvlm {
namespace {

// Independent reference: the byte layout spelled out weight by weight, as documented in packing.h.
std::vector<uint8_t> ReferencePack(WeightFormat format, const std::vector<int8_t>& v, size_t rows,
                                   size_t k) {
  if (format == WeightFormat::kTernary5) {  // base-3 digits, weight 5b + j the j-th least significant
    const size_t row_bytes = (k + 4) / 5;
    std::vector<uint8_t> out(rows * row_bytes, 0);
    for (size_t r = 0; r < rows; ++r) {
      for (size_t b = 0; b < row_bytes; ++b) {
        unsigned value = 0;
        for (size_t j = 5; j-- > 0;) {
          const size_t c = 5 * b + j;
          value = 3 * value + static_cast<unsigned>((c < k ? v[r * k + c] : 0) + 1);
        }
        out[r * row_bytes + b] = static_cast<uint8_t>(value);
      }
    }
    return out;
  }
  const bool ternary = format == WeightFormat::kTernary2;
  const size_t per_byte = ternary ? 4 : 8;
  const size_t row_bytes = (k + per_byte - 1) / per_byte;
  std::vector<uint8_t> out(rows * row_bytes, 0);
  for (size_t r = 0; r < rows; ++r) {
    for (size_t c = 0; c < row_bytes * per_byte; ++c) {
      const int value = c < k ? v[r * k + c] : (ternary ? 0 : -1);
      const unsigned code = ternary ? static_cast<unsigned>(value + 1) : (value > 0 ? 1u : 0u);
      const unsigned bits = ternary ? 2 : 1;
      out[r * row_bytes + c / per_byte] |= static_cast<uint8_t>(code << (bits * (c % per_byte)));
    }
  }
  return out;
}

std::vector<int8_t> RandomValues(WeightFormat format, size_t n, std::mt19937& rng) {
  const bool ternary = format != WeightFormat::kBinary1;
  std::uniform_int_distribution<int> dist(0, ternary ? 2 : 1);
  std::vector<int8_t> v(n);
  for (auto& x : v) {
    const int d = dist(rng);
    x = static_cast<int8_t>(ternary ? d - 1 : 2 * d - 1);
  }
  return v;
}

class PackingTest : public ::testing::TestWithParam<WeightFormat> {};

TEST_P(PackingTest, RoundTripsAndMatchesReferenceForAnyK) {
  const WeightFormat format = GetParam();
  std::mt19937 rng(1234);
  for (size_t k : {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 577, 1536}) {
    for (size_t rows : {1, 3, 8}) {
      const auto values = RandomValues(format, rows * k, rng);
      std::vector<uint8_t> packed(rows * RowBytes(format, k));
      ASSERT_TRUE(Pack(format, values.data(), rows, k, packed.data()).ok());
      EXPECT_EQ(packed, ReferencePack(format, values, rows, k)) << "k=" << k << " rows=" << rows;
      std::vector<int8_t> unpacked(rows * k);
      const Status s = Unpack(format, packed.data(), rows, k, unpacked.data());
      ASSERT_TRUE(s.ok()) << s.message();
      EXPECT_EQ(unpacked, values) << "k=" << k << " rows=" << rows;
    }
  }
}

TEST_P(PackingTest, DequantizeIsScaleTimesValueForAnyKAndRowRange) {
  const WeightFormat format = GetParam();
  std::mt19937 rng(99);
  std::uniform_real_distribution<float> uniform(-2.0f, 2.0f);
  for (size_t k : {1, 3, 4, 5, 8, 9, 17, 64, 577}) {
    const size_t rows = 6;
    const auto values = RandomValues(format, rows * k, rng);
    std::vector<uint8_t> packed(rows * RowBytes(format, k));
    ASSERT_TRUE(Pack(format, values.data(), rows, k, packed.data()).ok());
    std::vector<float> scale(rows);
    for (auto& s : scale) s = uniform(rng);
    std::vector<float> out(rows * k, -7.0f);
    Dequantize(format, packed.data(), 2, 5, k, scale.data(), out.data());  // rows 2..4 only
    for (size_t r = 0; r < rows; ++r) {
      for (size_t c = 0; c < k; ++c) {
        const float want = r >= 2 && r < 5 ? scale[r] * values[r * k + c] : -7.0f;
        ASSERT_EQ(out[r * k + c], want) << "k=" << k << " at [" << r << ", " << c << "]";
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, PackingTest,
                         ::testing::Values(WeightFormat::kTernary2, WeightFormat::kBinary1,
                                           WeightFormat::kTernary5));

TEST(PackingTest, RowBytesAndFormatTable) {
  EXPECT_EQ(RowBytes(WeightFormat::kTernary2, 1), 1u);
  EXPECT_EQ(RowBytes(WeightFormat::kTernary2, 4), 1u);
  EXPECT_EQ(RowBytes(WeightFormat::kTernary2, 5), 2u);
  EXPECT_EQ(RowBytes(WeightFormat::kBinary1, 8), 1u);
  EXPECT_EQ(RowBytes(WeightFormat::kBinary1, 9), 2u);
  EXPECT_STREQ(FormatInfo(WeightFormat::kTernary2).name, "ternary2");
  EXPECT_STREQ(FormatInfo(WeightFormat::kBinary1).name, "binary1");
  EXPECT_EQ(RowBytes(WeightFormat::kTernary5, 5), 1u);
  EXPECT_EQ(RowBytes(WeightFormat::kTernary5, 6), 2u);
  EXPECT_EQ(RowBytes(WeightFormat::kTernary5, 2048), 410u);
  EXPECT_STREQ(FormatInfo(WeightFormat::kTernary5).name, "ternary5");
  EXPECT_EQ(FormatInfo(WeightFormat::kTernary5).bits_per_weight_x100, 160);
}

TEST(PackingTest, KnownTernary5Bytes) {
  // +1, 0, -1, +1, +1 -> digits 2, 1, 0, 2, 2 -> 2 + 3 + 0 + 54 + 162 = 221; then -1 and four zeros:
  // 0 + 3 + 9 + 27 + 81 = 120.
  const std::vector<int8_t> v = {1, 0, -1, 1, 1, -1};
  std::vector<uint8_t> packed(2);
  ASSERT_TRUE(Pack(WeightFormat::kTernary5, v.data(), 1, 6, packed.data()).ok());
  EXPECT_EQ(packed[0], 221);
  EXPECT_EQ(packed[1], 120);
}

TEST(PackingTest, KnownTernaryBytes) {
  // -1, 0, +1, 0 -> codes 0, 1, 2, 1 -> 0b01'10'01'00; then +1 alone with zero padding.
  const std::vector<int8_t> v = {-1, 0, 1, 0, 1};
  std::vector<uint8_t> packed(2);
  ASSERT_TRUE(Pack(WeightFormat::kTernary2, v.data(), 1, 5, packed.data()).ok());
  EXPECT_EQ(packed[0], 0b01100100);
  EXPECT_EQ(packed[1], 0b01010110);
}

TEST(PackingTest, RejectsValuesOutsideTheAlphabet) {
  std::vector<uint8_t> packed(4);
  const std::vector<int8_t> ternary = {0, 1, 2, -1};
  Status s = Pack(WeightFormat::kTernary2, ternary.data(), 2, 2, packed.data());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("[1, 0]"), std::string::npos) << s.message();
  const std::vector<int8_t> binary = {1, 0};
  s = Pack(WeightFormat::kBinary1, binary.data(), 1, 2, packed.data());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("not in {-1, 1}"), std::string::npos) << s.message();
}

TEST(PackingTest, RejectsInvalidCodesAndPadding) {
  std::vector<int8_t> out(8);
  const uint8_t code3 = 0b01011101;  // weight 1 has code 3
  Status s = Unpack(WeightFormat::kTernary2, &code3, 1, 4, out.data());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("invalid ternary code 3 at [0, 1]"), std::string::npos) << s.message();
  const uint8_t ternary_pad = 0b00010101;  // k = 3, padding weight 3 holds -1
  s = Unpack(WeightFormat::kTernary2, &ternary_pad, 1, 3, out.data());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("padding"), std::string::npos) << s.message();
  const uint8_t ternary5_invalid[2] = {121, 243};  // 243 = 3^5 has no digits
  s = Unpack(WeightFormat::kTernary5, ternary5_invalid, 1, 10, out.data());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("invalid ternary5 byte 243 in row 0, byte 1"), std::string::npos) << s.message();
  const uint8_t ternary5_pad = 121 + 81;  // k = 4, padding weight 4 holds +1
  s = Unpack(WeightFormat::kTernary5, &ternary5_pad, 1, 4, out.data());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("padding at [0, 4]"), std::string::npos) << s.message();
  const uint8_t binary_pad = 0b10000000;  // k = 7, padding bit set
  s = Unpack(WeightFormat::kBinary1, &binary_pad, 1, 7, out.data());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("padding"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace tvlm
