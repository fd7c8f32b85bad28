//===- Pooling.cu - Max, average and global average pooling --------------===//
//
// Every windowed kernel derives its windows from PoolGeometry, three axes
// (depth, height, width) of WindowShape.h's PoolAxis, the per-axis window
// arithmetic the CPU runtime uses too (1-D and 2-D poolings have trivial
// leading axes): the forward kernels run one thread per output element over
// its window's taps inside the input, the gradients one thread per input
// element that gathers, in row-major window order, over the output windows
// with a tap on it. The CPU runtime scatters each plane's windows in that
// same order into a zeroed plane, so the gathered sums are bitwise the
// CPU's, without atomics. Max pooling's winner (the first maximum in
// row-major tap order; padding never wins) comes from one helper, firstMax,
// in the forward, argmax and gradient kernels.
//
// Argmax codes are written one byte per thread (8 / bits outputs each), so
// no two threads share a byte; they are read with Packing.cuh's codeAt.
// Global average pooling is a blpa_reduce_sum_to of [planes, spatial] to
// [planes, 1].
//
//===----------------------------------------------------------------------===//

#include "CudaRuntime.h"
#include "Packing.cuh"

#include "../Common/WindowShape.h"

#include <cstdint>

using namespace blpa::cuda;
using blpa::PoolAxis;

namespace {

/// A position along the three axes (depth, height, width).
struct Pos3 {
  int at[3];
};

/// An element of a tensor of [planes, depth, rows, cols] planes: its plane
/// and its position within the plane.
struct PlanePos {
  int64_t plane;
  Pos3 pos;
};

/// The taps of one output's window inside the input: [first[a], end[a])
/// along axis a, tap 0 at input position origin[a].
struct Window {
  int origin[3], first[3], end[3];
  __device__ int64_t size() const {
    int64_t taps = 1;
    for (int a = 0; a < 3; ++a)
      taps *= end[a] > first[a] ? end[a] - first[a] : 0;
    return taps;
  }
};

/// Pooling shape. Positions within a plane are 32-bit (checked on the
/// host); planes and flat indices are 64-bit.
struct PoolGeometry {
  int64_t planes;
  PoolAxis<int> axes[3];

  __host__ __device__ int64_t inPlane() const {
    return int64_t(axes[0].in) * axes[1].in * axes[2].in;
  }
  __host__ __device__ int64_t outPlane() const {
    return int64_t(axes[0].out) * axes[1].out * axes[2].out;
  }
  __host__ __device__ int kernelTaps() const {
    return axes[0].kernel * axes[1].kernel * axes[2].kernel;
  }

  __device__ Window window(Pos3 out) const {
    Window win;
    for (int a = 0; a < 3; ++a) {
      win.origin[a] = axes[a].origin(out.at[a]);
      win.first[a] = axes[a].firstTap(out.at[a]);
      win.end[a] = axes[a].endTap(out.at[a]);
    }
    return win;
  }

  /// Taps of window `out` in the padded extent (count_include_pad).
  __device__ int64_t paddedTaps(Pos3 out) const {
    int64_t taps = 1;
    for (int a = 0; a < 3; ++a)
      taps *= axes[a].paddedTaps(out.at[a]);
    return taps;
  }

  __device__ int64_t inOffset(int z, int y, int x) const {
    return (int64_t(z) * axes[1].in + y) * axes[2].in + x;
  }

