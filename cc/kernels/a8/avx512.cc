// W2A8 with AVX-512 VNNI: one vpdpbusd multiplies 16 rows × 4 inputs of 2-bit codes (unsigned)
// by 4 broadcast int8 activations and adds them into 16 int32 sums.

#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "cc/kernels/a8/isa.h"
#include "cc/kernels/a8/layout.h"






namespace tvlm {
namespace internal {
namespace {

inline __m512i Broadcast4(const int8_t* q) {
  int32_t v;
  std::memcpy(&v, q, 4);
  return _mm512_set1_epi32(v);
}

// Decode streams the weights once: a prefetch this far ahead keeps enough lines in flight for one
// core to reach the memory's bandwidth, which the hardware prefetcher alone does not (Xeon, 1 thread,
// 2048x8192: 0.40 ms without, 0.35 / 0.29 / 0.18 / 0.15 / 0.28 ms at 0.5 / 1 / 4 / 8 / 16 KB ahead;
// prefetches past the end of the weights are harmless hints). Into L2 (T1), not L1: with K = 8192 a
// block row's 32 KB of codes pass between two reads of the same 8 KB of activations, and prefetching
// them into L1 as well evicted those (Zen 5, 8192x2048, 5 interleaved runs: 1.13-1.28x the read floor
// with T1 against 1.24-1.79x with T0; 2048x8192 and the SmolLM2 shapes unchanged). The AVX2 and VBMI
// loops keep T0: there T1 measured no faster (AVX2) or 20 % slower (VBMI, whose byte lookups want the
// codes in L1).
constexpr size_t kPrefetchBytes = 8192;

inline __mmask16 RowMask(size_t valid) {
  return valid >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << valid) - 1);
}

// NR consecutive 16-row blocks against activation rows [i0, i0 + MR). Each broadcast activation
// word feeds NR blocks and each unpacked code vector MR rows, so the loads, shifts and masks are
// shared; with few (row, block) pairs each keeps S accumulators (pair g adds into g % S) so that
// enough independent vpdpbusd chains hide its latency.
//
// With one accumulator per pair (S = 4: a single row against a single block, i.e. decode) the codes
// are not shifted down at all: pair g is masked in place, so vpdpbusd multiplies (t + 1) · 4^g and
// accumulator g ends at 4^g times its sum, divided back exactly by an arithmetic shift at the end.
// That leaves one AND per vpdpbusd on the vector ports (products stay below 2^15: 2 · 64 · 127).
template <int MR, int NR>
void Tile(const A8Layout& l, const uint8_t* blocks, const A8Rows& rows, size_t i0, size_t r0,
          size_t row_end, float* y) {
  constexpr int S = MR * NR >= 4 ? 1 : 4 / (MR * NR);
  __m512i acc[MR][NR][S];
  #pragma GCC unroll 4
  for (int i = 0; i < MR; ++i) {
    #pragma GCC unroll 4
    for (int b = 0; b < NR; ++b) {
      #pragma GCC unroll 4
      for (int s = 0; s < S; ++s) acc[i][b][s] = _mm512_setzero_si512();
    }
  }
  constexpr bool kInPlace = S == 4;
  const __m512i three = _mm512_set1_epi8(3);
  const size_t block_bytes = l.block_bytes();
  const int8_t* q = rows.q + i0 * rows.stride;
  for (size_t c = 0; c < l.chunks; ++c, blocks += A8Layout::kChunkBytes, q += A8Layout::kChunk) {
    __m512i v[NR];
    #pragma GCC unroll 4
    for (int b = 0; b < NR; ++b) {
      if (kInPlace) _mm_prefetch(reinterpret_cast<const char*>(blocks) + kPrefetchBytes, _MM_HINT_T1);
      v[b] = _mm512_loadu_si512(blocks + b * block_bytes);
    }
    #pragma GCC unroll 4
    for (int g = 0; g < 4; ++g) {
      // 16-bit shifts move bits across bytes, but the mask keeps only each byte's own low pair.
      __m512i codes[NR];
      #pragma GCC unroll 4
      for (int b = 0; b < NR; ++b) {
        codes[b] = kInPlace ? _mm512_and_si512(v[b], _mm512_set1_epi8(static_cast<char>(3 << (2 * g))))
                            : _mm512_and_si512(g == 0 ? v[b] : _mm512_srli_epi16(v[b], 2 * g), three);
      }
      #pragma GCC unroll 4
      for (int i = 0; i < MR; ++i) {
        const __m512i a = Broadcast4(q + i * rows.stride + 4 * g);
        #pragma GCC unroll 4
        for (int b = 0; b < NR; ++b) {
          acc[i][b][g % S] = _mm512_dpbusd_epi32(acc[i][b][g % S], codes[b], a);
        }
      }
    }
  }
  #pragma GCC unroll 4
  for (int i = 0; i < MR; ++i) {
    const __m512i sum = _mm512_set1_epi32(rows.sum[i0 + i]);
    const __m512 scale = _mm512_set1_ps(rows.scale[i0 + i]);
    #pragma GCC unroll 4
    for (int b = 0; b < NR; ++b) {
      __m512i total = acc[i][b][0];
      #pragma GCC unroll 4
      for (int s = 1; s < S; ++s) {
        total = _mm512_add_epi32(total, kInPlace ? _mm512_srai_epi32(acc[i][b][s], 2 * s) : acc[i][b][s]);
      }
      const __m512 out = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(total, sum)), scale);
      const size_t first = r0 + b * A8Layout::kRows;
      _mm512_mask_storeu_ps(y + (i0 + i) * l.n + first, RowMask(row_end - first), out);
    }
  }
}

