//===- Pooling.cpp - Max, average and global average pooling -------------===//
//
// All windowed kernels walk the same clipped windows (PoolGeometry::
// window) and run one (n, c) plane per parallel index. The gradients scatter
// into their plane sequentially, so overlapping windows accumulate in a
// fixed order. blpa_max_pool_argmax instead runs blocks of output elements,
// so that its packed codes split between threads on byte boundaries, and
// blpa_max_pool_grad_argmax replays blpa_max_pool_grad's scatter with the
// winners read from the codes.
//
//===----------------------------------------------------------------------===//

#include "CpuRuntime.h"
#include "LaneSum.h"
#include "Packing.h"

#include <algorithm>
#include <limits>

using namespace blpa::cpu;

namespace {

/// A pooling window clipped to the input: rows [h0, h1), columns [w0, w1).
struct Window {
  int64_t h0, h1, w0, w1;
  int64_t size() const { return (h1 - h0) * (w1 - w0); }
  /// True for a window that lies entirely in the padding (or past the input).
  bool empty() const { return h0 >= h1 || w0 >= w1; }
};

struct PoolGeometry {
  int64_t planes, h, w, oh, ow, kernelH, kernelW, strideH, strideW, padTop,
      padLeft;

  /// Top-left corner of the unclipped window (oy, ox), in input rows and
  /// columns; may lie in the padding.
  int64_t originY(int64_t oy) const { return oy * strideH - padTop; }
  int64_t originX(int64_t ox) const { return ox * strideW - padLeft; }

  Window window(int64_t oy, int64_t ox) const {
    int64_t y0 = originY(oy), x0 = originX(ox);
    // Padded positions are outside [0, h) x [0, w) and are simply skipped.
    return {std::max<int64_t>(y0, 0), std::min(y0 + kernelH, h),
            std::max<int64_t>(x0, 0), std::min(x0 + kernelW, w)};
  }

  /// Calls start(plane), then body(plane, oy, ox, window) for every output
  /// position of the plane in order; planes are split over threads.
  template <typename Start, typename Body>
  void forEachWindow(Start &&start, Body &&body) const {
    parallelFor(planes, [&](int64_t p) {
      start(p);
      forWindows(p, 0, outPlane(), body);
    });
  }

  /// body(p, oy, ox, window) for the output positions [from, to) (row-major
  /// within the plane) of plane p, in order.
  template <typename Body>
  void forWindows(int64_t p, int64_t from, int64_t to, Body &&body) const {
    for (int64_t oy = from / ow, ox = from % ow; from < to; ++from) {
      body(p, oy, ox, window(oy, ox));
      if (++ox == ow) {
        ox = 0;
        ++oy;
      }
    }
  }

  /// A forEachWindow start that zeroes the plane of the input gradient the
  /// windows then accumulate into.
  auto clearing(float *grad) const {
    return [this, grad](int64_t p) {
      std::fill(grad + p * inPlane(), grad + (p + 1) * inPlane(), 0.0f);
    };
  }

