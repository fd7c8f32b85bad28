//===- Pooling.cpp - Max, average and global average pooling -------------===//
//
// All windowed kernels walk the same windows (PoolGeometry::window: the
// taps of each output inside the input, over depth, height and width, from
// WindowShape.h's per-axis arithmetic; 1-D and 2-D poolings have trivial
// leading axes) and run one (n, c) plane per parallel index. The gradients
// scatter into their plane sequentially, so overlapping windows accumulate
// in a fixed order. blpa_max_pool_argmax instead runs blocks of output
// elements, so that its packed codes split between threads on byte
// boundaries, and blpa_max_pool_grad_argmax replays blpa_max_pool_grad's
// scatter with the winners read from the codes.
//
//===----------------------------------------------------------------------===//

#include "CpuRuntime.h"
#include "LaneSum.h"
#include "Packing.h"

#include "../Common/WindowShape.h"

#include <algorithm>
#include <limits>
#include <vector>

using namespace blpa::cpu;
using blpa::PoolAxis;

namespace {

/// The taps of one output's window that fall inside the input: taps
/// [first[a], end[a]) along axis a (depth, height, width), starting at input
/// position origin[a] and dilation[a] apart.
struct Window {
  int64_t origin[3], first[3], end[3];
  int64_t size() const {
    int64_t taps = 1;
    for (int a = 0; a < 3; ++a)
      taps *= std::max<int64_t>(end[a] - first[a], 0);
    return taps;
  }
  /// True for a window that lies entirely in the padding.
  bool empty() const { return size() == 0; }
};

/// A window's taps along one axis: [first, end) from position origin.
struct AxisSpan {
  int64_t origin, first, end;
};

struct PoolGeometry {
  int64_t planes;
  PoolAxis<int64_t> axes[3]; // depth, height, width
  /// The span of each output position along each axis, computed once: the
  /// per-window arithmetic (divisions) would otherwise dominate small
  /// windows.
  std::vector<AxisSpan> spans[3];

  PoolGeometry(const char *kernel, int64_t n, int64_t c, int64_t rank,
               const int64_t *in, const int64_t *out, const int64_t *kernelDims,
               const int64_t *strides, const int64_t *pads,
               const int64_t *dilations)
      : planes(n * c) {
    blpa::WindowShape shape;
    if (!shape.read(rank, in, out, kernelDims, strides, pads, dilations))
      failf("%s: invalid window (%lld spatial dimensions)", kernel,
            (long long)rank);
    for (int a = 0; a < 3; ++a) {
      axes[a] = shape.poolAxis(a);
      for (int64_t i = 0; i < axes[a].out; ++i)
        spans[a].push_back(
            {axes[a].origin(i), axes[a].firstTap(i), axes[a].endTap(i)});
    }
  }

  int64_t inPlane() const { return axes[0].in * axes[1].in * axes[2].in; }
  int64_t outPlane() const { return axes[0].out * axes[1].out * axes[2].out; }
  int64_t kernelTaps() const {
    return axes[0].kernel * axes[1].kernel * axes[2].kernel;
  }

  /// The window of the output at position `at` (depth, height, width).
  Window window(const int64_t at[3]) const {
    Window win;
    for (int a = 0; a < 3; ++a) {
      const AxisSpan &span = spans[a][at[a]];
      win.origin[a] = span.origin;
      win.first[a] = span.first;
      win.end[a] = span.end;
    }
    return win;
  }

  /// tap(index, offset) for every tap of `win` inside the input, in
  /// row-major tap order: its index (kd * kernelH + kh) * kernelW + kw among
  /// the kernel's taps and its offset in the input plane.
  template <typename Tap> void forEachTap(const Window &win, Tap &&tap) const {
    const PoolAxis<int64_t> &d = axes[0], &h = axes[1], &w = axes[2];
    for (int64_t kd = win.first[0]; kd < win.end[0]; ++kd) {
      int64_t z = win.origin[0] + kd * d.dilation;
      for (int64_t kh = win.first[1]; kh < win.end[1]; ++kh) {
        int64_t y = win.origin[1] + kh * h.dilation;
        int64_t row = (z * h.in + y) * w.in + win.origin[2];
        int64_t index = (kd * h.kernel + kh) * w.kernel;
        for (int64_t kw = win.first[2]; kw < win.end[2]; ++kw)
          tap(index + kw, row + kw * w.dilation);
      }
    }
  }

