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

/// A convolution test case: batch, channels, filters, groups, window.
struct ConvGeometry {
  const char *name;
  int64_t n, c, k, group;
  WindowGeometry win;

  size_t xSize() const { return n * c * win.inSize(); }
  size_t wSize() const { return k * (c / group) * win.kernelSize(); }
  size_t ySize() const { return n * k * win.outSize(); }
};

/// The convolution cases every kernel test runs (the CPU one against a
/// naive reference, the CUDA one against the CPU runtime): padding,
/// asymmetric pads, strides, dilations, groups, depthwise, pointwise, odd
/// sizes, oneDNN's blocked layouts, a 7x7 stem, a ResNet-sized layer, and
/// the same in 3-D.
inline const std::vector<ConvGeometry> &convGeometries() {
  static const std::vector<ConvGeometry> cases = {
      {"rgb_3x3_pad1", 2, 3, 5, 1, {{7, 9}, {3, 3}, {1, 1}, {1, 1, 1, 1}}},
      {"stride2_asympad_group2_dil",
       3,
       6,
       10,
       2,
       {{11, 13}, {3, 2}, {2, 2}, {0, 1, 1, 2}, {2, 1}}},
      {"depthwise", 2, 8, 8, 8, {{9, 7}, {3, 3}, {1, 1}, {1, 1, 1, 1}}},
      {"depthwise_stride2_odd",
       3,
       13,
       13,
       13,
       {{15, 11}, {3, 3}, {2, 2}, {1, 1, 1, 1}}},
      {"group3_odd", 2, 9, 15, 3, {{10, 9}, {3, 3}, {2, 2}, {1, 1, 0, 0}}},
      {"pointwise_stride2",
       4,
       24,
       40,
       1,
       {{9, 9}, {1, 1}, {2, 2}, {0, 0, 0, 0}}},
      {"pointwise_odd", 3, 7, 13, 1, {{5, 5}, {1, 1}, {1, 1}, {0, 0, 0, 0}}},
      {"blocked_32x48", 4, 32, 48, 1, {{14, 14}, {3, 3}, {1, 1}, {1, 1, 1, 1}}},
      {"stride2_5x5_dil2",
       2,
       16,
       16,
       1,
       {{15, 12}, {5, 5}, {2, 1}, {3, 2, 2, 3}, {2, 2}}},
      {"stem_7x7_stride2_odd",
       2,
       3,
       16,
       1,
       {{33, 31}, {7, 7}, {2, 2}, {3, 3, 3, 3}}},
      {"resnet_64", 8, 64, 64, 1, {{28, 28}, {3, 3}, {1, 1}, {1, 1, 1, 1}}},
      {"3d_3x3x3_pad1",
       2,
       3,
       4,
       1,
       {{5, 6, 7}, {3, 3, 3}, {1, 1, 1}, {1, 1, 1, 1, 1, 1}}},
      {"3d_stride2_asympad_group2_dil",
       2,
       4,
       6,
       2,
       {{7, 6, 9}, {2, 3, 2}, {2, 1, 2}, {1, 0, 1, 0, 2, 1}, {2, 1, 1}}},
      {"3d_depthwise_dil2",
       2,
       4,
       4,
       4,
       {{6, 7, 8}, {3, 3, 3}, {1, 2, 1}, {2, 2, 2, 2, 2, 2}, {2, 2, 2}}},
      {"3d_pointwise_stride2",
       3,
       8,
       16,
       1,
       {{5, 9, 7}, {1, 1, 1}, {2, 2, 2}, {0, 0, 0, 0, 0, 0}}},
      {"3d_c3d_16",
       2,
       16,
       32,
       1,
       {{8, 16, 16}, {3, 3, 3}, {1, 1, 1}, {1, 1, 1, 1, 1, 1}}},
  };
  return cases;
}

/// A pooling test case: batch, channels, window.
struct PoolGeometry {
  const char *name;
  int64_t n, c;
  WindowGeometry win;

  size_t xSize() const { return n * c * win.inSize(); }
  size_t ySize() const { return n * c * win.outSize(); }
};

