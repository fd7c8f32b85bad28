//===- Layout.cu - Strided copies, padding and transposition --------------===//

#include "CudaRuntime.h"

#include "../Common/PadIndex.h"
#include "../Common/TransposeShape.h"
#include "../Common/TriluMask.h"

using namespace blpa;
using namespace blpa::cuda;

namespace {

/// Dimensions of a padding, passed by value (ONNX tensors have few).
struct PadShape {
  int rank;
  int64_t in[maxPadRank], out[maxPadRank], begin[maxPadRank];
};

/// One thread per output element: the input element it copies
/// (PadIndex.h), or the value, *valueAt when given (read when the kernel
/// runs, so that a replayed graph sees the current input).
__global__ void __launch_bounds__(blockThreads)
    padKernel(const float *x, float *y, int64_t numel, PadShape shape,
              int64_t mode, float value, const float *valueAt) {
  if (valueAt)
    value = *valueAt;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < numel;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t rest = i, source = 0, stride = 1;
    bool inside = true;
    for (int d = shape.rank - 1; d >= 0; --d) {
      int64_t at =
          padSource(rest % shape.out[d] - shape.begin[d], shape.in[d], mode);
      rest /= shape.out[d];
      inside = inside && at >= 0;
      source += at * stride;
      stride *= shape.in[d];
    }
    y[i] = inside ? x[source] : value;
  }
}

/// One thread per element of dx, gathering the elements of dy that copy it
/// in the CPU's order: deterministic, no atomics.
__global__ void __launch_bounds__(blockThreads)
    padGradKernel(const float *dy, float *dx, int64_t numel, PadShape shape,
                  int64_t mode) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < numel;
       i += int64_t(gridDim.x) * blockDim.x)
    dx[i] =
        padGradAt(dy, i, shape.rank, shape.in, shape.out, shape.begin, mode);
}

/// The shape of a blpa_pad or blpa_pad_grad call, and its element count
/// over `dims` (outDims or inDims).
PadShape padShapeOf(const char *kernel, int64_t rank, const int64_t *inDims,
                    const int64_t *outDims, const int64_t *begin, int64_t mode,
                    int64_t &numel, const int64_t *dims) {
  if (rank < 1 || rank > maxPadRank)
    failf("%s: rank %lld (1 to %d supported)", kernel, (long long)rank,
          maxPadRank);
  if (mode < BLPA_PAD_CONSTANT || mode > BLPA_PAD_EDGE)
    failf("%s: unknown mode %lld", kernel, (long long)mode);
  PadShape shape{int(rank), {}, {}, {}};
  numel = 1;
  for (int64_t d = 0; d < rank; ++d) {
    shape.in[d] = inDims[d];
    shape.out[d] = outDims[d];
    shape.begin[d] = begin[d];
    numel *= dims[d];
  }
  return shape;
}

/// A transposition's merged dimensions (TransposeShape.h), passed by value:
/// y's sizes and x's stride along each of y's dimensions.
constexpr int maxTransposeRank = 8;
struct TransposeShape {
  int rank;
  int64_t out[maxTransposeRank], from[maxTransposeRank];
};

/// One thread per output element, reading x where it is: for transpositions
/// whose innermost dimension stays (each row is read and written
/// contiguously) or where a tile would be mostly empty.
__global__ void __launch_bounds__(blockThreads)
    transposeKernel(const float *x, float *y, int64_t numel,
                    TransposeShape shape) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < numel;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t rest = i, source = 0;
    for (int d = shape.rank - 1; d >= 0; --d) {
      source += rest % shape.out[d] * shape.from[d];
      rest /= shape.out[d];
    }
    y[i] = x[source];
  }
}

/// The 2-D transposition of y's innermost dimension (a, x's stride strideA)
/// with x's innermost one (b, y's stride strideB) for every index of the
/// other dimensions (outer: y's sizes and x's strides over the dimensions
/// outside a and b, and y's own strides), through shared memory so that
/// both x and y are accessed along rows: block-stride over 32x32 tiles.
constexpr int tileSize = 32, tileRows = blockThreads / tileSize;
struct TileShape {
  int64_t lenA, lenB, strideA, strideB, tilesA, tilesB, tiles;
  int outerRank;
  int64_t outer[maxTransposeRank], from[maxTransposeRank], to[maxTransposeRank];
};

