//===- Layout.cpp - Strided copies, padding and transposition -------------===//

#include "CpuRuntime.h"

#include "../Common/PadIndex.h"
#include "../Common/TransposeShape.h"
#include "../Common/TriluMask.h"

#include <algorithm>
#include <cstring>

using namespace blpa::cpu;

extern "C" {

void blpa_copy_strided(blpa_context *, const float *src, float *dst,
                       int64_t rows, int64_t rowElems, int64_t srcStride,
                       int64_t dstStride, int64_t srcOffset,
                       int64_t dstOffset) {
  if (rows <= 0 || rowElems <= 0)
    return;
  // Long rows are split into blocks too, so one row still uses every thread.
  int64_t blocks = (rowElems + elementBlock - 1) / elementBlock;
  parallelFor(rows * blocks, [&](int64_t item) {
    int64_t row = item / blocks, begin = item % blocks * elementBlock;
    int64_t len = std::min(elementBlock, rowElems - begin);
    std::memcpy(dst + dstOffset + row * dstStride + begin,
                src + srcOffset + row * srcStride + begin,
                size_t(len) * sizeof(float));
  });
}

/// Reflect or edge padding: each output row is one input row (found per
/// dimension by padSource) with its ends mirrored or repeated.
static void padBorders(const float *x, float *y, int64_t rank,
                       const int64_t *inDims, const int64_t *outDims,
                       const int64_t *begin, int64_t mode) {
  int64_t inner = outDims[rank - 1], n = inDims[rank - 1], rows = 1;
  for (int64_t d = 0; d + 1 < rank; ++d)
    rows *= outDims[d];
  int64_t lastBegin = begin[rank - 1];
  parallelFor(rows, [&](int64_t row) {
    int64_t inRow = 0, rest = row;
    for (int64_t d = rank - 2, stride = 1; d >= 0; --d) {
      inRow += blpa::padSource(rest % outDims[d] - begin[d], inDims[d], mode) *
               stride;
      rest /= outDims[d];
      stride *= inDims[d];
    }
    const float *in = x + inRow * n;
    float *out = y + row * inner;
    for (int64_t j = 0; j < lastBegin; ++j)
      out[j] = in[blpa::padSource(j - lastBegin, n, mode)];
    std::copy(in, in + n, out + lastBegin);
    for (int64_t j = lastBegin + n; j < inner; ++j)
      out[j] = in[blpa::padSource(j - lastBegin, n, mode)];
  });
}

void blpa_pad(blpa_context *, const float *x, float *y, int64_t rank,
              const int64_t *inDims, const int64_t *outDims,
              const int64_t *begin, int64_t mode, double value,
              const float *valueAt) {
  if (rank < 1)
    failf("blpa_pad: rank %lld", (long long)rank);
  if (mode == BLPA_PAD_REFLECT || mode == BLPA_PAD_EDGE)
    return padBorders(x, y, rank, inDims, outDims, begin, mode);
  if (mode != BLPA_PAD_CONSTANT)
    failf("blpa_pad: unknown mode %lld", (long long)mode);
  float fill = valueAt ? *valueAt : float(value);
  int64_t inner = outDims[rank - 1], rows = 1;
  for (int64_t d = 0; d + 1 < rank; ++d)
    rows *= outDims[d];
  // Each output row is the fill value around one clipped input row (or
  // the fill alone when the row lies outside x).
  int64_t lastBegin = begin[rank - 1];
  int64_t from = std::max<int64_t>(0, lastBegin);
  int64_t to = std::min(inner, inDims[rank - 1] + lastBegin);
  parallelFor(rows, [&](int64_t row) {
    float *out = y + row * inner;
    int64_t inRow = 0, rest = row;
    bool inside = true;
    for (int64_t d = rank - 2, stride = 1; d >= 0; --d) {
      int64_t i = rest % outDims[d] - begin[d];
      rest /= outDims[d];
      inside = inside && i >= 0 && i < inDims[d];
      inRow += i * stride;
      stride *= inDims[d];
    }
    if (!inside || from >= to) {
      std::fill(out, out + inner, fill);
      return;
    }
    std::fill(out, out + from, fill);
    std::copy(x + inRow * inDims[rank - 1] + from - lastBegin,
              x + inRow * inDims[rank - 1] + to - lastBegin, out + from);
    std::fill(out + to, out + inner, fill);
  });
}

void blpa_pad_grad(blpa_context *, const float *dy, float *dx, int64_t rank,
                   const int64_t *inDims, const int64_t *outDims,
                   const int64_t *begin, int64_t mode) {
  if (rank < 1 || rank > blpa::maxPadRank)
    failf("blpa_pad_grad: rank %lld (1 to %d supported)", (long long)rank,
          blpa::maxPadRank);
  if (mode < BLPA_PAD_CONSTANT || mode > BLPA_PAD_EDGE)
    failf("blpa_pad_grad: unknown mode %lld", (long long)mode);
  int64_t numel = 1;
  for (int64_t d = 0; d < rank; ++d)
    numel *= inDims[d];
  parallelBlocks(numel, [&](int64_t first, int64_t last) {
    for (int64_t i = first; i < last; ++i)
      dx[i] = blpa::padGradAt(dy, i, int(rank), inDims, outDims, begin, mode);
  });
}

void blpa_trilu(blpa_context *, const float *x, float *y, int64_t batch,
                int64_t rows, int64_t cols, int64_t k, int64_t upper) {
  if (batch < 0 || rows < 0 || cols < 0)
    failf("blpa_trilu: negative shape [%lld, %lld, %lld]", (long long)batch,
          (long long)rows, (long long)cols);
  parallelFor(batch * rows, [&](int64_t r) {
    int64_t row = r % rows;
    const float *in = x + r * cols;
    float *out = y + r * cols;
    for (int64_t col = 0; col < cols; ++col)
      out[col] = blpa::triluKeeps(row, col, k, upper != 0) ? in[col] : 0.0f;
  });
}

void blpa_transpose(blpa_context *, const float *x, float *y, int64_t rank,
                    const int64_t *inDims, const int64_t *perm) {
  if (const char *error = blpa::transposeArgumentError(rank, perm))
    failf("blpa_transpose: %s", error);
  int64_t numel = blpa::transposeElementCount(rank, inDims);
  if (numel <= 0)
    return;
  blpa::MergedTranspose t = blpa::mergeTranspose(rank, inDims, perm);
  int64_t r = t.rank();
  std::vector<int64_t> inStrides = t.inStrides(), outDims(r), from(r);
  for (int64_t d = 0; d < r; ++d) {
    outDims[d] = t.outDim(d);
    from[d] = inStrides[t.perm[d]]; // x's stride along output dimension d
  }
  // x's offset of the element at y's index `index`.
  auto sourceOf = [&](const std::vector<int64_t> &index) {
    int64_t offset = 0;
    for (int64_t d = 0; d < r; ++d)
      offset += index[d] * from[d];
    return offset;
  };
  // Sets `index` to the row-major position `at` over y's dimensions `dims`
  // (the others 0).
  auto unflatten = [&](int64_t at, const std::vector<int64_t> &dims,
                       std::vector<int64_t> &index) {
    std::fill(index.begin(), index.end(), 0);
    for (size_t k = dims.size(); k-- > 0;) {
      index[dims[k]] = at % outDims[dims[k]];
      at /= outDims[dims[k]];
    }
  };

  if (t.perm[r - 1] == r - 1) {
    // The innermost dimension stays: y is rows of x, each copied whole.
    // Work items are blocks of about elementBlock elements: several short
    // rows, or a part of a long one.
    int64_t inner = outDims[r - 1], rows = numel / inner;
    int64_t rowsPerItem = std::max<int64_t>(1, elementBlock / inner);
    int64_t parts = (inner + elementBlock - 1) / elementBlock;
    int64_t items = (rows + rowsPerItem - 1) / rowsPerItem * parts;
    std::vector<int64_t> rowDims;
    for (int64_t d = 0; d + 1 < r; ++d)
      rowDims.push_back(d);
    parallelFor(items, [&](int64_t item) {
      int64_t part = item % parts, firstRow = item / parts * rowsPerItem;
      int64_t begin = part * elementBlock;
      int64_t len = std::min(inner - begin, parts > 1 ? elementBlock : inner);
      int64_t lastRow = std::min(rows, firstRow + rowsPerItem);
      std::vector<int64_t> index(r);
      unflatten(firstRow, rowDims, index);
      for (int64_t row = firstRow; row < lastRow; ++row) {
        std::memcpy(y + row * inner + begin, x + sourceOf(index) + begin,
                    size_t(len) * sizeof(float));
        // The next row's index, the last row dimension fastest.
        for (int64_t d = r - 2; d >= 0 && ++index[d] == outDims[d]; --d)
          index[d] = 0;
      }
    });
    return;
  }

  // Otherwise y's innermost dimension (a, x's stride strideA) and x's
  // innermost one (b, y's dimension q) form a 2-D transposition for every
  // index of the other dimensions, done in tiles that stay in the cache:
  // y[dst + b * strideQ + a] = x[src + a * strideA + b].
  int64_t q = 0;
  while (t.perm[q] != r - 1)
    ++q;
  int64_t lenA = outDims[r - 1], lenB = outDims[q];
  int64_t strideA = from[r - 1], strideQ = 1;
  for (int64_t d = r - 1; d > q; --d)
    strideQ *= outDims[d];
  int64_t tileA = std::min<int64_t>(lenA, 64);
  int64_t tileB = std::min<int64_t>(lenB, std::max<int64_t>(64, 4096 / tileA));
  tileA = std::min<int64_t>(lenA, std::max<int64_t>(tileA, 4096 / tileB));
  int64_t tilesA = (lenA + tileA - 1) / tileA;
  int64_t tilesB = (lenB + tileB - 1) / tileB;
  std::vector<int64_t> outerDims;
  for (int64_t d = 0; d + 1 < r; ++d)
    if (d != q)
      outerDims.push_back(d);
  std::vector<int64_t> outStrides(r, 1);
  for (int64_t d = r - 1; d > 0; --d)
    outStrides[d - 1] = outStrides[d] * outDims[d];
  // Small tiles (both dimensions short) come several outer indices to an
  // item.
  int64_t outer = numel / (lenA * lenB);
  int64_t outerPerItem = std::max<int64_t>(1, 4096 / (tileA * tileB));
  int64_t items = (outer + outerPerItem - 1) / outerPerItem * tilesA * tilesB;
  parallelFor(items, [&](int64_t item) {
    int64_t b0 = item % tilesB * tileB;
    int64_t a0 = item / tilesB % tilesA * tileA;
    int64_t first = item / (tilesA * tilesB) * outerPerItem;
    int64_t last = std::min(outer, first + outerPerItem);
    int64_t aEnd = std::min(lenA, a0 + tileA);
    int64_t bEnd = std::min(lenB, b0 + tileB);
    std::vector<int64_t> index(r);
    unflatten(first, outerDims, index);
    for (int64_t o = first; o < last; ++o) {
      int64_t src = sourceOf(index), dst = 0;
      for (int64_t d = 0; d < r; ++d)
        dst += index[d] * outStrides[d];
      for (int64_t b = b0; b < bEnd; ++b) {
        float *out = y + dst + b * strideQ;
        const float *in = x + src + b;
        for (int64_t a = a0; a < aEnd; ++a)
          out[a] = in[a * strideA];
      }
      // The next outer index, its last dimension fastest.
      for (size_t k = outerDims.size(); k-- > 0;) {
        int64_t d = outerDims[k];
        if (++index[d] < outDims[d])
          break;
        index[d] = 0;
      }
    }
  });
}

} // extern "C"
