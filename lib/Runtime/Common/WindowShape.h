//===- WindowShape.h - Convolution and pooling windows, both runtimes -----===//
//
// The window arrays of Runtime.h's convolution and pooling kernels, read
// and checked once (WindowShape), and the per-axis window arithmetic of
// pooling (PoolAxis), written once for the CPU runtime (plain C++) and the
// CUDA runtime (__host__ __device__): where a window starts, which of its
// taps fall inside the input or the padded extent (average pooling's
// divisors, ceil_mode windows included), and which windows cover an input
// position (the CUDA gradients' gather). Pooling kernels see three axes
// (depth, height, width): missing leading axes are size-1 axes with a
// 1-tap kernel.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_COMMON_WINDOWSHAPE_H
#define BLPA_RUNTIME_COMMON_WINDOWSHAPE_H

#include <stdint.h>

#include "HostDevice.h"

namespace blpa {

constexpr int kMaxSpatialRank = 3;

/// One spatial axis of a window: sizes, kernel taps, stride, pads and
/// dilation. T is int64_t on the host, int in CUDA kernels (after range
/// checks).
template <typename T> struct PoolAxis {
  T in, out, kernel, stride, padBegin, padEnd, dilation;

  /// Input position of tap 0 of window o (in the padding when negative).
  BLPA_HOST_DEVICE T origin(T o) const { return o * stride - padBegin; }

  /// The first tap of window o at a position >= 0.
  BLPA_HOST_DEVICE T firstTap(T o) const {
    T at = origin(o);
    return at >= 0 ? T(0) : (dilation - 1 - at) / dilation;
  }

  /// One past the last tap of window o at a position < `limit`.
  BLPA_HOST_DEVICE T endTapBefore(T o, T limit) const {
    T room = limit - origin(o);
    if (room <= 0)
      return 0;
    T taps = (room + dilation - 1) / dilation;
    return taps < kernel ? taps : kernel;
  }

  /// One past the last tap of window o inside the input.
  BLPA_HOST_DEVICE T endTap(T o) const { return endTapBefore(o, in); }

  /// Taps of window o inside the padded extent [-padBegin, in + padEnd):
  /// the count_include_pad divisor. A ceil_mode window may run past it.
  BLPA_HOST_DEVICE T paddedTaps(T o) const {
    return endTapBefore(o, in + padEnd);
  }

  /// Taps of window o inside the input.
  BLPA_HOST_DEVICE T realTaps(T o) const {
    T first = firstTap(o), end = endTap(o);
    return end > first ? end - first : T(0);
  }

  /// The tap of window o at input position i, or -1 when i is not one.
  BLPA_HOST_DEVICE T tapAt(T o, T i) const {
    T offset = i - origin(o);
    if (offset < 0)
      return -1;
    // Integer division is slow on GPUs; most windows are dense.
    if (dilation != 1) {
      if (offset % dilation != 0)
        return -1;
      offset /= dilation;
    }
    return offset < kernel ? offset : T(-1);
  }

  /// The windows [first, last] whose span (tap 0 to the last tap) holds
  /// input position i; with dilation some of them skip it (tapAt).
  BLPA_HOST_DEVICE void covering(T i, T &first, T &last) const {
    T lo = i + padBegin - (kernel - 1) * dilation; // o * stride must be >= lo
    first = lo <= 0 ? T(0) : (lo + stride - 1) / stride;
    T hi = (i + padBegin) / stride;
    last = hi < out - 1 ? hi : out - 1;
  }
};

/// The ABI's window arrays of one call.
struct WindowShape {
  int64_t rank = 0;
  int64_t in[kMaxSpatialRank], out[kMaxSpatialRank], kernel[kMaxSpatialRank],
      stride[kMaxSpatialRank], padBegin[kMaxSpatialRank],
      padEnd[kMaxSpatialRank], dilation[kMaxSpatialRank];

  /// Reads the arrays; false when `rank` is not 1 to 3 or a value is out of
  /// range (negative sizes or pads, kernel, stride or dilation below 1).
  bool read(int64_t rankIn, const int64_t *inDims, const int64_t *outDims,
            const int64_t *kernelDims, const int64_t *strides,
            const int64_t *pads, const int64_t *dilations) {
    if (rankIn < 1 || rankIn > kMaxSpatialRank)
      return false;
    rank = rankIn;
    for (int64_t i = 0; i < rank; ++i) {
      in[i] = inDims[i];
      out[i] = outDims[i];
      kernel[i] = kernelDims[i];
      stride[i] = strides[i];
      padBegin[i] = pads[i];
      padEnd[i] = pads[rank + i];
      dilation[i] = dilations[i];
      if (in[i] < 0 || out[i] < 0 || kernel[i] < 1 || stride[i] < 1 ||
          padBegin[i] < 0 || padEnd[i] < 0 || dilation[i] < 1)
        return false;
    }
    return true;
  }

  /// Axis `axis` of 3 (depth, height, width), a trivial one where the call
  /// has fewer spatial dimensions.
  PoolAxis<int64_t> poolAxis(int axis) const {
    int64_t i = axis - (kMaxSpatialRank - rank);
    if (i < 0)
      return {1, 1, 1, 1, 0, 0, 1};
    return {in[i],       out[i],    kernel[i],  stride[i],
            padBegin[i], padEnd[i], dilation[i]};
  }

  int64_t inSize() const { return product(in); }
  int64_t outSize() const { return product(out); }
  int64_t kernelSize() const { return product(kernel); }

private:
  int64_t product(const int64_t *values) const {
    int64_t p = 1;
    for (int64_t i = 0; i < rank; ++i)
      p *= values[i];
    return p;
  }
};

/// The static arguments every convolution kernel of the ABI takes.
struct ConvShape {
  int64_t n, c, k, group;
  WindowShape window;

  /// Reads the ABI's arguments; false when the window is invalid
  /// (WindowShape::read).
  bool read(int64_t batch, int64_t channels, int64_t filters, int64_t groups,
            int64_t rank, const int64_t *in, const int64_t *out,
            const int64_t *kernel, const int64_t *strides, const int64_t *pads,
            const int64_t *dilations) {
    n = batch;
    c = channels;
    k = filters;
    group = groups;
    return window.read(rank, in, out, kernel, strides, pads, dilations);
  }
};

} // namespace blpa

#endif // BLPA_RUNTIME_COMMON_WINDOWSHAPE_H