__global__ void __launch_bounds__(blockThreads)
    transposeTilesKernel(const float *x, float *y, TileShape shape) {
  __shared__ float tile[tileSize][tileSize + 1]; // +1: no bank conflicts
  int lane = threadIdx.x % tileSize, row = threadIdx.x / tileSize;
  for (int64_t t = blockIdx.x; t < shape.tiles; t += gridDim.x) {
    int64_t b0 = t % shape.tilesB * tileSize;
    int64_t a0 = t / shape.tilesB % shape.tilesA * tileSize;
    int64_t rest = t / (shape.tilesA * shape.tilesB), src = 0, dst = 0;
    for (int d = shape.outerRank - 1; d >= 0; --d) {
      int64_t at = rest % shape.outer[d];
      rest /= shape.outer[d];
      src += at * shape.from[d];
      dst += at * shape.to[d];
    }
    // Read x along b: tile[a - a0][b - b0].
    for (int j = row; j < tileSize; j += tileRows) {
      int64_t a = a0 + j, b = b0 + lane;
      if (a < shape.lenA && b < shape.lenB)
        tile[j][lane] = x[src + a * shape.strideA + b];
    }
    __syncthreads();
    // Write y along a.
    for (int j = row; j < tileSize; j += tileRows) {
      int64_t a = a0 + lane, b = b0 + j;
      if (a < shape.lenA && b < shape.lenB)
        y[dst + b * shape.strideB + a] = tile[lane][j];
    }
    __syncthreads(); // before the next tile overwrites this one
  }
}

__global__ void __launch_bounds__(blockThreads)
    triluKernel(const float *x, float *y, int64_t numel, int64_t rows,
                int64_t cols, int64_t k, bool upper) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < numel;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t col = i % cols, row = i / cols % rows;
    y[i] = triluKeeps(row, col, k, upper) ? x[i] : 0.0f;
  }
}

} // namespace

