#include "cc/kernels/f32/lut_avx512.h"

#include <immintrin.h>

#include "cc/kernels/f32/lut_layout.h"
#include "cc/kernels/f32/lut_walk.h"

namespace tvlm {
namespace internal {
namespace {

constexpr size_t kRows = LutLayout::kRows;
constexpr size_t kWordFloats = LutLayout::kWordTableFloats;

// Row blocks per tile: enough independent permutes to hide their latency, few enough that
// accumulators, indices and the shared table stay in the 32 registers.
constexpr int kBlocksPerTile = 4;
// Every loop over these compile-time counts is unrolled (#pragma GCC unroll) so that the
// accumulator arrays live in registers.
// Accumulates words [d0, d1) of row blocks [block, block + R) against activation rows
// [i0, i0 + MR), adding to what earlier chunks left in y (d0 > 0) or starting from zero.
template <int R, int MR>
void Tile(const LutArgs& a, size_t block, size_t i0, size_t d0, size_t d1) {
  // With one activation row, two accumulators per block keep enough permute-add chains in flight.
  constexpr int S = MR == 1 ? 2 : 1;
  __m512 acc[MR][R][S];
  __mmask16 mask[R];
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    const size_t valid = a.n - (block + r) * kRows;
    mask[r] = valid >= kRows ? __mmask16(0xFFFF) : __mmask16((1u << valid) - 1);
    #pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      float* y = a.y + (i0 + i) * a.n + (block + r) * kRows;
      acc[i][r][0] = d0 == 0 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mask[r], y);
      #pragma GCC unroll 8
      for (int s = 1; s < S; ++s) acc[i][r][s] = _mm512_setzero_ps();
    }
  }
  const __m512 one = _mm512_set1_ps(1.0f);
  const size_t block_words = a.words_per_row * kRows;
  const uint32_t* w = a.words + block * block_words + d0 * kRows;
  const float* t = a.tables + i0 * a.table_stride + d0 * kWordFloats;
  for (size_t d = d0; d < d1; ++d, w += kRows, t += kWordFloats) {
    __m512i idx[R];
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) idx[r] = _mm512_loadu_si512(w + r * block_words);
    #pragma GCC unroll 8
    for (int g = 0; g < 6; ++g) {
      // The permute reads only the low 5 bits of each lane. Shifting the loaded word (not the
      // previous shift) leaves the permute a register it may overwrite: no register copies.
      __m512i shifted[R];
      #pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        shifted[r] = _mm512_srli_epi32(idx[r], g * LutLayout::kIndexBits);
      }
      #pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        const float* ti = t + i * a.table_stride + g * LutLayout::kTableFloats;
        const __m512 lo = _mm512_load_ps(ti), hi = _mm512_load_ps(ti + 16);
        #pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          const __m512 v = _mm512_permutex2var_ps(lo, shifted[r], hi);
          // Half the sums as v·1 + acc (exact, one rounding like the add): the FMA ports
          // take them while the add ports take the rest.
          acc[i][r][g % S] = (g + r) % 2 ? _mm512_fmadd_ps(v, one, acc[i][r][g % S])
                                         : _mm512_add_ps(acc[i][r][g % S], v);
        }
      }
    }
  }
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    #pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      __m512 sum = acc[i][r][0];
      #pragma GCC unroll 8
      for (int s = 1; s < S; ++s) sum = _mm512_add_ps(sum, acc[i][r][s]);
      _mm512_mask_storeu_ps(a.y + (i0 + i) * a.n + (block + r) * kRows, mask[r], sum);
    }
  }
}

template <int MR>
void Tiles(const LutArgs& a, size_t block, size_t block_end, size_t i0, size_t d0, size_t d1) {
  for (; block + kBlocksPerTile <= block_end; block += kBlocksPerTile) {
    Tile<kBlocksPerTile, MR>(a, block, i0, d0, d1);
  }
  for (; block < block_end; ++block) Tile<1, MR>(a, block, i0, d0, d1);
}

}  // namespace

void LutTablesAvx512(const LutLayout& layout, const float* x, size_t word_begin, size_t word_end,
                     float* tables) {
  // coef[j] = the ±1/0 pattern weight j of a group has across the 32 entries.
  alignas(64) float coef[5][32];
  for (size_t j = 0; j < layout.group; ++j) {
    for (size_t e = 0; e < 32; ++e) coef[j][e] = LutCoefficient(layout.format, e, j);
  }
  const size_t g_end = word_end * LutLayout::kGroupsPerWord;
  float* t = tables + word_begin * kWordFloats;
  for (size_t g = word_begin * LutLayout::kGroupsPerWord; g < g_end; ++g, t += 32) {
    __m512 lo = _mm512_setzero_ps(), hi = _mm512_setzero_ps();
    for (size_t j = 0; j < layout.group; ++j) {
      const size_t c = g * layout.group + j;
      const __m512 v = _mm512_set1_ps(c < layout.k ? x[c] : 0.0f);
      lo = _mm512_fmadd_ps(_mm512_load_ps(coef[j]), v, lo);  // exact products: coef is ±1 or 0
      hi = _mm512_fmadd_ps(_mm512_load_ps(coef[j] + 16), v, hi);
    }
    _mm512_store_ps(t, lo);
    _mm512_store_ps(t + 16, hi);
  }
}

void LutDotAvx512(const LutLayout& layout, const uint32_t* words, const float* tables,
                  size_t table_stride, size_t m, size_t row_begin, size_t row_end, float* y) {
  const LutArgs a = {words, layout.words_per_row, tables, table_stride, y, layout.n};
  const size_t b0 = row_begin / kRows, b1 = (row_end + kRows - 1) / kRows;
  WalkTiles(m, layout.words_per_row, b0, b1, kWordFloats * sizeof(float), kRows * sizeof(uint32_t),
            kBlocksPerTile, [&](auto rows, size_t s0, size_t s1, size_t i0, size_t d0, size_t d1) {
              Tiles<decltype(rows)::value>(a, s0, s1, i0, d0, d1);
            });
}

}  // namespace internal
}  // namespace tvlm