/// Pooling cases valid for max and average pooling alike (no window lies
/// entirely in the padding), run by every kernel test.
inline const std::vector<PoolGeometry> &poolGeometries() {
  static const std::vector<PoolGeometry> cases = {
      {"3x3_s2_pad1", 2, 3, {{9, 11}, {3, 3}, {2, 2}, {1, 1, 1, 1}}},
      {"2x2_s2", 3, 2, {{8, 10}, {2, 2}, {2, 2}, {0, 0, 0, 0}}},
      {"3x2_s1_asympad", 2, 5, {{7, 6}, {3, 2}, {1, 2}, {2, 1, 0, 1}}},
      {"2x2_s2_ceil_odd_plane", 2, 3, {{9, 5}, {2, 2}, {2, 2}, {0, 0, 1, 1}}},
      {"1x2_s1", 3, 4, {{5, 7}, {1, 2}, {1, 1}, {0, 0, 0, 0}}},
      {"1x1_s2", 2, 3, {{7, 5}, {1, 1}, {2, 2}, {0, 0, 0, 0}}},
      {"4x4_s3_pad", 2, 2, {{10, 11}, {4, 4}, {3, 3}, {1, 2, 2, 1}}},
      {"5x5_s2_pad2", 2, 3, {{11, 9}, {5, 5}, {2, 2}, {2, 2, 2, 2}}},
      {"3x3_s2_pad1_large", 8, 8, {{35, 35}, {3, 3}, {2, 2}, {1, 1, 1, 1}}},
      {"2x2_s2_ceil_large", 8, 9, {{29, 33}, {2, 2}, {2, 2}, {0, 0, 1, 1}}},
      {"3x3_s2_pad1_resnet", 16, 32, {{28, 28}, {3, 3}, {2, 2}, {1, 1, 1, 1}}},
      {"3d_3x3x3_s2_pad1",
       2,
       3,
       {{7, 8, 9}, {3, 3, 3}, {2, 2, 2}, {1, 1, 1, 1, 1, 1}}},
      {"3d_2x3x2_asympad",
       2,
       2,
       {{5, 7, 6}, {2, 3, 2}, {1, 2, 2}, {1, 1, 0, 0, 1, 1}}},
      {"3d_2x2x2_s2",
       2,
       3,
       {{5, 6, 7}, {2, 2, 2}, {2, 2, 2}, {0, 0, 0, 1, 1, 1}}},
      {"3x3_s2_ceil", 2, 3, {{8, 10}, {3, 3}, {2, 2}, {0, 0, 0, 0}, {}, true}},
      {"3x3_s2_pad1_ceil",
       2,
       2,
       {{8, 7}, {3, 3}, {2, 2}, {1, 1, 1, 1}, {}, true}},
      {"1x3_s2_ceil", 3, 2, {{1, 10}, {1, 3}, {1, 2}, {0, 1, 0, 1}, {}, true}},
      {"3d_2x2x2_s2_ceil",
       1,
       3,
       {{5, 5, 4}, {2, 2, 2}, {2, 2, 2}, {0, 0, 0, 0, 0, 0}, {}, true}},
      {"3d_3x3x3_s2_pad1_ceil",
       2,
       2,
       {{6, 8, 5}, {3, 3, 3}, {2, 2, 2}, {1, 1, 1, 1, 1, 1}, {}, true}},
  };
  return cases;
}

/// Dilated max pooling cases (average pooling takes no dilations).
inline const std::vector<PoolGeometry> &dilatedPoolGeometries() {
  static const std::vector<PoolGeometry> cases = {
      {"3x3_s1_dil2", 2, 3, {{9, 10}, {3, 3}, {1, 1}, {2, 2, 2, 2}, {2, 2}}},
      {"2x2_s2_pad1_dil2x3_ceil",
       2,
       2,
       {{8, 9}, {2, 2}, {2, 2}, {1, 1, 1, 1}, {2, 3}, true}},
      {"1x3_s2_dil2", 2, 3, {{1, 11}, {1, 3}, {1, 2}, {0, 2, 0, 1}, {1, 2}}},
      {"3d_2x2x2_dil",
       1,
       2,
       {{6, 5, 7}, {2, 2, 2}, {1, 2, 1}, {0, 1, 1, 0, 1, 1}, {2, 1, 3}}},
      {"3d_3x3x3_s2_dil2_ceil",
       2,
       2,
       {{9, 8, 7}, {3, 3, 3}, {2, 2, 2}, {2, 2, 2, 2, 2, 2}, {2, 2, 2}, true}},
  };
  return cases;
}

/// A max pooling window entirely in the padding (its output is -inf, its
/// argmax code the "none" one).
inline const PoolGeometry allPaddingPool = {
    "window_all_padding", 1, 3, {{4, 4}, {2, 2}, {2, 2}, {0, 0, 2, 2}}};

} // namespace blpa_test

/// The ABI's window arguments (Runtime.h) of a WindowGeometry: rank, in,
/// out, kernel, strides, pads, dilations. The temporaries live until the
/// end of the call.
#define WINDOW_ARGS(win)                                                       \
  (win).rank(), (win).in.data(), (win).out().data(), (win).kernel.data(),      \
      (win).strides.data(), (win).pads.data(), (win).dil().data()

#endif // BLPA_TEST_RUNTIME_WINDOWCASE_H