  /// The row-major tap index of input position `in` in window `out`, or -1
  /// when it is not one of the window's taps.
  __device__ int tapIndex(Pos3 out, Pos3 in) const {
    int index = 0;
    for (int a = 0; a < 3; ++a) {
      int tap = axes[a].tapAt(out.at[a], in.at[a]);
      if (tap < 0)
        return -1;
      index = index * axes[a].kernel + tap;
    }
    return index;
  }
};

/// Element i of a tensor of planes of planeSize elements with the given
/// depth-less shape (rows, cols); the plane division runs in Index (32 bits
/// when every index fits).
template <typename Index>
__device__ PlanePos planePos(int64_t i, int64_t planeSize, int rows, int cols) {
  Index plane = Index(i) / Index(planeSize);
  unsigned rest = unsigned(Index(i) - plane * Index(planeSize));
  unsigned line = rest / unsigned(cols);
  unsigned z = line / unsigned(rows);
  return {int64_t(plane),
          {{int(z), int(line - z * unsigned(rows)),
            int(rest - line * unsigned(cols))}}};
}

template <typename Index>
__device__ PlanePos outPos(const PoolGeometry &g, int64_t i) {
  return planePos<Index>(i, g.outPlane(), g.axes[1].out, g.axes[2].out);
}

template <typename Index>
__device__ PlanePos inPos(const PoolGeometry &g, int64_t i) {
  return planePos<Index>(i, g.inPlane(), g.axes[1].in, g.axes[2].in);
}

/// A window's winning tap: its row-major index and its offset in the
/// plane; offset is -1 for a window that lies entirely in the padding.
struct Winner {
  int index;
  int64_t offset;
  float value;
  __device__ bool none() const { return offset < 0; }
};

/// The window's first maximum in row-major tap order, as the CPU's
/// firstMax (a NaN first in the window wins; later NaNs never do).
__device__ Winner firstMax(const PoolGeometry &g, const float *plane,
                           const Window &win) {
  Winner best{0, -1, 0.0f};
  for (int kd = win.first[0]; kd < win.end[0]; ++kd)
    for (int kh = win.first[1]; kh < win.end[1]; ++kh)
      for (int kw = win.first[2]; kw < win.end[2]; ++kw) {
        int64_t offset = g.inOffset(win.origin[0] + kd * g.axes[0].dilation,
                                    win.origin[1] + kh * g.axes[1].dilation,
                                    win.origin[2] + kw * g.axes[2].dilation);
        float v = plane[offset];
        if (best.none() || v > best.value)
          best = {(kd * g.axes[1].kernel + kh) * g.axes[2].kernel + kw, offset,
                  v};
      }
  return best;
}

/// Writes the max-pool output of window `out` (flat index `index`; -inf for
/// an all-padding window) and returns its winner.
__device__ Winner maxPoolWindow(const PoolGeometry &g, const float *x, float *y,
                                PlanePos out, int64_t index) {
  Winner at = firstMax(g, x + out.plane * g.inPlane(), g.window(out.pos));
  y[index] = at.none() ? -INFINITY : at.value;
  return at;
}

/// The argmax code of a window: its winner's tap index, 0 for an
/// all-padding window (whose gradient is skipped by geometry, not by code).
__device__ unsigned argmaxCode(Winner at) {
  return at.none() ? 0u : unsigned(at.index);
}

__device__ float avgDivisor(const PoolGeometry &g, Pos3 out, const Window &win,
                            bool countIncludePad) {
  return float(countIncludePad ? g.paddedTaps(out) : win.size());
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
    op(g, outPos<Index>(g, i), i);
}

/// dx[i] = the sum, over the output windows with a tap on input element i
/// in row-major order, of what op.add adds for each (the CPU's scatter
/// order).
template <typename Index, typename Op>
__global__ void __launch_bounds__(blockThreads)
    gatherKernel(PoolGeometry g, float *dx, Op op) {
  int64_t total = g.planes * g.inPlane();
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    PlanePos in = inPos<Index>(g, i);
    int first[3], last[3];
    for (int a = 0; a < 3; ++a)
      g.axes[a].covering(in.pos.at[a], first[a], last[a]);
    int64_t outBase = in.plane * g.outPlane();
    float acc = 0.0f;
    Pos3 out;
    for (out.at[0] = first[0]; out.at[0] <= last[0]; ++out.at[0])
      for (out.at[1] = first[1]; out.at[1] <= last[1]; ++out.at[1])
        for (out.at[2] = first[2]; out.at[2] <= last[2]; ++out.at[2]) {
          int tap = g.tapIndex(out, in.pos);
          if (tap < 0)
            continue;
          int64_t o =
              (int64_t(out.at[0]) * g.axes[1].out + out.at[1]) * g.axes[2].out +
              out.at[2];
          op.add(acc, g, in, out, tap, outBase + o);
        }
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
      Winner at = maxPoolWindow(g, x, y, outPos<Index>(g, i), i);
      byte |= argmaxCode(at) << (l * Bits);
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
    Window win = g.window(out.pos);
    float sum = 0;
    for (int kd = win.first[0]; kd < win.end[0]; ++kd)
      for (int kh = win.first[1]; kh < win.end[1]; ++kh)
        for (int kw = win.first[2]; kw < win.end[2]; ++kw)
          sum += plane[g.inOffset(win.origin[0] + kd * g.axes[0].dilation,
                                  win.origin[1] + kh * g.axes[1].dilation,
                                  win.origin[2] + kw * g.axes[2].dilation)];
    y[index] = sum / avgDivisor(g, out.pos, win, countIncludePad);
  }
};