// Blocks of rows [r0, row_end) in tiles of NR blocks against every activation row.
template <int NR>
void Blocks(const A8Layout& l, const uint8_t* packed, const A8Rows& rows, size_t m, size_t r0,
            size_t row_end, float* y) {
  const uint8_t* blocks = l.block(packed, r0);
  size_t i = 0;
  for (; i + 4 <= m; i += 4) Tile<4, NR>(l, blocks, rows, i, r0, row_end, y);
  for (; i < m; ++i) Tile<1, NR>(l, blocks, rows, i, r0, row_end, y);
}

// Prefill (many activation rows): the codes of kGemmBlocks blocks are unpacked once per slab of
// kSlabChunks chunks into an L1-resident buffer and reused by every group of rows, whose int32 sums
// live in memory between slabs. Unpacking then costs 1/m of a pass instead of one pass per 4 rows, so
// the vector ports run almost nothing but vpdpbusd (plus one load of codes per 4 of them).
constexpr int kGemmBlocks = 4;
// 16 chunks × 4 pairs × 4 blocks × 64 B = 16 KB of codes, in L1 on every AVX-512 CPU. SmolLM2 shapes at
// 64 rows, Zen 5: 2 % faster than 8 chunks, as fast as 32 (the int32 sums go to memory half as often).
constexpr size_t kSlabChunks = 16;

// codes[(c * 4 + g) * kGemmBlocks + b]: pair g of chunk c of block b, each byte 0, 1 or 2.
void UnpackSlab(const uint8_t* blocks, size_t block_bytes, size_t chunks, __m512i* codes) {
  const __m512i three = _mm512_set1_epi8(3);
  for (size_t c = 0; c < chunks; ++c) {
    for (int b = 0; b < kGemmBlocks; ++b) {
      const __m512i v = _mm512_loadu_si512(blocks + b * block_bytes + c * A8Layout::kChunkBytes);
      #pragma GCC unroll 4
      for (int g = 0; g < 4; ++g) {
        codes[(c * 4 + g) * kGemmBlocks + b] =
            _mm512_and_si512(g == 0 ? v : _mm512_srli_epi16(v, 2 * g), three);
      }
    }
  }
}

// Where one slab's sums for activation rows [i0, i0 + MR) start and end: the first slab starts them at zero and
// the last writes y (int32 total minus the row's sum, times its scale); in between they wait in `acc`.
struct SlabEnds {
  bool first, last;
  const A8Layout* l;
  const A8Rows* rows;
  size_t r0, row_end;
  float* y;
};

