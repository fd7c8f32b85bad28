//===- Pooling.cu - Max, average and global average pooling --------------===//
//
// Every windowed kernel derives its windows from PoolGeometry: the forward
// kernels run one thread per output element over its clipped window, the
// gradients one thread per input element that gathers, in row-major window
// order, over the output windows covering it. The CPU runtime scatters each
// plane's windows in that same order into a zeroed plane, so the gathered
// sums are bitwise the CPU's, without atomics. Max pooling's winner (the
// first maximum in row-major order; padding never wins) comes from one
// helper, firstMax, in the forward, argmax and gradient kernels.
//
// Argmax codes are written one byte per thread (8 / bits outputs each), so
// no two threads share a byte; they are read with Packing.cuh's codeAt.
// Global average pooling is a blpa_reduce_sum_to of [planes, spatial] to
// [planes, 1].
//
//===----------------------------------------------------------------------===//

#include "CudaRuntime.h"
#include "Packing.cuh"

#include <cstdint>

using namespace blpa::cuda;

namespace {

/// A pooling window clipped to the input: rows [h0, h1), columns [w0, w1).
struct Window {
  int h0, h1, w0, w1;
  __device__ int64_t size() const { return int64_t(h1 - h0) * (w1 - w0); }
};

/// The output windows (rows [oy0, oy1], columns [ox0, ox1]) that cover one
/// input position; empty when oy0 > oy1 or ox0 > ox1.
struct Covering {
  int oy0, oy1, ox0, ox1;
};

/// An element of a tensor of [planes, rows, cols] planes.
struct PlanePos {
  int64_t plane;
  int row, col;
};

/// Pooling shape. Positions within a plane are 32-bit (checked on the
/// host); planes and flat indices are 64-bit.
struct PoolGeometry {
  int64_t planes;
  int h, w, oh, ow, kernelH, kernelW, strideH, strideW, padTop, padLeft;

  __host__ __device__ int64_t inPlane() const { return int64_t(h) * w; }
  __host__ __device__ int64_t outPlane() const { return int64_t(oh) * ow; }

  /// Top-left corner of the unclipped window (oy, ox); may be in the
  /// padding.
  __device__ int originY(int oy) const { return oy * strideH - padTop; }
  __device__ int originX(int ox) const { return ox * strideW - padLeft; }

  /// Padded positions are outside [0, h) x [0, w) and simply skipped.
  __device__ Window window(int oy, int ox) const {
    int y0 = originY(oy), x0 = originX(ox);
    return {max(y0, 0), min(y0 + kernelH, h), max(x0, 0), min(x0 + kernelW, w)};
  }

  /// ky * kernelW + kx of input position (y, x) in window (oy, ox).
  __device__ int windowPosition(int oy, int ox, int y, int x) const {
    return (y - originY(oy)) * kernelW + x - originX(ox);
  }

  /// [first, last] of the outputs along one axis whose window covers input
  /// i: origin <= i < origin + kernel with origin = o * stride - pad.
  __device__ static void covering(int i, int pad, int kernel, int stride,
                                  int outputs, int &first, int &last) {
    int lo = i + pad - kernel + 1; // o * stride must be >= lo
    first = lo <= 0 ? 0 : (lo + stride - 1) / stride;
    last = min((i + pad) / stride, outputs - 1);
  }

