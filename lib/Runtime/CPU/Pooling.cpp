//===- Pooling.cpp - Max, average and global average pooling -------------===//
//
// All four windowed kernels walk the same clipped windows (PoolGeometry::
// window) and run one (n, c) plane per parallel index. The gradients scatter
// into their plane sequentially, so overlapping windows accumulate in a
// fixed order.
//
//===----------------------------------------------------------------------===//

#include "CpuRuntime.h"
#include "LaneSum.h"

#include <algorithm>
#include <limits>

using namespace blpa::cpu;

namespace {

/// A pooling window clipped to the input: rows [h0, h1), columns [w0, w1).
struct Window {
  int64_t h0, h1, w0, w1;
  int64_t size() const { return (h1 - h0) * (w1 - w0); }
};

struct PoolGeometry {
  int64_t planes, h, w, oh, ow, kernelH, kernelW, strideH, strideW, padTop,
      padLeft;

  Window window(int64_t oy, int64_t ox) const {
    int64_t y0 = oy * strideH - padTop, x0 = ox * strideW - padLeft;
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
      for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = 0; ox < ow; ++ox)
          body(p, oy, ox, window(oy, ox));
    });
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

/// Offset in the plane of the window's first maximum in row-major order, or
/// -1 for a window that lies entirely in the padding.
int64_t firstMax(const float *plane, int64_t width, const Window &win) {
  int64_t best = -1;
  float bestValue = 0;
  for (int64_t y = win.h0; y < win.h1; ++y)
    for (int64_t x = win.w0; x < win.w1; ++x) {
      float v = plane[y * width + x];
      if (best < 0 || v > bestValue) {
        best = y * width + x;
        bestValue = v;
      }
    }
  return best;
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
  g.forEachWindow(
      noPlaneStart, [&](int64_t p, int64_t oy, int64_t ox, const Window &win) {
        const float *plane = x + p * g.inPlane();
        int64_t at = firstMax(plane, w, win);
        y[p * g.outPlane() + oy * ow + ox] =
            at < 0 ? -std::numeric_limits<float>::infinity() : plane[at];
      });
}

void blpa_max_pool_grad(blpa_context *, const float *dy, const float *x,
                        float *dx, int64_t n, int64_t c, int64_t h, int64_t w,
                        int64_t oh, int64_t ow, int64_t kernelH,
                        int64_t kernelW, int64_t strideH, int64_t strideW,
                        int64_t padTop, int64_t padLeft) {
  PoolGeometry g{n * c,   h,       w,       oh,     ow,     kernelH,
                 kernelW, strideH, strideW, padTop, padLeft};
  g.forEachWindow(g.clearing(dx), [&](int64_t p, int64_t oy, int64_t ox,
                                      const Window &win) {
    int64_t at = firstMax(x + p * g.inPlane(), w, win);
    if (at >= 0)
      dx[p * g.inPlane() + at] += dy[p * g.outPlane() + oy * ow + ox];
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