// acc[i][b] += Σ over the slab's chunks of codes · q for activation rows [i0, i0 + MR) (see SlabEnds).
template <int MR>
void SlabRows(const __m512i* codes, size_t chunks, size_t i0, const int8_t* q, size_t stride, __m512i* acc,
              const SlabEnds& ends) {
  __m512i a[MR][kGemmBlocks];
  #pragma GCC unroll 4
  for (int i = 0; i < MR; ++i) {
    #pragma GCC unroll 4
    for (int b = 0; b < kGemmBlocks; ++b) {
      a[i][b] = ends.first ? _mm512_setzero_si512() : acc[(i0 + i) * kGemmBlocks + b];
    }
  }
  for (size_t c = 0; c < chunks; ++c, q += A8Layout::kChunk) {
    #pragma GCC unroll 4
    for (int g = 0; g < 4; ++g) {
      const __m512i* cg = codes + (c * 4 + g) * kGemmBlocks;
      #pragma GCC unroll 4
      for (int i = 0; i < MR; ++i) {
        const __m512i x = Broadcast4(q + i * stride + 4 * g);
        #pragma GCC unroll 4
        for (int b = 0; b < kGemmBlocks; ++b) a[i][b] = _mm512_dpbusd_epi32(a[i][b], cg[b], x);
      }
    }
  }
  #pragma GCC unroll 4
  for (int i = 0; i < MR; ++i) {
    if (!ends.last) {
      #pragma GCC unroll 4
      for (int b = 0; b < kGemmBlocks; ++b) acc[(i0 + i) * kGemmBlocks + b] = a[i][b];
      continue;
    }
    const __m512i sum = _mm512_set1_epi32(ends.rows->sum[i0 + i]);
    const __m512 scale = _mm512_set1_ps(ends.rows->scale[i0 + i]);
    #pragma GCC unroll 4
    for (int b = 0; b < kGemmBlocks; ++b) {
      const size_t first = ends.r0 + b * A8Layout::kRows;
      _mm512_mask_storeu_ps(ends.y + (i0 + i) * ends.l->n + first, RowMask(ends.row_end - first),
                            _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(a[i][b], sum)), scale));
    }
  }
}

// kGemmBlocks blocks starting at output row r0 against all m activation rows.
void GemmBlocks(const A8Layout& l, const uint8_t* packed, const A8Rows& rows, size_t m, size_t r0,
                size_t row_end, float* y) {
  // Per thread, grown once: the slab's codes and, when K spans several slabs, the int32 sums of every
  // (row, block) between them, in 64-byte aligned lines (a vector of __m512i itself would drop the type's
  // attributes).
  struct alignas(64) Line {
    int32_t lanes[16];
  };
  thread_local std::vector<Line> code_lines, acc_lines;
  code_lines.resize(kSlabChunks * 4 * kGemmBlocks);
  if (l.chunks > kSlabChunks && acc_lines.size() < m * kGemmBlocks) acc_lines.resize(m * kGemmBlocks);
  __m512i* codes = reinterpret_cast<__m512i*>(code_lines.data());  // __m512i may alias anything
  __m512i* acc = reinterpret_cast<__m512i*>(acc_lines.data());
  const uint8_t* blocks = l.block(packed, r0);
  for (size_t c0 = 0; c0 < l.chunks; c0 += kSlabChunks) {
    const size_t chunks = l.chunks - c0 < kSlabChunks ? l.chunks - c0 : kSlabChunks;
    UnpackSlab(blocks + c0 * A8Layout::kChunkBytes, l.block_bytes(), chunks, codes);
    const SlabEnds ends{c0 == 0, c0 + chunks == l.chunks, &l, &rows, r0, row_end, y};
    const int8_t* q = rows.q + c0 * A8Layout::kChunk;
    size_t i = 0;
    for (; i + 4 <= m; i += 4) SlabRows<4>(codes, chunks, i, q + i * rows.stride, rows.stride, acc, ends);
    for (; i < m; ++i) SlabRows<1>(codes, chunks, i, q + i * rows.stride, rows.stride, acc, ends);
  }
}

}  // namespace

void A8DotAvx512Vnni(const A8Layout& layout, const uint8_t* packed, const A8Rows& rows, size_t m,
                     size_t row_begin, size_t row_end, float* y) {
  constexpr size_t kTileRows = 4 * A8Layout::kRows;
  size_t r0 = row_begin;
  // With several activation rows, four blocks at a time (their weights, K bytes, stay in L1 while
  // every row passes over them; from 8 rows on, unpacked once per slab for all of them). A single
  // row streams one block at a time: it is bound by memory, and four streams run slower than one.
  if (m >= 8) {
    for (; r0 + kTileRows <= row_end; r0 += kTileRows) GemmBlocks(layout, packed, rows, m, r0, row_end, y);
  } else if (m >= 4) {
    for (; r0 + kTileRows <= row_end; r0 += kTileRows) {
      Blocks<4>(layout, packed, rows, m, r0, row_end, y);
    }
  }
  for (; r0 < row_end; r0 += A8Layout::kRows) Blocks<1>(layout, packed, rows, m, r0, row_end, y);
}

}  // namespace internal
}  // namespace tvlm