  __device__ Covering windowsCovering(int y, int x) const {
    Covering c;
    covering(y, padTop, kernelH, strideH, oh, c.oy0, c.oy1);
    covering(x, padLeft, kernelW, strideW, ow, c.ox0, c.ox1);
    return c;
  }
};

/// Element i of a tensor of planes of planeSize = rows * cols elements; the
/// plane division runs in Index (32 bits when every index fits).
template <typename Index>
__device__ PlanePos planePos(int64_t i, int64_t planeSize, int cols) {
  Index plane = Index(i) / Index(planeSize);
  unsigned rest = unsigned(Index(i) - plane * Index(planeSize));
  unsigned row = rest / unsigned(cols);
  return {int64_t(plane), int(row), int(rest - row * unsigned(cols))};
}

/// A window's winning input position; y is -1 for a window that lies
/// entirely in the padding.
struct Winner {
  int y, x;
  float value;
  __device__ bool none() const { return y < 0; }
};

/// The window's first maximum in row-major order, as the CPU's firstMax
/// (a NaN first in the window wins; later NaNs never do).
__device__ Winner firstMax(const float *plane, int width, const Window &win) {
  Winner best{-1, 0, 0.0f};
  for (int y = win.h0; y < win.h1; ++y)
    for (int x = win.w0; x < win.w1; ++x) {
      float v = plane[int64_t(y) * width + x];
      if (best.none() || v > best.value)
        best = {y, x, v};
    }
  return best;
}

/// Writes the max-pool output of window `out` (flat index `index`; -inf for
/// an all-padding window) and returns its winner.
__device__ Winner maxPoolWindow(const PoolGeometry &g, const float *x, float *y,
                                PlanePos out, int64_t index) {
  Winner at =
      firstMax(x + out.plane * g.inPlane(), g.w, g.window(out.row, out.col));
  y[index] = at.none() ? -INFINITY : at.value;
  return at;
}

/// The argmax code of window `out`: its winner's position in the unclipped
/// window, 0 for an all-padding window (whose gradient is skipped by
/// geometry, not by code).
__device__ unsigned argmaxCode(const PoolGeometry &g, PlanePos out, Winner at) {
  return at.none() ? 0u
                   : unsigned(g.windowPosition(out.row, out.col, at.y, at.x));
}

__device__ float avgDivisor(const PoolGeometry &g, const Window &win,
                            bool countIncludePad) {
  return float(countIncludePad ? int64_t(g.kernelH) * g.kernelW : win.size());
}

//===----------------------------------------------------------------------===//
// Kernels
//===----------------------------------------------------------------------===//

/// op(g, pos, index) for every output element.
template <typename Index, typename Op>
__global__ void __launch_bounds__(blockThreads)
    outputKernel(PoolGeometry g, Op op) {
  int64_t total = g.planes * g.outPlane();
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x)
    op(g, planePos<Index>(i, g.outPlane(), g.ow), i);
}

/// dx[i] = the sum, over the output windows covering input element i in
/// row-major order, of what op.add adds for each (the CPU's scatter order).
template <typename Index, typename Op>
__global__ void __launch_bounds__(blockThreads)
    gatherKernel(PoolGeometry g, float *dx, Op op) {
  int64_t total = g.planes * g.inPlane();
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    PlanePos in = planePos<Index>(i, g.inPlane(), g.w);
    Covering c = g.windowsCovering(in.row, in.col);
    int64_t outBase = in.plane * g.outPlane();
    float acc = 0.0f;
    for (int oy = c.oy0; oy <= c.oy1; ++oy)
      for (int ox = c.ox0; ox <= c.ox1; ++ox)
        op.add(acc, g, in, oy, ox, outBase + int64_t(oy) * g.ow + ox);
    dx[i] = acc;
  }
}

/// One thread per byte of codes: the max pool of its 8 / Bits outputs and
/// their packed argmax codes (unused tail bits 0).
template <typename Index, int Bits>
__global__ void __launch_bounds__(blockThreads)
    argmaxKernel(PoolGeometry g, const float *x, float *y, uint8_t *codes) {
  constexpr int perByte = 8 / Bits;
  int64_t total = g.planes * g.outPlane();
  int64_t bytes = (total + perByte - 1) / perByte;
  for (int64_t b = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; b < bytes;
       b += int64_t(gridDim.x) * blockDim.x) {
    unsigned byte = 0;
#pragma unroll
    for (int l = 0; l < perByte; ++l) {
      int64_t i = b * perByte + l;
      if (i >= total)
        break;
      PlanePos out = planePos<Index>(i, g.outPlane(), g.ow);
      Winner at = maxPoolWindow(g, x, y, out, i);
      byte |= argmaxCode(g, out, at) << (l * Bits);
    }
    codes[b] = uint8_t(byte);
  }
}