/// dy of window `out` goes to the input position that wins it.
struct MaxPoolGradOp {
  const float *dy;
  const float *x;
  __device__ void add(float &acc, const PoolGeometry &g, PlanePos in, Pos3 out,
                      int tap, int64_t index) const {
    Winner at = firstMax(g, x + in.plane * g.inPlane(), g.window(out));
    if (at.index == tap && !at.none())
      acc += dy[index];
  }
};

/// The same with the winner read from the argmax codes. Windows with a tap
/// on an input position are never all padding, so every code read is real.
template <int Bits> struct ArgmaxGradOp {
  const float *dy;
  const uint8_t *codes;
  __device__ void add(float &acc, const PoolGeometry &, PlanePos, Pos3, int tap,
                      int64_t index) const {
    if (codeAt<Bits>(codes, index) == uint32_t(tap))
      acc += dy[index];
  }
};

struct AvgPoolGradOp {
  const float *dy;
  bool countIncludePad;
  __device__ void add(float &acc, const PoolGeometry &g, PlanePos, Pos3 out,
                      int, int64_t index) const {
    acc += dy[index] / avgDivisor(g, out, g.window(out), countIncludePad);
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
/// plane (windows and their padding included) fit the kernels' 32-bit
/// arithmetic.
PoolGeometry geometryOf(const char *kernel, int64_t n, int64_t c, int64_t rank,
                        const int64_t *in, const int64_t *out,
                        const int64_t *kernelDims, const int64_t *strides,
                        const int64_t *pads, const int64_t *dilations) {
  const int64_t limit = int64_t(1) << 30;
  blpa::WindowShape shape;
  bool ok = n >= 0 && c >= 0 &&
            shape.read(rank, in, out, kernelDims, strides, pads, dilations);
  PoolGeometry g{n * c, {}};
  for (int a = 0; ok && a < 3; ++a) {
    PoolAxis<int64_t> axis = shape.poolAxis(a);
    for (int64_t v : {axis.in, axis.out, axis.kernel, axis.stride,
                      axis.padBegin, axis.padEnd, axis.dilation})
      ok = ok && v < limit;
    // The last window's last tap, and the padded extent, stay below limit.
    ok = ok && (axis.out == 0 || (axis.out - 1) * axis.stride +
                                         (axis.kernel - 1) * axis.dilation <
                                     limit);
    ok = ok && axis.in + axis.padBegin + axis.padEnd < limit;
    g.axes[a] = {int(axis.in),      int(axis.out),      int(axis.kernel),
                 int(axis.stride),  int(axis.padBegin), int(axis.padEnd),
                 int(axis.dilation)};
  }
  if (!ok || shape.inSize() >= (int64_t(1) << 31) ||
      shape.outSize() >= (int64_t(1) << 31))
    failf("%s: unsupported pooling geometry (%lld spatial dimensions)", kernel,
          (long long)rank);
  return g;
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
/// numbers every tap of the window (the CPU's argmaxCodeBits); fails
/// otherwise.
template <typename F>
void withArgmaxBits(const char *kernel, const PoolGeometry &g, int64_t bits,
                    F &&f) {
  int64_t positions = g.kernelTaps();
  if (positions > 256)
    failf("%s: a window of %lld taps does not fit 8-bit argmax codes", kernel,
          (long long)positions);
  bool width = bits == 1 || bits == 2 || bits == 4 || bits == 8;
  if (width && positions > (int64_t(1) << bits))
    failf("%s: %lld-bit codes cannot number the %lld taps of the window",
          kernel, (long long)bits, (long long)positions);
  withCodeBits<1u << 1 | 1u << 2 | 1u << 4 | 1u << 8>(kernel, bits, f);
}

} // namespace

extern "C" {

void blpa_max_pool(blpa_context *ctx, const float *x, float *y, int64_t n,
                   int64_t c, int64_t rank, const int64_t *in,
                   const int64_t *out, const int64_t *kernel,
                   const int64_t *strides, const int64_t *pads,
                   const int64_t *dilations) {
  const char *name = "blpa_max_pool";
  PoolGeometry g =
      geometryOf(name, n, c, rank, in, out, kernel, strides, pads, dilations);
  launchOutputs(ctx, name, g, MaxPoolOp{x, y});
}

void blpa_max_pool_grad(blpa_context *ctx, const float *dy, const float *x,
                        float *dx, int64_t n, int64_t c, int64_t rank,
                        const int64_t *in, const int64_t *out,
                        const int64_t *kernel, const int64_t *strides,
                        const int64_t *pads, const int64_t *dilations) {
  const char *name = "blpa_max_pool_grad";
  PoolGeometry g =
      geometryOf(name, n, c, rank, in, out, kernel, strides, pads, dilations);
  launchGather(ctx, name, g, dx, MaxPoolGradOp{dy, x});
}

void blpa_max_pool_argmax(blpa_context *ctx, const float *x, float *y,
                          uint8_t *codes, int64_t n, int64_t c, int64_t rank,
                          const int64_t *in, const int64_t *out,
                          const int64_t *kernel, const int64_t *strides,
                          const int64_t *pads, const int64_t *dilations,
                          int64_t bits) {
  const char *name = "blpa_max_pool_argmax";
  CudaRuntime &rt = runtimeOf(ctx);
  PoolGeometry g =
      geometryOf(name, n, c, rank, in, out, kernel, strides, pads, dilations);
  withArgmaxBits(name, g, bits, [&](auto width) {
    constexpr int Bits = decltype(width)::value;
    int64_t total = g.planes * g.outPlane();
    int64_t bytes = (total * Bits + 7) / 8;
    if (bytes == 0)
      return;
    withIndexType(total, [&](auto index) {
      argmaxKernel<decltype(index), Bits>
          <<<gridFor(bytes), blockThreads, 0, rt.stream>>>(g, x, y, codes);
    });
    checkLaunch(name);
  });
}

void blpa_max_pool_grad_argmax(blpa_context *ctx, const float *dy,
                               const uint8_t *codes, float *dx, int64_t n,
                               int64_t c, int64_t rank, const int64_t *in,
                               const int64_t *out, const int64_t *kernel,
                               const int64_t *strides, const int64_t *pads,
                               const int64_t *dilations, int64_t bits) {
  const char *name = "blpa_max_pool_grad_argmax";
  PoolGeometry g =
      geometryOf(name, n, c, rank, in, out, kernel, strides, pads, dilations);
  withArgmaxBits(name, g, bits, [&](auto width) {
    constexpr int Bits = decltype(width)::value;
    launchGather(ctx, name, g, dx, ArgmaxGradOp<Bits>{dy, codes});
  });
}

void blpa_avg_pool(blpa_context *ctx, const float *x, float *y, int64_t n,
                   int64_t c, int64_t rank, const int64_t *in,
                   const int64_t *out, const int64_t *kernel,
                   const int64_t *strides, const int64_t *pads,
                   const int64_t *dilations, int64_t countIncludePad) {
  const char *name = "blpa_avg_pool";
  PoolGeometry g =
      geometryOf(name, n, c, rank, in, out, kernel, strides, pads, dilations);
  launchOutputs(ctx, name, g, AvgPoolOp{x, y, countIncludePad != 0});
}

void blpa_avg_pool_grad(blpa_context *ctx, const float *dy, float *dx,
                        int64_t n, int64_t c, int64_t rank, const int64_t *in,
                        const int64_t *out, const int64_t *kernel,
                        const int64_t *strides, const int64_t *pads,
                        const int64_t *dilations, int64_t countIncludePad) {
  const char *name = "blpa_avg_pool_grad";
  PoolGeometry g =
      geometryOf(name, n, c, rank, in, out, kernel, strides, pads, dilations);
  launchGather(ctx, name, g, dx, AvgPoolGradOp{dy, countIncludePad != 0});
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