  int64_t inPlane() const { return h * w; }
  int64_t outPlane() const { return oh * ow; }
};

/// A window's winning input position, row y and column x in the plane; y is
/// -1 for a window that lies entirely in the padding.
struct Winner {
  int64_t y, x;
  bool none() const { return y < 0; }
};

/// The window's first maximum in row-major order.
Winner firstMax(const float *plane, int64_t width, const Window &win) {
  Winner best{-1, 0};
  float bestValue = 0;
  for (int64_t y = win.h0; y < win.h1; ++y)
    for (int64_t x = win.w0; x < win.w1; ++x) {
      float v = plane[y * width + x];
      if (best.none() || v > bestValue) {
        best = {y, x};
        bestValue = v;
      }
    }
  return best;
}

/// Writes the max-pool output of window (oy, ox) of plane p (-inf for an
/// all-padding window) and returns its winner.
Winner maxPoolWindow(const PoolGeometry &g, const float *x, float *y, int64_t p,
                     int64_t oy, int64_t ox, const Window &win) {
  const float *plane = x + p * g.inPlane();
  Winner at = firstMax(plane, g.w, win);
  y[p * g.outPlane() + oy * g.ow + ox] =
      at.none() ? -std::numeric_limits<float>::infinity()
                : plane[at.y * g.w + at.x];
  return at;
}

/// The argmax code of window (oy, ox): its winner's index ky * kernelW + kx
/// in the unclipped window. An all-padding window gets 0; its gradient is
/// skipped by geometry, not by code.
uint8_t argmaxCode(const PoolGeometry &g, int64_t oy, int64_t ox, Winner at) {
  if (at.none())
    return 0;
  return uint8_t((at.y - g.originY(oy)) * g.kernelW + at.x - g.originX(ox));
}

/// The plane offset that argmaxCode encoded as `code`.
int64_t argmaxOffset(const PoolGeometry &g, int64_t oy, int64_t ox,
                     uint8_t code) {
  return (g.originY(oy) + code / g.kernelW) * g.w + g.originX(ox) +
         code % g.kernelW;
}

/// Code widths that can hold every position of the pooling window.
unsigned argmaxCodeBits(const char *kernel, const PoolGeometry &g) {
  int64_t positions = g.kernelH * g.kernelW;
  unsigned allowed = 0;
  for (int bits : {1, 2, 4, 8})
    if (positions <= int64_t(1) << bits)
      allowed |= 1u << bits;
  if (!allowed)
    failf("%s: a %lldx%lld window does not fit 8-bit argmax codes", kernel,
          (long long)g.kernelH, (long long)g.kernelW);
  return allowed;
}

float avgDivisor(const PoolGeometry &g, const Window &win,
                 int64_t countIncludePad) {
  return float(countIncludePad ? g.kernelH * g.kernelW : win.size());
}

void noPlaneStart(int64_t) {}

} // namespace

