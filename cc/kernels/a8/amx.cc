// W2A8 prefill with Intel AMX: one TDPBSUD multiplies a 16 × 64 tile of int8 activations by a
// 64 × 16 tile of unsigned 2-bit codes (t + 1, one byte each) into 16 × 16 int32 sums — 16 384
// multiply-adds, against vpdpbusd's 64. Decode (fewer than 16 rows) stays on the AVX-512 VNNI loop:
// it is bound by reading the weights, not by arithmetic.
//
// The layout's chunks (layout.h) already are AMX's B operand: shifting a 64-byte chunk right by 2g
// and masking leaves, in 32-bit lane r, output row r's codes of 4 consecutive inputs — one row of a
// B tile. Four chunks × four shifts are one B tile (64 inputs × 16 output rows).

#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "cc/kernels/a8/isa.h"
#include "cc/kernels/a8/layout.h"

namespace tvlm {
namespace internal {
namespace {

constexpr size_t kTileRows = 16;        // activation rows per tile (and rows of a B tile)
constexpr size_t kTileChunks = 4;       // layout chunks (16 inputs each) per tile: 64 inputs
constexpr int kBlocks = 4;              // 16-row output blocks per group: tiles 0-3 accumulate
constexpr size_t kCodeLine = 64;        // bytes of one B-tile row
// The weights are read once per call, 4 blocks (streams) at a time; prefetching each stream this far
// ahead keeps more lines in flight (kernel_bench, 1 thread: 576 × 1536 at M = 16 0.064 → 0.053 ms,
// 2048 × 8192 at M = 32 0.92 → 0.88 ms).
constexpr size_t kPrefetchBytes = 1024;
constexpr size_t kSlabTiles = 8;        // K tiles unpacked at a time: 8 × 4 blocks × 1 KB = 32 KB

// Palette 1, every tile 16 rows × 64 bytes (SlabRows says what each holds).
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

const TileConfig& Config() {
  static const TileConfig config = [] {
    TileConfig c;
    for (int t = 0; t < 8; ++t) {
      c.colsb[t] = 64;
      c.rows[t] = kTileRows;
    }
    return c;
  }();
  return config;
}

inline __mmask16 RowMask(size_t valid) {
  return valid >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << valid) - 1);
}

// Chunks [c0, c1) of kBlocks blocks from output row r0, as B tiles: line (c * 4 + g) * kBlocks + b
// holds shift g of chunk c0 + c of block b, so block b's tile at chunk 4t starts at line
// 16 t · kBlocks + b with a stride of kBlocks lines. Chunks past c1 up to `padded` are code 0: they
// multiply whatever activation bytes a tile reads there (past k) by 0.
void UnpackSlab(const A8Layout& l, const uint8_t* blocks, size_t c0, size_t c1, size_t padded,
                uint8_t* codes) {
  const __m512i three = _mm512_set1_epi8(3);
  for (size_t c = c0; c < c1; ++c) {
    for (int b = 0; b < kBlocks; ++b) {
      const uint8_t* chunk = blocks + b * l.block_bytes() + c * A8Layout::kChunkBytes;
      _mm_prefetch(reinterpret_cast<const char*>(chunk) + kPrefetchBytes, _MM_HINT_T0);
      const __m512i v = _mm512_loadu_si512(chunk);
      for (int g = 0; g < 4; ++g) {
        _mm512_store_si512(codes + (((c - c0) * 4 + g) * kBlocks + b) * kCodeLine,
                           _mm512_and_si512(g == 0 ? v : _mm512_srli_epi16(v, 2 * g), three));
      }
    }
  }
  std::memset(codes + (c1 - c0) * 4 * kBlocks * kCodeLine, 0, (padded - (c1 - c0)) * 4 * kBlocks * kCodeLine);
}

// The int32 sums of MT × 16 activation rows (from i0) × blocks b0 and b0 + 1, in tiles 2i + j
// (row tile i, block j), += the slab's `tiles` tiles of codes times the activations from input
// t0 · 64. Activations in tiles 4-5, codes in 6-7: each loaded tile feeds two products, and the
// four products of a step are independent. acc: per row tile kAccRows int32, block b's 16 × 16 at
// b · kAccTile.
constexpr size_t kAccTile = kTileRows * 16;
constexpr size_t kAccRows = kBlocks * kAccTile;

template <int MT>
void SlabRows(const uint8_t* codes, size_t tiles, const A8Rows& rows, size_t i0, size_t t0, int b0,
              bool first, int32_t* acc) {
  constexpr size_t kStride = kBlocks * kCodeLine;
  constexpr size_t kTileBytes = kTileChunks * 4 * kStride;
  int32_t* c00 = acc + b0 * kAccTile;
  int32_t* c10 = c00 + kAccRows;
  if (first) {
    _tile_zero(0);
    _tile_zero(1);
    if (MT == 2) {
      _tile_zero(2);
      _tile_zero(3);
    }
  } else {
    _tile_loadd(0, c00, 64);
    _tile_loadd(1, c00 + kAccTile, 64);
    if (MT == 2) {
      _tile_loadd(2, c10, 64);
      _tile_loadd(3, c10 + kAccTile, 64);
    }
  }
  const int8_t* q = rows.q + i0 * rows.stride + t0 * kTileChunks * A8Layout::kChunk;
  const uint8_t* c = codes + b0 * kCodeLine;
  for (size_t t = 0; t < tiles; ++t, q += kTileChunks * A8Layout::kChunk, c += kTileBytes) {
    _tile_loadd(4, q, rows.stride);
    _tile_loadd(6, c, kStride);
    _tile_loadd(7, c + kCodeLine, kStride);
    _tile_dpbsud(0, 4, 6);
    _tile_dpbsud(1, 4, 7);
    if (MT == 2) {
      _tile_loadd(5, q + kTileRows * rows.stride, rows.stride);
      _tile_dpbsud(2, 5, 6);
      _tile_dpbsud(3, 5, 7);
    }
  }
  _tile_stored(0, c00, 64);
  _tile_stored(1, c00 + kAccTile, 64);
  if (MT == 2) {
    _tile_stored(2, c10, 64);
    _tile_stored(3, c10 + kAccTile, 64);
  }
}

// y for rows [i0, i0 + 16) of the group at r0: scale · (Σ codes · q − Σ q).
void Epilogue(const A8Layout& l, const int32_t* acc, const A8Rows& rows, size_t i0, size_t r0,
              size_t row_end, float* y) {
  for (size_t r = 0; r < kTileRows; ++r) {
    const __m512i sum = _mm512_set1_epi32(rows.sum[i0 + r]);
    const __m512 scale = _mm512_set1_ps(rows.scale[i0 + r]);
    for (int b = 0; b < kBlocks; ++b) {
      const __m512i total = _mm512_sub_epi32(_mm512_load_si512(acc + (b * kTileRows + r) * 16), sum);
      const size_t first = r0 + b * A8Layout::kRows;
      _mm512_mask_storeu_ps(y + (i0 + r) * l.n + first, RowMask(row_end - first),
                            _mm512_mul_ps(_mm512_cvtepi32_ps(total), scale));
    }
  }
}

}  // namespace

