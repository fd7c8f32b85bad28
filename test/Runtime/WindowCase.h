//===- WindowCase.h - Convolution and pooling test geometries -------------===//
//
// The window of a convolution or pooling test case over 1 to 3 spatial
// dimensions, shared by the CPU kernel test, the CUDA kernel test and the
// CUDA emulation test: output sizes (floor or ceil_mode, as ONNX and
// PyTorch), sizes, the ABI's window arguments (WINDOW_ARGS) and, for naive
// references, every tap of every window straight from the definition.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_TEST_RUNTIME_WINDOWCASE_H
#define BLPA_TEST_RUNTIME_WINDOWCASE_H

#include <cstdint>
#include <functional>
#include <vector>

namespace blpa_test {

using Dims = std::vector<int64_t>;

struct WindowGeometry {
  /// Spatial dimensions of the input, kernel, strides, pads (begins, then
  /// ends) and dilations (empty: all 1).
  Dims in, kernel, strides, pads, dilations = {};
  bool ceilMode = false;

  int64_t rank() const { return int64_t(in.size()); }
  Dims dil() const {
    return dilations.empty() ? Dims(in.size(), 1) : dilations;
  }

  /// Output sizes: windows starting in the input or the leading padding
  /// (the last one may run past the end with ceilMode).
  Dims out() const {
    Dims sizes;
    Dims d = dil();
    for (int64_t i = 0; i < rank(); ++i) {
      int64_t extent = (kernel[i] - 1) * d[i] + 1;
      int64_t span = in[i] + pads[i] + pads[rank() + i] - extent;
      int64_t o = span / strides[i] + 1;
      if (ceilMode && span % strides[i] != 0) {
        ++o;
        if ((o - 1) * strides[i] >= in[i] + pads[i])
          --o;
      }
      sizes.push_back(o);
    }
    return sizes;
  }

  int64_t inSize() const { return product(in); }
  int64_t outSize() const { return product(out()); }
  int64_t kernelSize() const { return product(kernel); }

  /// visit(outIndex, inIndex, tap, inPadded) for every tap of every window
  /// of one plane, windows and taps in row-major order: inIndex is -1 for a
  /// tap outside the input, `tap` its row-major index among the kernel's
  /// taps, inPadded whether it lies inside the padded extent.
  void forEachTap(
      const std::function<void(int64_t, int64_t, int64_t, bool)> &visit) const {
    Dims o = out(), d = dil();
    int64_t windows = product(o), taps = product(kernel);
    for (int64_t w = 0; w < windows; ++w)
      for (int64_t t = 0; t < taps; ++t) {
        int64_t inIndex = 0, wRest = w, tRest = t;
        bool inside = true, inPadded = true;
        int64_t stride = 1;
        for (int64_t i = rank() - 1; i >= 0; --i) {
          int64_t oi = wRest % o[i], ki = tRest % kernel[i];
          wRest /= o[i];
          tRest /= kernel[i];
          int64_t at = oi * strides[i] - pads[i] + ki * d[i];
          inside = inside && at >= 0 && at < in[i];
          inPadded = inPadded && at < in[i] + pads[rank() + i];
          inIndex += at * stride;
          stride *= in[i];
        }
        visit(w, inside ? inIndex : -1, t, inPadded);
      }
  }

private:
  static int64_t product(const Dims &dims) {
    int64_t p = 1;
    for (int64_t v : dims)
      p *= v;
    return p;
  }
};

} // namespace blpa_test

/// The ABI's window arguments (Runtime.h) of a WindowGeometry: rank, in,
/// out, kernel, strides, pads, dilations. The temporaries live until the
/// end of the call.
#define WINDOW_ARGS(win)                                                       \
  (win).rank(), (win).in.data(), (win).out().data(), (win).kernel.data(),      \
      (win).strides.data(), (win).pads.data(), (win).dil().data()

#endif // BLPA_TEST_RUNTIME_WINDOWCASE_H
