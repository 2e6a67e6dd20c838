#include "cc/kernels/f32/lut8_avx2.h"

#include <immintrin.h>

#include "cc/kernels/f32/lut8_layout.h"
#include "cc/kernels/f32/lut_walk.h"

namespace tvlm {
namespace internal {
namespace {

constexpr size_t kRows = Lut8Layout::kRows;
constexpr size_t kGroups = Lut8Layout::kGroupsPerWord;
constexpr size_t kWordFloats = Lut8Layout::kWordTableFloats;
constexpr size_t kTableFloats = Lut8Layout::kTableFloats;

// A tile is a single row block: with the tables as memory operands of vpermps, it needs few of
// the 16 registers (wider tiles make GCC keep every index word in a register and spill). The 10
// lookups of a word are summed as a tree, so one add per word lands on the accumulator chain.
// Accumulates words [d0, d1) of one row block (P planes) against activation rows
// [i0, i0 + MR), adding to what earlier chunks left in y (d0 > 0) or starting from zero.
template <int P, int MR>
void Tile(const LutArgs& a, size_t block, size_t i0, size_t d0, size_t d1) {
  const size_t valid = Min(kRows, a.n - block * kRows);
  __m256 acc[MR][P];
  #pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    alignas(32) float tmp[kRows] = {};
    if (d0 > 0) {
      for (size_t l = 0; l < valid; ++l) tmp[l] = a.y[(i0 + i) * a.n + block * kRows + l];
    }
    acc[i][0] = _mm256_load_ps(tmp);
    if (P == 2) acc[i][P - 1] = _mm256_setzero_ps();
  }
  const uint32_t* w = a.words + (block * a.words_per_row + d0) * P * kRows;
  const float* t = a.tables + i0 * a.table_stride + d0 * kWordFloats;
  const __m256 one = _mm256_set1_ps(1.0f);
  for (size_t d = d0; d < d1; ++d, w += P * kRows, t += kWordFloats) {
    __m256i words[P];
    #pragma GCC unroll 2
    for (int p = 0; p < P; ++p) {
      words[p] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + p * kRows));
    }
    #pragma GCC unroll 2
    for (int p = 0; p < P; ++p) {
      __m256 v[MR][kGroups];
      #pragma GCC unroll 10
      for (size_t g = 0; g < kGroups; ++g) {
        // vpermps reads only the low 3 bits of each lane: shift the group down, no masking.
        const __m256i idx =
            _mm256_srli_epi32(words[p], static_cast<int>(g * Lut8Layout::kIndexBits));
        #pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) {
          const __m256 table = _mm256_load_ps(t + i * a.table_stride + g * kTableFloats);
          v[i][g] = _mm256_permutevar8x32_ps(table, idx);
        }
      }
      #pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        #pragma GCC unroll 4
        for (size_t width = kGroups; width > 1; width = (width + 1) / 2) {
          #pragma GCC unroll 8
          for (size_t j = 0; j < width / 2; ++j) {
            // Every other add as a·1 + b (exact, one rounding like the add) to use the FMA
            // ports too.
            v[i][j] = j % 2 ? _mm256_fmadd_ps(v[i][2 * j], one, v[i][2 * j + 1])
                            : _mm256_add_ps(v[i][2 * j], v[i][2 * j + 1]);
          }
          if (width % 2) v[i][width / 2] = v[i][width - 1];
        }
        acc[i][p] = _mm256_add_ps(acc[i][p], v[i][0]);
      }
    }
  }
  #pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    // Plane 1 holds the −1 weights of ternary rows.
    const __m256 sum = P == 2 ? _mm256_sub_ps(acc[i][0], acc[i][P - 1]) : acc[i][0];
    float* y = a.y + (i0 + i) * a.n + block * kRows;
    if (valid == kRows) {
      _mm256_storeu_ps(y, sum);
    } else {
      alignas(32) float tmp[kRows];
      _mm256_store_ps(tmp, sum);
      for (size_t l = 0; l < valid; ++l) y[l] = tmp[l];
    }
  }
}

template <int P>
void Dot(const LutArgs& a, size_t m, size_t b0, size_t b1) {
  WalkTiles(m, a.words_per_row, b0, b1, kWordFloats * sizeof(float), P * kRows * sizeof(uint32_t), 1,
            [&](auto rows, size_t s0, size_t s1, size_t i0, size_t d0, size_t d1) {
              for (size_t block = s0; block < s1; ++block) {
                Tile<P, decltype(rows)::value>(a, block, i0, d0, d1);
              }
            });
}

}  // namespace

void Lut8TablesAvx2(const Lut8Layout& layout, const float* x, size_t word_begin, size_t word_end,
                    float* tables) {
  // coef[j] = the ±1/0 pattern activation j of a group has across the 8 entries.
  __m256 coef[Lut8Layout::kGroup];
  for (size_t j = 0; j < Lut8Layout::kGroup; ++j) {
    alignas(32) float c[8];
    for (size_t e = 0; e < 8; ++e) c[e] = static_cast<float>(Lut8Coefficient(layout.format, e, j));
    coef[j] = _mm256_load_ps(c);
  }
  const size_t g_end = word_end * kGroups;
  float* t = tables + word_begin * kWordFloats;
  for (size_t g = word_begin * kGroups; g < g_end; ++g, t += 8) {
    __m256 v = _mm256_setzero_ps();
    for (size_t j = 0; j < Lut8Layout::kGroup; ++j) {
      const size_t c = g * Lut8Layout::kGroup + j;
      // Exact products: coef is ±1 or 0.
      v = _mm256_fmadd_ps(coef[j], _mm256_set1_ps(c < layout.k ? x[c] : 0.0f), v);
    }
    _mm256_store_ps(t, v);
  }
}

void Lut8DotAvx2(const Lut8Layout& layout, const uint32_t* words, const float* tables,
                 size_t table_stride, size_t m, size_t row_begin, size_t row_end, float* y) {
  const LutArgs a = {words, layout.words_per_row, tables, table_stride, y, layout.n};
  const size_t b0 = row_begin / kRows, b1 = (row_end + kRows - 1) / kRows;
  layout.planes == 2 ? Dot<2>(a, m, b0, b1) : Dot<1>(a, m, b0, b1);
}

}  // namespace internal
}  // namespace tvlm
