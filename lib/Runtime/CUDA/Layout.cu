//===- Layout.cu - Strided copies (concatenation) and padding -------------===//

#include "CudaRuntime.h"

using namespace blpa::cuda;

namespace {

/// Dimensions of a padding, passed by value (ONNX tensors have few).
constexpr int maxPadRank = 8;
struct PadShape {
  int rank;
  int64_t in[maxPadRank], out[maxPadRank], begin[maxPadRank];
};

/// One thread per output element: the input element it copies, or `value`.
__global__ void __launch_bounds__(blockThreads)
    padKernel(const float *x, float *y, int64_t numel, PadShape shape,
              float value) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < numel;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t rest = i, source = 0, stride = 1;
    bool inside = true;
    for (int d = shape.rank - 1; d >= 0; --d) {
      int64_t at = rest % shape.out[d] - shape.begin[d];
      rest /= shape.out[d];
      inside = inside && at >= 0 && at < shape.in[d];
      source += at * stride;
      stride *= shape.in[d];
    }
    y[i] = inside ? x[source] : value;
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

void blpa_pad(blpa_context *ctx, const float *x, float *y, int64_t rank,
              const int64_t *inDims, const int64_t *outDims,
              const int64_t *begin, double value) {
  if (rank < 1 || rank > maxPadRank)
    failf("blpa_pad: rank %lld (1 to %d supported)", (long long)rank,
          maxPadRank);
  PadShape shape{int(rank), {}, {}, {}};
  int64_t numel = 1;
  for (int64_t d = 0; d < rank; ++d) {
    shape.in[d] = inDims[d];
    shape.out[d] = outDims[d];
    shape.begin[d] = begin[d];
    numel *= outDims[d];
  }
  if (numel == 0)
    return;
  padKernel<<<gridFor(numel), blockThreads, 0, runtimeOf(ctx).stream>>>(
      x, y, numel, shape, float(value));
  checkLaunch("blpa_pad");
}

} // extern "C"