/// dx[i] = dy[i / spatial] / spatial.
template <typename Index>
__global__ void __launch_bounds__(blockThreads)
    spreadKernel(const float *dy, float *dx, int64_t total, int64_t spatial) {
  float divisor = float(spatial);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x)
    dx[i] = dy[int64_t(Index(i) / Index(spatial))] / divisor;
}

//===----------------------------------------------------------------------===//
// Per-window operations
//===----------------------------------------------------------------------===//

struct MaxPoolOp {
  const float *x;
  float *y;
  __device__ void operator()(const PoolGeometry &g, PlanePos out,
                             int64_t index) const {
    maxPoolWindow(g, x, y, out, index);
  }
};

struct AvgPoolOp {
  const float *x;
  float *y;
  bool countIncludePad;
  __device__ void operator()(const PoolGeometry &g, PlanePos out,
                             int64_t index) const {
    const float *plane = x + out.plane * g.inPlane();
    Window win = g.window(out.row, out.col);
    float sum = 0;
    for (int yy = win.h0; yy < win.h1; ++yy)
      for (int xx = win.w0; xx < win.w1; ++xx)
        sum += plane[int64_t(yy) * g.w + xx];
    y[index] = sum / avgDivisor(g, win, countIncludePad);
  }
};

/// dy of window (oy, ox) goes to the input position that wins it.
struct MaxPoolGradOp {
  const float *dy;
  const float *x;
  __device__ void add(float &acc, const PoolGeometry &g, PlanePos in, int oy,
                      int ox, int64_t out) const {
    Winner at = firstMax(x + in.plane * g.inPlane(), g.w, g.window(oy, ox));
    if (at.y == in.row && at.x == in.col)
      acc += dy[out];
  }
};

/// The same with the winner read from the argmax codes. Windows that cover
/// an input position are never all padding, so every code read is real.
template <int Bits> struct ArgmaxGradOp {
  const float *dy;
  const uint8_t *codes;
  __device__ void add(float &acc, const PoolGeometry &g, PlanePos in, int oy,
                      int ox, int64_t out) const {
    if (codeAt<Bits>(codes, out) ==
        uint32_t(g.windowPosition(oy, ox, in.row, in.col)))
      acc += dy[out];
  }
};

struct AvgPoolGradOp {
  const float *dy;
  bool countIncludePad;
  __device__ void add(float &acc, const PoolGeometry &g, PlanePos, int oy,
                      int ox, int64_t out) const {
    acc += dy[out] / avgDivisor(g, g.window(oy, ox), countIncludePad);
  }
};

//===----------------------------------------------------------------------===//
// Host side
//===----------------------------------------------------------------------===//

/// Calls f(Index{}) with Index = uint32_t when every index below `count`
/// fits in 31 bits, else uint64_t: 64-bit divisions are several times
/// slower.
template <typename F> void withIndexType(int64_t count, F &&f) {
  if (count < (int64_t(1) << 31))
    f(uint32_t());
  else
    f(uint64_t());
}

/// The geometry of a pooling call, after checking that positions within a
/// plane (windows included) fit the kernels' 32-bit arithmetic.
PoolGeometry geometryOf(const char *kernel, int64_t n, int64_t c, int64_t h,
                        int64_t w, int64_t oh, int64_t ow, int64_t kernelH,
                        int64_t kernelW, int64_t strideH, int64_t strideW,
                        int64_t padTop, int64_t padLeft) {
  const int64_t limit = int64_t(1) << 30;
  auto axisOk = [&](int64_t in, int64_t out, int64_t k, int64_t s,
                    int64_t pad) {
    return in >= 0 && out >= 0 && k >= 1 && s >= 1 && pad >= 0 && in < limit &&
           out < limit && k < limit && s < limit && pad < limit &&
           (out == 0 || (out - 1) * s + k < limit);
  };
  if (n < 0 || c < 0 || !axisOk(h, oh, kernelH, strideH, padTop) ||
      !axisOk(w, ow, kernelW, strideW, padLeft) ||
      h * w >= (int64_t(1) << 31) || oh * ow >= (int64_t(1) << 31))
    failf("%s: unsupported geometry: %lldx%lld input, %lldx%lld output, "
          "%lldx%lld kernel, strides %lldx%lld, pads %lldx%lld",
          kernel, (long long)h, (long long)w, (long long)oh, (long long)ow,
          (long long)kernelH, (long long)kernelW, (long long)strideH,
          (long long)strideW, (long long)padTop, (long long)padLeft);
  return {n * c,        int(h),       int(w),       int(oh),
          int(ow),      int(kernelH), int(kernelW), int(strideH),
          int(strideW), int(padTop),  int(padLeft)};
}