  /// The plane offset of tap `index` of `win` (which may lie in the
  /// padding only when the window is empty; callers skip those).
  int64_t tapOffset(const Window &win, int64_t index) const {
    const PoolAxis<int64_t> &d = axes[0], &h = axes[1], &w = axes[2];
    int64_t kw = index % w.kernel, kh = index / w.kernel % h.kernel,
            kd = index / (w.kernel * h.kernel);
    int64_t z = win.origin[0] + kd * d.dilation;
    int64_t y = win.origin[1] + kh * h.dilation;
    return (z * h.in + y) * w.in + win.origin[2] + kw * w.dilation;
  }

  /// Taps of window `o` inside the padded extent (count_include_pad's
  /// divisor; a ceil_mode window hanging past the end pad is clipped).
  int64_t paddedTaps(int64_t o) const {
    int64_t at[3] = {o / (axes[1].out * axes[2].out),
                     o / axes[2].out % axes[1].out, o % axes[2].out};
    int64_t taps = 1;
    for (int a = 0; a < 3; ++a)
      taps *= axes[a].paddedTaps(at[a]);
    return taps;
  }

  /// Calls start(plane), then body(plane, o, window) for every output
  /// position o of the plane in order; planes are split over threads.
  template <typename Start, typename Body>
  void forEachWindow(Start &&start, Body &&body) const {
    parallelFor(planes, [&](int64_t p) {
      start(p);
      forWindows(p, 0, outPlane(), body);
    });
  }

  /// body(p, o, window) for the output positions [from, to) (row-major
  /// within the plane) of plane p, in order.
  template <typename Body>
  void forWindows(int64_t p, int64_t from, int64_t to, Body &&body) const {
    if (from >= to)
      return;
    int64_t at[3] = {from / (axes[1].out * axes[2].out),
                     from / axes[2].out % axes[1].out, from % axes[2].out};
    for (int64_t o = from; o < to; ++o) {
      body(p, o, window(at));
      if (++at[2] < axes[2].out)
        continue;
      at[2] = 0;
      if (++at[1] < axes[1].out)
        continue;
      at[1] = 0;
      ++at[0];
    }
  }

  /// A forEachWindow start that zeroes the plane of the input gradient the
  /// windows then accumulate into.
  auto clearing(float *grad) const {
    return [this, grad](int64_t p) {
      std::fill(grad + p * inPlane(), grad + (p + 1) * inPlane(), 0.0f);
    };
  }
};

/// A window's winning tap: its index among the kernel's taps and its
/// offset in the plane; offset is -1 for a window that lies entirely in the
/// padding.
struct Winner {
  int64_t index, offset;
  bool none() const { return offset < 0; }
};

/// The window's first maximum in row-major tap order.
Winner firstMax(const PoolGeometry &g, const float *plane, const Window &win) {
  Winner best{0, -1};
  float bestValue = 0;
  g.forEachTap(win, [&](int64_t index, int64_t offset) {
    float v = plane[offset];
    if (best.none() || v > bestValue) {
      best = {index, offset};
      bestValue = v;
    }
  });
  return best;
}

/// Writes the max-pool output of window o of plane p (-inf for an
/// all-padding window) and returns its winner.
Winner maxPoolWindow(const PoolGeometry &g, const float *x, float *y, int64_t p,
                     int64_t o, const Window &win) {
  const float *plane = x + p * g.inPlane();
  Winner at = firstMax(g, plane, win);
  y[p * g.outPlane() + o] =
      at.none() ? -std::numeric_limits<float>::infinity() : plane[at.offset];
  return at;
}

/// Code widths that can hold every tap of the pooling window.
unsigned argmaxCodeBits(const char *kernel, const PoolGeometry &g) {
  int64_t positions = g.kernelTaps();
  unsigned allowed = 0;
  for (int bits : {1, 2, 4, 8})
    if (positions <= int64_t(1) << bits)
      allowed |= 1u << bits;
  if (!allowed)
    failf("%s: a window of %lld taps does not fit 8-bit argmax codes", kernel,
          (long long)positions);
  return allowed;
}

float avgDivisor(const PoolGeometry &g, int64_t o, const Window &win,
                 int64_t countIncludePad) {
  return float(countIncludePad ? g.paddedTaps(o) : win.size());
}

void noPlaneStart(int64_t) {}

} // namespace

