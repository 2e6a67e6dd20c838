// W2A8 with the ARMv8.2 dot-product extension (sdot; Cortex-A55/A76 and later, every phone SoC
// since ~2018): vdotq_s32 adds, per 32-bit lane, 4 products of the lane's 4 code bytes with 4
// broadcast activation bytes — one instruction for what plain NEON does with a widening multiply,
// a multiply-accumulate and a pairwise add (a8/neon.cc). A 16-byte quarter of a chunk holds rows
// 4p..4p+3 × inputs 4g..4g+3 per pair g (layout.h), so one sdot per (quarter, pair) and row.
// Picked at run time only where getauxval(AT_HWCAP) reports ASIMDDP (matmul.cc).

#if !defined(__ARM_FEATURE_DOTPROD)
#error "a8/neon_dot.cc needs the dot-product extension (-march=armv8.2-a+dotprod)"
#endif

#include <arm_neon.h>

#include <cstring>

#include "cc/kernels/a8/isa.h"
#include "cc/kernels/a8/layout.h"

namespace tvlm {
namespace internal {
namespace {

inline int8x16_t Broadcast4(const int8_t* q) {
  int32_t v;
  std::memcpy(&v, q, 4);
  return vreinterpretq_s8_s32(vdupq_n_s32(v));
}

// One 16-row block against MR activation rows [i0, i0 + MR).
//
// A single row (decode) keeps three partial sums per quarter and masks pairs 1 and 2 in place
// (values (t + 1) · 4 and · 16, below 2^7 so still valid signed bytes), shifting the sums back
// exactly at the end; pair 3 is one shift and pair 0 one mask, both at scale 1. That is one vector
// op per sdot. Several rows share each unpacked code vector instead (shift and mask once, sdot MR
// times), with one sum per quarter and row.
template <int MR>
void Tile(const A8Layout& l, const uint8_t* block, const A8Rows& rows, size_t i0, size_t valid,
          float* y) {
  constexpr bool kInPlace = MR == 1;
  constexpr int S = kInPlace ? 3 : 1;
  int32x4_t acc[MR][4][S];
  for (int i = 0; i < MR; ++i) {
    for (int p = 0; p < 4; ++p) {
      for (int s = 0; s < S; ++s) acc[i][p][s] = vdupq_n_s32(0);
    }
  }
  const uint8x16_t three = vdupq_n_u8(3);
  const int8_t* q = rows.q + i0 * rows.stride;
  for (size_t c = 0; c < l.chunks; ++c, block += A8Layout::kChunkBytes, q += A8Layout::kChunk) {
    int8x16_t a[MR][4];
    for (int i = 0; i < MR; ++i) {
      for (int g = 0; g < 4; ++g) a[i][g] = Broadcast4(q + i * rows.stride + 4 * g);
    }
    for (int p = 0; p < 4; ++p) {
      const uint8x16_t v = vld1q_u8(block + 16 * p);
      int8x16_t codes[4];
      codes[0] = vreinterpretq_s8_u8(vandq_u8(v, three));
      codes[1] = vreinterpretq_s8_u8(kInPlace ? vandq_u8(v, vdupq_n_u8(0x0C))
                                              : vandq_u8(vshrq_n_u8(v, 2), three));
      codes[2] = vreinterpretq_s8_u8(kInPlace ? vandq_u8(v, vdupq_n_u8(0x30))
                                              : vandq_u8(vshrq_n_u8(v, 4), three));
      codes[3] = vreinterpretq_s8_u8(vshrq_n_u8(v, 6));
      for (int i = 0; i < MR; ++i) {
        for (int g = 0; g < 4; ++g) {
          int32x4_t& sum = acc[i][p][kInPlace ? (g == 3 ? 0 : g) : 0];
          sum = vdotq_s32(sum, codes[g], a[i][g]);
        }
      }
    }
  }
  for (int i = 0; i < MR; ++i) {
    const int32x4_t sum = vdupq_n_s32(rows.sum[i0 + i]);
    const float32x4_t scale = vdupq_n_f32(rows.scale[i0 + i]);
    float out[16];
    for (int p = 0; p < 4; ++p) {
      int32x4_t total = acc[i][p][0];
      if (kInPlace) {
        total = vaddq_s32(total, vshrq_n_s32(acc[i][p][S > 1 ? 1 : 0], 2));
        total = vaddq_s32(total, vshrq_n_s32(acc[i][p][S > 2 ? 2 : 0], 4));
      }
      vst1q_f32(out + 4 * p, vmulq_f32(vcvtq_f32_s32(vsubq_s32(total, sum)), scale));
    }
    std::memcpy(y + (i0 + i) * l.n, out, valid * sizeof(float));
  }
}

}  // namespace

void A8DotNeonDot(const A8Layout& layout, const uint8_t* packed, const A8Rows& rows, size_t m,
                  size_t row_begin, size_t row_end, float* y) {
  for (size_t r0 = row_begin; r0 < row_end; r0 += A8Layout::kRows) {
    const size_t valid = row_end - r0 < A8Layout::kRows ? row_end - r0 : A8Layout::kRows;
    const uint8_t* block = layout.block(packed, r0);
    size_t i = 0;
    for (; i + 2 <= m; i += 2) Tile<2>(layout, block, rows, i, valid, y + r0);
    for (; i < m; ++i) Tile<1>(layout, block, rows, i, valid, y + r0);
  }
}

}  // namespace internal
}  // namespace tvlm