extern "C" {

// A 2-D copy: cudaMemcpy2DAsync moves the rows at their pitches, and is
// recorded into a CUDA graph like a kernel.
void blpa_copy_strided(blpa_context *ctx, const float *src, float *dst,
                       int64_t rows, int64_t rowElems, int64_t srcStride,
                       int64_t dstStride, int64_t srcOffset,
                       int64_t dstOffset) {
  if (rows <= 0 || rowElems <= 0)
    return;
  const size_t f = sizeof(float);
  // cudaMemcpy2DAsync refuses pitches over 2^31 - 1 bytes (the devices'
  // cudaDevAttrMaxPitch), which an axis-0 concatenation or slice of a
  // tensor over 2 GiB reaches: rows that far apart (a few at most fit in
  // memory) are copied one by one.
  const size_t maxPitch = 2147483647;
  if (size_t(srcStride) * f > maxPitch || size_t(dstStride) * f > maxPitch) {
    for (int64_t r = 0; r < rows; ++r)
      check(cudaMemcpyAsync(dst + dstOffset + r * dstStride,
                            src + srcOffset + r * srcStride,
                            size_t(rowElems) * f, cudaMemcpyDeviceToDevice,
                            runtimeOf(ctx).stream),
            "blpa_copy_strided");
    return;
  }
  check(cudaMemcpy2DAsync(dst + dstOffset, size_t(dstStride) * f,
                          src + srcOffset, size_t(srcStride) * f,
                          size_t(rowElems) * f, size_t(rows),
                          cudaMemcpyDeviceToDevice, runtimeOf(ctx).stream),
        "blpa_copy_strided");
}

void blpa_trilu(blpa_context *ctx, const float *x, float *y, int64_t batch,
                int64_t rows, int64_t cols, int64_t k, int64_t upper) {
  if (batch < 0 || rows < 0 || cols < 0)
    failf("blpa_trilu: negative shape [%lld, %lld, %lld]", (long long)batch,
          (long long)rows, (long long)cols);
  int64_t numel = batch * rows * cols;
  if (numel == 0)
    return;
  triluKernel<<<gridFor(numel), blockThreads, 0, runtimeOf(ctx).stream>>>(
      x, y, numel, rows, cols, k, upper != 0);
  checkLaunch("blpa_trilu");
}

void blpa_pad(blpa_context *ctx, const float *x, float *y, int64_t rank,
              const int64_t *inDims, const int64_t *outDims,
              const int64_t *begin, int64_t mode, double value,
              const float *valueAt) {
  int64_t numel = 0;
  PadShape shape = padShapeOf("blpa_pad", rank, inDims, outDims, begin, mode,
                              numel, outDims);
  if (numel == 0)
    return;
  padKernel<<<gridFor(numel), blockThreads, 0, runtimeOf(ctx).stream>>>(
      x, y, numel, shape, mode, float(value), valueAt);
  checkLaunch("blpa_pad");
}

void blpa_pad_grad(blpa_context *ctx, const float *dy, float *dx, int64_t rank,
                   const int64_t *inDims, const int64_t *outDims,
                   const int64_t *begin, int64_t mode) {
  int64_t numel = 0;
  PadShape shape = padShapeOf("blpa_pad_grad", rank, inDims, outDims, begin,
                              mode, numel, inDims);
  if (numel == 0)
    return;
  padGradKernel<<<gridFor(numel), blockThreads, 0, runtimeOf(ctx).stream>>>(
      dy, dx, numel, shape, mode);
  checkLaunch("blpa_pad_grad");
}

void blpa_transpose(blpa_context *ctx, const float *x, float *y, int64_t rank,
                    const int64_t *inDims, const int64_t *perm) {
  if (const char *error = blpa::transposeArgumentError(rank, perm))
    failf("blpa_transpose: %s", error);
  int64_t numel = blpa::transposeElementCount(rank, inDims);
  if (numel <= 0)
    return;
  blpa::MergedTranspose t = blpa::mergeTranspose(rank, inDims, perm);
  int r = int(t.rank());
  if (r > maxTransposeRank)
    failf("blpa_transpose: %d dimensions after merging (up to %d supported)", r,
          maxTransposeRank);
  std::vector<int64_t> inStrides = t.inStrides();
  TransposeShape shape{r, {}, {}};
  for (int d = 0; d < r; ++d) {
    shape.out[d] = t.outDim(d);
    shape.from[d] = inStrides[t.perm[d]];
  }
  cudaStream_t stream = runtimeOf(ctx).stream;
  // y's dimension q is x's innermost; a tile pays when both it and y's
  // innermost dimension fill half a tile.
  int q = 0;
  while (t.perm[q] != r - 1)
    ++q;
  int64_t lenA = shape.out[r - 1], lenB = shape.out[q];
  if (q == r - 1 || lenA < tileSize / 2 || lenB < tileSize / 2) {
    transposeKernel<<<gridFor(numel), blockThreads, 0, stream>>>(x, y, numel,
                                                                 shape);
    checkLaunch("blpa_transpose");
    return;
  }
  TileShape tiles{};
  tiles.lenA = lenA;
  tiles.lenB = lenB;
  tiles.strideA = shape.from[r - 1];
  tiles.tilesA = (lenA + tileSize - 1) / tileSize;
  tiles.tilesB = (lenB + tileSize - 1) / tileSize;
  int64_t stride = 1;
  std::vector<int64_t> outStrides(r);
  for (int d = r - 1; d >= 0; --d) {
    outStrides[d] = stride;
    stride *= shape.out[d];
  }
  tiles.strideB = outStrides[q];
  int64_t outer = 1;
  for (int d = 0; d + 1 < r; ++d) {
    if (d == q)
      continue;
    tiles.outer[tiles.outerRank] = shape.out[d];
    tiles.from[tiles.outerRank] = shape.from[d];
    tiles.to[tiles.outerRank] = outStrides[d];
    ++tiles.outerRank;
    outer *= shape.out[d];
  }
  tiles.tiles = outer * tiles.tilesA * tiles.tilesB;
  transposeTilesKernel<<<gridFor(tiles.tiles, 1), blockThreads, 0, stream>>>(
      x, y, tiles);
  checkLaunch("blpa_transpose");
}

} // extern "C"