bool AmxInt8Usable() {
  static const bool usable = [] {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512bw") || !__builtin_cpu_supports("avx512vnni")) return false;
    unsigned eax, ebx, ecx, edx;
    __asm__("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(7), "c"(0));
    if (!((edx >> 24) & 1) || !((edx >> 25) & 1)) return false;  // AMX-TILE, AMX-INT8
    // Linux hands out the 8 KB tile state only on request (ARCH_REQ_XCOMP_PERM, XTILEDATA);
    // without it the first tile instruction faults. Granted once for the whole process.
    constexpr long kArchReqXcompPerm = 0x1023;
    constexpr long kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return usable;
}

void A8DotAmx(const A8Layout& layout, const uint8_t* packed, const A8Rows& rows, size_t m,
              size_t row_begin, size_t row_end, float* y) {
  constexpr size_t kGroupRows = kBlocks * A8Layout::kRows;
  const size_t full = m / kTileRows * kTileRows;
  if (full == 0) return A8DotAvx512Vnni(layout, packed, rows, m, row_begin, row_end, y);
  const size_t tiles = (layout.chunks + kTileChunks - 1) / kTileChunks;
  // Per thread, grown once, in 64-byte lines: one slab of codes (32 KB: stays in L1 while every
  // 16 rows pass over it) and the int32 sums of every (row, block) between slabs.
  struct alignas(64) Line {
    uint8_t bytes[kCodeLine];
  };
  thread_local std::vector<Line> code_lines, acc_lines;
  code_lines.resize(kSlabTiles * kTileChunks * 4 * kBlocks);
  acc_lines.resize(full * kBlocks);
  uint8_t* codes = code_lines.data()->bytes;
  int32_t* acc = reinterpret_cast<int32_t*>(acc_lines.data());
  // The tile configuration is per thread, and loading it clears the tiles.
  _tile_loadconfig(&Config());
  size_t r0 = row_begin;
  for (; r0 + kGroupRows <= row_end; r0 += kGroupRows) {
    const uint8_t* blocks = layout.block(packed, r0);
    for (size_t t0 = 0; t0 < tiles; t0 += kSlabTiles) {
      const size_t n_tiles = tiles - t0 < kSlabTiles ? tiles - t0 : kSlabTiles;
      const size_t c0 = t0 * kTileChunks;
      const size_t c1 = c0 + n_tiles * kTileChunks < layout.chunks ? c0 + n_tiles * kTileChunks : layout.chunks;
      UnpackSlab(layout, blocks, c0, c1, n_tiles * kTileChunks, codes);
      for (int b0 = 0; b0 < kBlocks; b0 += 2) {
        size_t i0 = 0;
        for (; i0 + 2 * kTileRows <= full; i0 += 2 * kTileRows) {
          SlabRows<2>(codes, n_tiles, rows, i0, t0, b0, t0 == 0, acc + i0 / kTileRows * kAccRows);
        }
        if (i0 < full) SlabRows<1>(codes, n_tiles, rows, i0, t0, b0, t0 == 0, acc + i0 / kTileRows * kAccRows);
      }
    }
    for (size_t i0 = 0; i0 < full; i0 += kTileRows) {
      Epilogue(layout, acc + i0 / kTileRows * kAccRows, rows, i0, r0, row_end, y);
    }
  }
  _tile_release();  // the thread's tile state back to "unused": cheaper context switches
  if (full < m) {  // the last m % 16 rows, and below the blocks' groups every row
    const A8Rows tail{rows.q + full * rows.stride, rows.scale + full, rows.sum + full, rows.offset + full,
                      rows.stride};
    A8DotAvx512Vnni(layout, packed, tail, m - full, row_begin, r0, y + full * layout.n);
  }
  if (r0 < row_end) A8DotAvx512Vnni(layout, packed, rows, m, r0, row_end, y);
}

}  // namespace internal
}  // namespace tvlm