template <typename Op>
void launchOutputs(blpa_context *ctx, const char *kernel, const PoolGeometry &g,
                   Op op) {
  CudaRuntime &rt = runtimeOf(ctx);
  int64_t total = g.planes * g.outPlane();
  if (total == 0)
    return;
  withIndexType(total, [&](auto index) {
    outputKernel<decltype(index)>
        <<<gridFor(total), blockThreads, 0, rt.stream>>>(g, op);
  });
  checkLaunch(kernel);
}

template <typename Op>
void launchGather(blpa_context *ctx, const char *kernel, const PoolGeometry &g,
                  float *dx, Op op) {
  CudaRuntime &rt = runtimeOf(ctx);
  int64_t total = g.planes * g.inPlane();
  if (total == 0)
    return;
  withIndexType(total, [&](auto index) {
    gatherKernel<decltype(index)>
        <<<gridFor(total), blockThreads, 0, rt.stream>>>(g, dx, op);
  });
  checkLaunch(kernel);
}

/// Calls f(std::integral_constant<int, bits>()) for a code width that
/// numbers every position of the window (the CPU's argmaxCodeBits); fails
/// otherwise.
template <typename F>
void withArgmaxBits(const char *kernel, const PoolGeometry &g, int64_t bits,
                    F &&f) {
  int64_t positions = int64_t(g.kernelH) * g.kernelW;
  if (positions > 256)
    failf("%s: a %dx%d window does not fit 8-bit argmax codes", kernel,
          g.kernelH, g.kernelW);
  bool width = bits == 1 || bits == 2 || bits == 4 || bits == 8;
  if (width && positions > (int64_t(1) << bits))
    failf("%s: %lld-bit codes cannot number the %lld positions of a %dx%d "
          "window",
          kernel, (long long)bits, (long long)positions, g.kernelH, g.kernelW);
  withCodeBits<1u << 1 | 1u << 2 | 1u << 4 | 1u << 8>(kernel, bits, f);
}

} // namespace