extern "C" {

void blpa_max_pool(blpa_context *, const float *x, float *y, int64_t n,
                   int64_t c, int64_t rank, const int64_t *in,
                   const int64_t *out, const int64_t *kernel,
                   const int64_t *strides, const int64_t *pads,
                   const int64_t *dilations) {
  PoolGeometry g("blpa_max_pool", n, c, rank, in, out, kernel, strides, pads,
                 dilations);
  g.forEachWindow(noPlaneStart, [&](int64_t p, int64_t o, const Window &win) {
    maxPoolWindow(g, x, y, p, o, win);
  });
}

void blpa_max_pool_grad(blpa_context *, const float *dy, const float *x,
                        float *dx, int64_t n, int64_t c, int64_t rank,
                        const int64_t *in, const int64_t *out,
                        const int64_t *kernel, const int64_t *strides,
                        const int64_t *pads, const int64_t *dilations) {
  PoolGeometry g("blpa_max_pool_grad", n, c, rank, in, out, kernel, strides,
                 pads, dilations);
  g.forEachWindow(g.clearing(dx), [&](int64_t p, int64_t o, const Window &win) {
    Winner at = firstMax(g, x + p * g.inPlane(), win);
    if (!at.none())
      dx[p * g.inPlane() + at.offset] += dy[p * g.outPlane() + o];
  });
}

void blpa_max_pool_argmax(blpa_context *, const float *x, float *y,
                          uint8_t *codes, int64_t n, int64_t c, int64_t rank,
                          const int64_t *in, const int64_t *out,
                          const int64_t *kernel, const int64_t *strides,
                          const int64_t *pads, const int64_t *dilations,
                          int64_t bits) {
  const char *name = "blpa_max_pool_argmax";
  PoolGeometry g(name, n, c, rank, in, out, kernel, strides, pads, dilations);
  withCodeBits(name, bits, argmaxCodeBits(name, g), [&](auto width) {
    constexpr int Bits = decltype(width)::value;
    // Blocks of output elements rather than planes: a plane's codes need not
    // start on a byte boundary, a block's always do. An all-padding window
    // gets code 0; its gradient is skipped by geometry, not by code.
    encodeSlices<Bits>(g.planes * g.outPlane(), g.outPlane(), codes,
                       [&](int64_t p, int64_t b, int64_t e, uint8_t *q) {
                         int64_t first = p * g.outPlane();
                         g.forWindows(
                             p, b - first, e - first,
                             [&](int64_t, int64_t o, const Window &win) {
                               Winner at = maxPoolWindow(g, x, y, p, o, win);
                               q[first + o - b] = uint8_t(at.index);
                             });
                       });
  });
}

void blpa_max_pool_grad_argmax(blpa_context *, const float *dy,
                               const uint8_t *codes, float *dx, int64_t n,
                               int64_t c, int64_t rank, const int64_t *in,
                               const int64_t *out, const int64_t *kernel,
                               const int64_t *strides, const int64_t *pads,
                               const int64_t *dilations, int64_t bits) {
  const char *name = "blpa_max_pool_grad_argmax";
  PoolGeometry g(name, n, c, rank, in, out, kernel, strides, pads, dilations);
  withCodeBits(name, bits, argmaxCodeBits(name, g), [&](auto width) {
    constexpr int Bits = decltype(width)::value;
    // The same windows in the same order as blpa_max_pool_grad, so the
    // accumulation into dx is bitwise the same.
    g.forEachWindow(g.clearing(dx), [&](int64_t p, int64_t o,
                                        const Window &win) {
      if (win.empty())
        return;
      int64_t at = p * g.outPlane() + o;
      dx[p * g.inPlane() + g.tapOffset(win, codeAt<Bits>(codes, at))] += dy[at];
    });
  });
}

void blpa_avg_pool(blpa_context *, const float *x, float *y, int64_t n,
                   int64_t c, int64_t rank, const int64_t *in,
                   const int64_t *out, const int64_t *kernel,
                   const int64_t *strides, const int64_t *pads,
                   const int64_t *dilations, int64_t countIncludePad) {
  PoolGeometry g("blpa_avg_pool", n, c, rank, in, out, kernel, strides, pads,
                 dilations);
  g.forEachWindow(noPlaneStart, [&](int64_t p, int64_t o, const Window &win) {
    const float *plane = x + p * g.inPlane();
    float sum = 0;
    g.forEachTap(win, [&](int64_t, int64_t offset) { sum += plane[offset]; });
    y[p * g.outPlane() + o] = sum / avgDivisor(g, o, win, countIncludePad);
  });
}

void blpa_avg_pool_grad(blpa_context *, const float *dy, float *dx, int64_t n,
                        int64_t c, int64_t rank, const int64_t *in,
                        const int64_t *out, const int64_t *kernel,
                        const int64_t *strides, const int64_t *pads,
                        const int64_t *dilations, int64_t countIncludePad) {
  PoolGeometry g("blpa_avg_pool_grad", n, c, rank, in, out, kernel, strides,
                 pads, dilations);
  g.forEachWindow(g.clearing(dx), [&](int64_t p, int64_t o, const Window &win) {
    float *plane = dx + p * g.inPlane();
    float share =
        dy[p * g.outPlane() + o] / avgDivisor(g, o, win, countIncludePad);
    g.forEachTap(win, [&](int64_t, int64_t offset) { plane[offset] += share; });
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