extern "C" {

void blpa_max_pool(blpa_context *, const float *x, float *y, int64_t n,
                   int64_t c, int64_t h, int64_t w, int64_t oh, int64_t ow,
                   int64_t kernelH, int64_t kernelW, int64_t strideH,
                   int64_t strideW, int64_t padTop, int64_t padLeft) {
  PoolGeometry g{n * c,   h,       w,       oh,     ow,     kernelH,
                 kernelW, strideH, strideW, padTop, padLeft};
  g.forEachWindow(noPlaneStart,
                  [&](int64_t p, int64_t oy, int64_t ox, const Window &win) {
                    maxPoolWindow(g, x, y, p, oy, ox, win);
                  });
}

void blpa_max_pool_grad(blpa_context *, const float *dy, const float *x,
                        float *dx, int64_t n, int64_t c, int64_t h, int64_t w,
                        int64_t oh, int64_t ow, int64_t kernelH,
                        int64_t kernelW, int64_t strideH, int64_t strideW,
                        int64_t padTop, int64_t padLeft) {
  PoolGeometry g{n * c,   h,       w,       oh,     ow,     kernelH,
                 kernelW, strideH, strideW, padTop, padLeft};
  g.forEachWindow(g.clearing(dx),
                  [&](int64_t p, int64_t oy, int64_t ox, const Window &win) {
                    Winner at = firstMax(x + p * g.inPlane(), w, win);
                    if (!at.none())
                      dx[p * g.inPlane() + at.y * w + at.x] +=
                          dy[p * g.outPlane() + oy * ow + ox];
                  });
}

void blpa_max_pool_argmax(blpa_context *, const float *x, float *y,
                          uint8_t *codes, int64_t n, int64_t c, int64_t h,
                          int64_t w, int64_t oh, int64_t ow, int64_t kernelH,
                          int64_t kernelW, int64_t strideH, int64_t strideW,
                          int64_t padTop, int64_t padLeft, int64_t bits) {
  const char *kernel = "blpa_max_pool_argmax";
  PoolGeometry g{n * c,   h,       w,       oh,     ow,     kernelH,
                 kernelW, strideH, strideW, padTop, padLeft};
  withCodeBits(kernel, bits, argmaxCodeBits(kernel, g), [&](auto width) {
    constexpr int Bits = decltype(width)::value;
    // Blocks of output elements rather than planes: a plane's codes need not
    // start on a byte boundary, a block's always do.
    encodeSlices<Bits>(
        g.planes * g.outPlane(), g.outPlane(), codes,
        [&](int64_t p, int64_t b, int64_t e, uint8_t *q) {
          int64_t first = p * g.outPlane();
          g.forWindows(p, b - first, e - first,
                       [&](int64_t, int64_t oy, int64_t ox, const Window &win) {
                         Winner at = maxPoolWindow(g, x, y, p, oy, ox, win);
                         q[first + oy * ow + ox - b] =
                             argmaxCode(g, oy, ox, at);
                       });
        });
  });
}

void blpa_max_pool_grad_argmax(blpa_context *, const float *dy,
                               const uint8_t *codes, float *dx, int64_t n,
                               int64_t c, int64_t h, int64_t w, int64_t oh,
                               int64_t ow, int64_t kernelH, int64_t kernelW,
                               int64_t strideH, int64_t strideW, int64_t padTop,
                               int64_t padLeft, int64_t bits) {
  const char *kernel = "blpa_max_pool_grad_argmax";
  PoolGeometry g{n * c,   h,       w,       oh,     ow,     kernelH,
                 kernelW, strideH, strideW, padTop, padLeft};
  withCodeBits(kernel, bits, argmaxCodeBits(kernel, g), [&](auto width) {
    constexpr int Bits = decltype(width)::value;
    // The same windows in the same order as blpa_max_pool_grad, so the
    // accumulation into dx is bitwise the same.
    g.forEachWindow(g.clearing(dx), [&](int64_t p, int64_t oy, int64_t ox,
                                        const Window &win) {
      if (win.empty())
        return;
      int64_t out = p * g.outPlane() + oy * ow + ox;
      int64_t at = argmaxOffset(g, oy, ox, codeAt<Bits>(codes, out));
      dx[p * g.inPlane() + at] += dy[out];
    });
  });
}

void blpa_avg_pool(blpa_context *, const float *x, float *y, int64_t n,
                   int64_t c, int64_t h, int64_t w, int64_t oh, int64_t ow,
                   int64_t kernelH, int64_t kernelW, int64_t strideH,
                   int64_t strideW, int64_t padTop, int64_t padLeft,
                   int64_t countIncludePad) {
  PoolGeometry g{n * c,   h,       w,       oh,     ow,     kernelH,
                 kernelW, strideH, strideW, padTop, padLeft};
  g.forEachWindow(noPlaneStart,
                  [&](int64_t p, int64_t oy, int64_t ox, const Window &win) {
                    const float *plane = x + p * g.inPlane();
                    float sum = 0;
                    for (int64_t yy = win.h0; yy < win.h1; ++yy)
                      for (int64_t xx = win.w0; xx < win.w1; ++xx)
                        sum += plane[yy * w + xx];
                    y[p * g.outPlane() + oy * ow + ox] =
                        sum / avgDivisor(g, win, countIncludePad);
                  });
}

void blpa_avg_pool_grad(blpa_context *, const float *dy, float *dx, int64_t n,
                        int64_t c, int64_t h, int64_t w, int64_t oh, int64_t ow,
                        int64_t kernelH, int64_t kernelW, int64_t strideH,
                        int64_t strideW, int64_t padTop, int64_t padLeft,
                        int64_t countIncludePad) {
  PoolGeometry g{n * c,   h,       w,       oh,     ow,     kernelH,
                 kernelW, strideH, strideW, padTop, padLeft};
  g.forEachWindow(g.clearing(dx),
                  [&](int64_t p, int64_t oy, int64_t ox, const Window &win) {
                    float *plane = dx + p * g.inPlane();
                    float share = dy[p * g.outPlane() + oy * ow + ox] /
                                  avgDivisor(g, win, countIncludePad);
                    for (int64_t yy = win.h0; yy < win.h1; ++yy)
                      for (int64_t xx = win.w0; xx < win.w1; ++xx)
                        plane[yy * w + xx] += share;
                  });
}

void blpa_global_avg_pool(blpa_context *, const float *x, float *y, int64_t n,
                          int64_t c, int64_t spatial) {
  parallelFor(n * c, [&](int64_t i) {
    y[i] = float(sliceSum(x + i * spatial, spatial) / double(spatial));
  });
}

void blpa_global_avg_pool_grad(blpa_context *, const float *dy, float *dx,
                               int64_t n, int64_t c, int64_t spatial) {
  parallelFor(n * c, [&](int64_t i) {
    float share = dy[i] / float(spatial);
    std::fill(dx + i * spatial, dx + (i + 1) * spatial, share);
  });
}

} // extern "C"