extern "C" {

void blpa_max_pool(blpa_context *ctx, const float *x, float *y, int64_t n,
                   int64_t c, int64_t h, int64_t w, int64_t oh, int64_t ow,
                   int64_t kernelH, int64_t kernelW, int64_t strideH,
                   int64_t strideW, int64_t padTop, int64_t padLeft) {
  const char *kernel = "blpa_max_pool";
  PoolGeometry g = geometryOf(kernel, n, c, h, w, oh, ow, kernelH, kernelW,
                              strideH, strideW, padTop, padLeft);
  launchOutputs(ctx, kernel, g, MaxPoolOp{x, y});
}

void blpa_max_pool_grad(blpa_context *ctx, const float *dy, const float *x,
                        float *dx, int64_t n, int64_t c, int64_t h, int64_t w,
                        int64_t oh, int64_t ow, int64_t kernelH,
                        int64_t kernelW, int64_t strideH, int64_t strideW,
                        int64_t padTop, int64_t padLeft) {
  const char *kernel = "blpa_max_pool_grad";
  PoolGeometry g = geometryOf(kernel, n, c, h, w, oh, ow, kernelH, kernelW,
                              strideH, strideW, padTop, padLeft);
  launchGather(ctx, kernel, g, dx, MaxPoolGradOp{dy, x});
}

void blpa_max_pool_argmax(blpa_context *ctx, const float *x, float *y,
                          uint8_t *codes, int64_t n, int64_t c, int64_t h,
                          int64_t w, int64_t oh, int64_t ow, int64_t kernelH,
                          int64_t kernelW, int64_t strideH, int64_t strideW,
                          int64_t padTop, int64_t padLeft, int64_t bits) {
  const char *kernel = "blpa_max_pool_argmax";
  CudaRuntime &rt = runtimeOf(ctx);
  PoolGeometry g = geometryOf(kernel, n, c, h, w, oh, ow, kernelH, kernelW,
                              strideH, strideW, padTop, padLeft);
  withArgmaxBits(kernel, g, bits, [&](auto width) {
    constexpr int Bits = decltype(width)::value;
    int64_t total = g.planes * g.outPlane();
    int64_t bytes = (total * Bits + 7) / 8;
    if (bytes == 0)
      return;
    withIndexType(total, [&](auto index) {
      argmaxKernel<decltype(index), Bits>
          <<<gridFor(bytes), blockThreads, 0, rt.stream>>>(g, x, y, codes);
    });
    checkLaunch(kernel);
  });
}

void blpa_max_pool_grad_argmax(blpa_context *ctx, const float *dy,
                               const uint8_t *codes, float *dx, int64_t n,
                               int64_t c, int64_t h, int64_t w, int64_t oh,
                               int64_t ow, int64_t kernelH, int64_t kernelW,
                               int64_t strideH, int64_t strideW, int64_t padTop,
                               int64_t padLeft, int64_t bits) {
  const char *kernel = "blpa_max_pool_grad_argmax";
  PoolGeometry g = geometryOf(kernel, n, c, h, w, oh, ow, kernelH, kernelW,
                              strideH, strideW, padTop, padLeft);
  withArgmaxBits(kernel, g, bits, [&](auto width) {
    constexpr int Bits = decltype(width)::value;
    launchGather(ctx, kernel, g, dx, ArgmaxGradOp<Bits>{dy, codes});
  });
}

void blpa_avg_pool(blpa_context *ctx, const float *x, float *y, int64_t n,
                   int64_t c, int64_t h, int64_t w, int64_t oh, int64_t ow,
                   int64_t kernelH, int64_t kernelW, int64_t strideH,
                   int64_t strideW, int64_t padTop, int64_t padLeft,
                   int64_t countIncludePad) {
  const char *kernel = "blpa_avg_pool";
  PoolGeometry g = geometryOf(kernel, n, c, h, w, oh, ow, kernelH, kernelW,
                              strideH, strideW, padTop, padLeft);
  launchOutputs(ctx, kernel, g, AvgPoolOp{x, y, countIncludePad != 0});
}

void blpa_avg_pool_grad(blpa_context *ctx, const float *dy, float *dx,
                        int64_t n, int64_t c, int64_t h, int64_t w, int64_t oh,
                        int64_t ow, int64_t kernelH, int64_t kernelW,
                        int64_t strideH, int64_t strideW, int64_t padTop,
                        int64_t padLeft, int64_t countIncludePad) {
  const char *kernel = "blpa_avg_pool_grad";
  PoolGeometry g = geometryOf(kernel, n, c, h, w, oh, ow, kernelH, kernelW,
                              strideH, strideW, padTop, padLeft);
  launchGather(ctx, kernel, g, dx, AvgPoolGradOp{dy, countIncludePad != 0});
}

void blpa_global_avg_pool(blpa_context *ctx, const float *x, float *y,
                          int64_t n, int64_t c, int64_t spatial) {
  // The mean is a sum scaled by 1/spatial: blpa_reduce_sum_to's
  // deterministic double-precision reduction does the work.
  const int64_t inDims[2] = {n * c, spatial}, outDims[2] = {n * c, 1};
  blpa_reduce_sum_to(ctx, x, y, 2, inDims, outDims, 1.0 / double(spatial));
}

void blpa_global_avg_pool_grad(blpa_context *ctx, const float *dy, float *dx,
                               int64_t n, int64_t c, int64_t spatial) {
  CudaRuntime &rt = runtimeOf(ctx);
  int64_t total = n * c * spatial;
  if (total <= 0)
    return;
  withIndexType(total, [&](auto index) {
    spreadKernel<decltype(index)>
        <<<gridFor(total), blockThreads, 0, rt.stream>>>(dy, dx, total,
                                                         spatial);
  });
  checkLaunch("blpa_global_avg_pool_grad");
}

} // extern "C"
