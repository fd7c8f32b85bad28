//===- RuntimeKernelTest.cpp - CPU runtime kernels vs naive references ---===//
//
// Every kernel of blpa/Runtime/Runtime.h runs on seeded random data with
// awkward shapes (odd sizes, asymmetric pads, stride 2, groups, dilation,
// broadcasts) and is compared with a naive reference computed in double.
// The conv, batch-norm, gemm and gradient kernels are also run twice and must
// give bitwise identical results; the activation-code kernels and dropout
// also with one thread and with several. Packed codes are checked byte by
// byte against the layout of Runtime.h. Where a kernel does one float
// operation per element (broadcasting arithmetic, copies, padding, clip,
// dropout), its reference rounds the exact result once and the two must
// match bit for bit; dropout masks are checked against the hash of
// lib/Runtime/Common/DropoutMask.h and for their statistics. The shape
// tables of KernelCases.h serve these references too; then every case of
// KernelCases.h runs with more threads than cores against one thread
// (ThreadsBackend: bit for bit bar sums and libraries, in guarded memory,
// repeated), as the CUDA emulation and CUDA kernel tests run them against
// this runtime.
//
// Output: one `PASS name` or `FAIL name: detail` line per check, then
// `N passed, M failed`. Exit status 0 iff nothing failed. `--bench` instead
// times a [64,32,28,28] x [32,32,3,3] convolution forward and backward, and
// the activation-code kernels next to the exact kernels they replace.
//
//===----------------------------------------------------------------------===//

#include "blpa/Runtime/Runtime.h"

#include "KernelCases.h"

// The dropout mask Runtime.h defines.
#include "../../lib/Runtime/Common/DropoutMask.h"

#include <omp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace {

using blpa_test::ActivationCase;
using blpa_test::awayFromZero;
using blpa_test::Bytes;
using blpa_test::convGeometries;
using blpa_test::ConvGeometry;
using blpa_test::Floats;
using blpa_test::packedSize;
using blpa_test::product;
using blpa_test::randomFloats;
using blpa_test::randomInts;
using blpa_test::randomNormals;
using blpa_test::report;
using blpa_test::rng;
using blpa_test::WindowGeometry;
using blpa_test::withValues;
using Doubles = std::vector<double>;

/// ||got - want|| / ||want|| must not exceed tol (absolute when want is 0);
/// NaN only where the reference is NaN.
void expectClose(const std::string &name, const float *got, const Doubles &want,
                 double tol = 1e-5) {
  double diff = 0, norm = 0;
  bool finite = true;
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::isnan(want[i])) {
      finite &= std::isnan(got[i]);
      continue;
    }
    finite &= std::isfinite(got[i]);
    diff += (got[i] - want[i]) * (got[i] - want[i]);
    norm += want[i] * want[i];
  }
  double err = norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
  char detail[160];
  std::snprintf(detail, sizeof(detail),
                "relative error %.3g exceeds %.1g (%zu elements)%s", err, tol,
                want.size(), finite ? "" : ", non-finite output");
  report(name, finite && err <= tol, detail);
}

void expectClose(const std::string &name, const Floats &got,
                 const Doubles &want, double tol = 1e-5) {
  if (got.size() != want.size())
    return report(name, false, "size mismatch");
  expectClose(name, got.data(), want, tol);
}

bool sameBits(const Floats &a, const Floats &b) {
  return a.size() == b.size() &&
         std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void expectBitwise(const std::string &name, const Floats &a, const Floats &b) {
  report(name, sameBits(a, b), "two runs on the same input differ");
}

blpa_context ctx;

//===----------------------------------------------------------------------===//
// Convolution
//===----------------------------------------------------------------------===//

/// A shared case (WindowCase.h) with its naive reference and its calls.
struct ConvCase : ConvGeometry {

  /// Calls tap(xIndex, wIndex, yIndex) for every product x * w that
  /// contributes to y, straight from the definition of convolution.
  void
  forEachTap(const std::function<void(size_t, size_t, size_t)> &tap) const {
    int64_t cg = c / group, kg = k / group, inPlane = win.inSize(),
            outPlane = win.outSize(), taps = win.kernelSize();
    struct PlaneTap {
      int64_t out, in, tap;
    };
    std::vector<PlaneTap> planeTaps;
    win.forEachTap([&](int64_t o, int64_t i, int64_t t, bool) {
      if (i >= 0)
        planeTaps.push_back({o, i, t});
    });
    for (int64_t b = 0; b < n; ++b)
      for (int64_t ko = 0; ko < k; ++ko)
        for (int64_t ci = 0; ci < cg; ++ci) {
          int64_t ch = ko / kg * cg + ci;
          for (const PlaneTap &pt : planeTaps)
            tap((b * c + ch) * inPlane + pt.in, (ko * cg + ci) * taps + pt.tap,
                (b * k + ko) * outPlane + pt.out);
        }
  }

  void forward(const float *x, const float *wt, const float *b,
               float *y) const {
    blpa_conv(&ctx, x, wt, b, y, n, c, k, group, WINDOW_ARGS(win));
  }
  void gradInput(const float *dy, const float *wt, float *dx) const {
    blpa_conv_grad_input(&ctx, dy, wt, dx, n, c, k, group, WINDOW_ARGS(win));
  }
  void gradWeight(const float *dy, const float *x, float *dw) const {
    blpa_conv_grad_weight(&ctx, dy, x, dw, n, c, k, group, WINDOW_ARGS(win));
  }
};

void testConv(const ConvCase &cc, const std::string &suffix = "") {
  std::string base = std::string(cc.win.rank() == 3 ? "conv3d/" : "conv2d/") +
                     cc.name + suffix;
  Floats x = randomFloats(cc.xSize()), wt = randomFloats(cc.wSize()),
         b = randomFloats(cc.k), dy = randomFloats(cc.ySize());

  Floats y(cc.ySize());
  Doubles yRef(cc.ySize(), 0.0);
  cc.forEachTap([&](size_t xi, size_t wi, size_t yi) {
    yRef[yi] += double(x[xi]) * wt[wi];
  });
  cc.forward(x.data(), wt.data(), nullptr, y.data());
  expectClose(base + "/forward", y, yRef);
  int64_t plane = cc.win.outSize();
  for (size_t i = 0; i < yRef.size(); ++i)
    yRef[i] += b[i / plane % cc.k];
  cc.forward(x.data(), wt.data(), b.data(), y.data());
  expectClose(base + "/forward_bias", y, yRef);

  Floats dx(cc.xSize());
  Doubles dxRef(cc.xSize(), 0.0);
  cc.forEachTap([&](size_t xi, size_t wi, size_t yi) {
    dxRef[xi] += double(dy[yi]) * wt[wi];
  });
  cc.gradInput(dy.data(), wt.data(), dx.data());
  expectClose(base + "/grad_input", dx, dxRef);

  Floats dw(cc.wSize());
  Doubles dwRef(cc.wSize(), 0.0);
  cc.forEachTap([&](size_t xi, size_t wi, size_t yi) {
    dwRef[wi] += double(dy[yi]) * x[xi];
  });
  cc.gradWeight(dy.data(), x.data(), dw.data());
  expectClose(base + "/grad_weight", dw, dwRef);
}

/// The convolutions again with their scratch in a workspace of `bytes`
/// (the plan's, blpa_runtime_set_workspace) between guard bytes: a large
/// one holds every shape's whole batch, so nothing is taken outside it; a
/// small one makes shapes run in chunks (or, where one sample does not
/// fit, outside it). The results stay those of the definition, and no
/// guard byte is written.
void testConvInWorkspace(int64_t bytes, const std::string &suffix) {
  blpa_runtime_shutdown(&ctx);
  blpa_runtime_init(&ctx);
  constexpr size_t guard = 4096;
  constexpr uint8_t pattern = 0xA5;
  size_t total = size_t(bytes) + 2 * guard;
  std::unique_ptr<uint8_t, decltype(&std::free)> region(
      static_cast<uint8_t *>(std::aligned_alloc(256, total)), &std::free);
  std::memset(region.get(), pattern, total);
  blpa_runtime_set_workspace(&ctx, region.get() + guard, bytes);
  for (const ConvGeometry &geometry : convGeometries())
    testConv(ConvCase{geometry}, suffix);
  bool guardsKept = true;
  for (size_t i = 0; i < guard; ++i)
    guardsKept &=
        region.get()[i] == pattern && region.get()[total - 1 - i] == pattern;
  report("conv" + suffix + "/guards_kept", guardsKept,
         "a byte next to the workspace was written");
  if (bytes >= (int64_t(64) << 20))
    report("conv" + suffix + "/nothing_outside",
           blpa_runtime_outside_bytes(&ctx) == 0,
           std::to_string(blpa_runtime_outside_bytes(&ctx)) +
               " bytes of scratch outside the workspace");
  blpa_runtime_set_workspace(&ctx, nullptr, 0);
  blpa_runtime_shutdown(&ctx);
  blpa_runtime_init(&ctx);
}

//===----------------------------------------------------------------------===//
// Batch norm
//===----------------------------------------------------------------------===//

struct ChannelStats {
  Doubles mean, var; // biased variance
};

ChannelStats channelStats(const Floats &x, int64_t n, int64_t c,
                          int64_t spatial) {
  ChannelStats st{Doubles(c, 0.0), Doubles(c, 0.0)};
  double count = double(n * spatial);
  for (int64_t b = 0; b < n; ++b)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t j = 0; j < spatial; ++j)
        st.mean[ch] += x[(b * c + ch) * spatial + j] / count;
  for (int64_t b = 0; b < n; ++b)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t j = 0; j < spatial; ++j) {
        double d = x[(b * c + ch) * spatial + j] - st.mean[ch];
        st.var[ch] += d * d / count;
      }
  return st;
}

void testBatchNorm(const char *name, int64_t n, int64_t c, int64_t spatial) {
  std::string base = std::string("batch_norm/") + name;
  const double eps = 1e-5;
  size_t numel = n * c * spatial;
  // An offset mean makes a naive E[x^2] - E[x]^2 lose digits.
  Floats x = randomFloats(numel, 2.0f, 4.0f), scale = randomFloats(c, 0.5, 2),
         bias = randomFloats(c), dy = randomFloats(numel);
  ChannelStats st = channelStats(x, n, c, spatial);
  auto channelOf = [&](size_t i) { return int64_t(i) / spatial % c; };

  Floats y(numel), mean(c), invStd(c);
  blpa_batch_norm_train(&ctx, x.data(), scale.data(), bias.data(), y.data(),
                        mean.data(), invStd.data(), n, c, spatial, eps);
  Doubles invStdRef(c), yRef(numel);
  for (int64_t ch = 0; ch < c; ++ch)
    invStdRef[ch] = 1 / std::sqrt(st.var[ch] + eps);
  for (size_t i = 0; i < numel; ++i) {
    int64_t ch = channelOf(i);
    yRef[i] = scale[ch] * (x[i] - st.mean[ch]) * invStdRef[ch] + bias[ch];
  }
  expectClose(base + "/train_y", y, yRef);
  expectClose(base + "/train_mean", mean, st.mean, 1e-6);
  expectClose(base + "/train_inv_std", invStd, invStdRef);

  Floats var = randomFloats(c, 0.1f, 3.0f);
  blpa_batch_norm_infer(&ctx, x.data(), scale.data(), bias.data(), mean.data(),
                        var.data(), y.data(), n, c, spatial, eps);
  for (size_t i = 0; i < numel; ++i) {
    int64_t ch = channelOf(i);
    yRef[i] =
        scale[ch] * (x[i] - mean[ch]) / std::sqrt(var[ch] + eps) + bias[ch];
  }
  expectClose(base + "/infer", y, yRef);

  // Gradient from the definition in Runtime.h, using the kernel's own
  // mean/invStd so that only the backward arithmetic is under test.
  Floats dx(numel), dscale(c), dbias(c);
  blpa_batch_norm_grad(&ctx, dy.data(), x.data(), scale.data(), mean.data(),
                       invStd.data(), dx.data(), dscale.data(), dbias.data(), n,
                       c, spatial);
  Doubles dscaleRef(c, 0.0), dbiasRef(c, 0.0), dxRef(numel);
  auto xhat = [&](size_t i) {
    return (double(x[i]) - mean[channelOf(i)]) * invStd[channelOf(i)];
  };
  for (size_t i = 0; i < numel; ++i) {
    dbiasRef[channelOf(i)] += dy[i];
    dscaleRef[channelOf(i)] += dy[i] * xhat(i);
  }
  double m = double(n * spatial);
  for (size_t i = 0; i < numel; ++i) {
    int64_t ch = channelOf(i);
    dxRef[i] = scale[ch] * invStd[ch] *
               (dy[i] - dbiasRef[ch] / m - xhat(i) * dscaleRef[ch] / m);
  }
  expectClose(base + "/grad_input", dx, dxRef);
  expectClose(base + "/grad_scale", dscale, dscaleRef);
  expectClose(base + "/grad_bias", dbias, dbiasRef);
}

/// Layer norm over each shape of KernelCases.h's lnShapes against its
/// definition in double (inputs offset by 100, where a one-pass variance
/// would lose digits); the gradient from the kernel's own statistics, so
/// that only the backward arithmetic is under test.
void testLayerNormReference(const blpa_test::LnShape &s) {
  std::string base = std::string("layer_norm_reference/") + s.name;
  const double eps = 1e-5;
  size_t numel = size_t(s.rows * s.cols), cols = size_t(s.cols);
  Floats x = randomFloats(numel, 99, 101), scale = randomFloats(cols, 0.5, 2),
         bias = randomFloats(cols), dy = randomFloats(numel);
  Floats y(numel), mean(s.rows), invStd(s.rows);
  blpa_layer_norm(&ctx, x.data(), scale.data(), bias.data(), y.data(),
                  mean.data(), invStd.data(), s.rows, s.cols, eps);
  Doubles meanRef(s.rows, 0.0), invStdRef(s.rows), yRef(numel);
  for (size_t i = 0; i < numel; ++i)
    meanRef[i / cols] += double(x[i]) / double(cols);
  Doubles var(s.rows, 0.0);
  for (size_t i = 0; i < numel; ++i) {
    double d = x[i] - meanRef[i / cols];
    var[i / cols] += d * d / double(cols);
  }
  for (int64_t r = 0; r < s.rows; ++r)
    invStdRef[r] = 1 / std::sqrt(var[r] + eps);
  // The statistics against their definition; y from the kernel's own
  // float32 statistics, as the kernel computes it: with inputs near 100
  // and rows of a few columns, the mean's float32 rounding alone moves y by
  // 2^-24 * 100 * inv_std, above 1e-5 of y on some draws.
  expectClose(base + "/mean", mean, meanRef, 1e-7);
  expectClose(base + "/inv_std", invStd, invStdRef, 1e-6);
  for (size_t i = 0; i < numel; ++i)
    yRef[i] = (double(x[i]) - mean[i / cols]) * invStd[i / cols] *
                  scale[i % cols] +
              bias[i % cols];
  expectClose(base + "/y", y, yRef);

  Floats dx(numel), dscale(cols), dbias(cols);
  blpa_layer_norm_grad(&ctx, dy.data(), x.data(), scale.data(), mean.data(),
                       invStd.data(), dx.data(), dscale.data(), dbias.data(),
                       s.rows, s.cols);
  auto xhat = [&](size_t i) {
    return (double(x[i]) - mean[i / cols]) * invStd[i / cols];
  };
  Doubles dscaleRef(cols, 0.0), dbiasRef(cols, 0.0), sumG(s.rows, 0.0),
      sumGX(s.rows, 0.0), dxRef(numel);
  for (size_t i = 0; i < numel; ++i) {
    double g = double(dy[i]) * scale[i % cols];
    dscaleRef[i % cols] += dy[i] * xhat(i);
    dbiasRef[i % cols] += dy[i];
    sumG[i / cols] += g;
    sumGX[i / cols] += g * xhat(i);
  }
  for (size_t i = 0; i < numel; ++i) {
    size_t r = i / cols;
    dxRef[i] = invStd[r] * (double(dy[i]) * scale[i % cols] - sumG[r] / cols -
                            xhat(i) * sumGX[r] / cols);
  }
  expectClose(base + "/grad_input", dx, dxRef);
  expectClose(base + "/grad_scale", dscale, dscaleRef);
  expectClose(base + "/grad_bias", dbias, dbiasRef);
}

/// The fused BN-ReLU kernels against the unfused ones: the forward and the
/// recompute bit for bit (the backward pass relies on it for the ReLU mask),
/// the backward bit for bit against blpa_batch_norm_grad of the masked
/// gradient.
void testBatchNormRelu(const char *name, int64_t n, int64_t c,
                       int64_t spatial) {
  std::string base = std::string("batch_norm_relu/") + name;
  const double eps = 1e-3;
  size_t numel = n * c * spatial;
  Floats x = randomFloats(numel, -3.0f, 3.0f), scale = randomFloats(c, -2, 2),
         bias = randomFloats(c), dy = randomFloats(numel);
  Floats y(numel), mean(c), invStd(c);
  blpa_batch_norm_train(&ctx, x.data(), scale.data(), bias.data(), y.data(),
                        mean.data(), invStd.data(), n, c, spatial, eps);
  Floats yRelu(numel), meanRelu(c), invStdRelu(c);
  blpa_batch_norm_relu_train(&ctx, x.data(), scale.data(), bias.data(),
                             yRelu.data(), meanRelu.data(), invStdRelu.data(),
                             n, c, spatial, eps);
  Floats relued = y;
  for (float &v : relued)
    v = std::max(v, 0.0f);
  report(base + "/train",
         sameBits(yRelu, relued) && sameBits(mean, meanRelu) &&
             sameBits(invStd, invStdRelu),
         "differs from blpa_batch_norm_train followed by a ReLU");

  Floats again(numel);
  for (int64_t relu : {0, 1}) {
    blpa_batch_norm_apply(&ctx, x.data(), scale.data(), bias.data(),
                          mean.data(), invStd.data(), again.data(), n, c,
                          spatial, relu);
    report(base + (relu ? "/apply_relu" : "/apply"),
           sameBits(again, relu ? yRelu : y),
           "the recomputed output differs from the forward's");
  }

  Floats masked(numel);
  for (size_t i = 0; i < numel; ++i)
    masked[i] = yRelu[i] > 0 ? dy[i] : 0.0f;
  Floats dx(numel), dscale(c), dbias(c), dxRef(numel), dscaleRef(c),
      dbiasRef(c);
  blpa_batch_norm_relu_grad(&ctx, dy.data(), x.data(), scale.data(),
                            bias.data(), mean.data(), invStd.data(), dx.data(),
                            dscale.data(), dbias.data(), n, c, spatial);
  blpa_batch_norm_grad(&ctx, masked.data(), x.data(), scale.data(), mean.data(),
                       invStd.data(), dxRef.data(), dscaleRef.data(),
                       dbiasRef.data(), n, c, spatial);
  report(base + "/grad",
         sameBits(dx, dxRef) && sameBits(dscale, dscaleRef) &&
             sameBits(dbias, dbiasRef),
         "differs from blpa_batch_norm_grad of the masked gradient");
}

void testRunningStats() {
  const int64_t c = 9, count = 37;
  const double momentum = 0.9, eps = 1e-3;
  Floats runMean = randomFloats(c), runVar = randomFloats(c, 0.5, 2),
         mean = randomFloats(c), invStd = randomFloats(c, 0.5, 3);
  Doubles meanRef(c), varRef(c);
  for (int64_t ch = 0; ch < c; ++ch) {
    double var =
        (1 / (double(invStd[ch]) * invStd[ch]) - eps) * count / (count - 1);
    meanRef[ch] = runMean[ch] * momentum + mean[ch] * (1 - momentum);
    varRef[ch] = runVar[ch] * momentum + var * (1 - momentum);
  }
  Floats oldMean = runMean, oldVar = runVar;
  ctx.skip_update = 1;
  blpa_update_running_stats(&ctx, runMean.data(), runVar.data(), mean.data(),
                            invStd.data(), c, count, momentum, eps);
  report("update_running_stats/skip_update",
         runMean == oldMean && runVar == oldVar, "statistics changed");
  ctx.skip_update = 0;
  blpa_update_running_stats(&ctx, runMean.data(), runVar.data(), mean.data(),
                            invStd.data(), c, count, momentum, eps);
  expectClose("update_running_stats/mean", runMean, meanRef);
  expectClose("update_running_stats/var", runVar, varRef);
}

//===----------------------------------------------------------------------===//
// Element-wise, broadcast and reductions
//===----------------------------------------------------------------------===//

void testRelu() {
  const size_t numel = 50001; // several parallel blocks, odd tail
  Floats x = randomFloats(numel), dy = randomFloats(numel), y(numel), dx(numel);
  Doubles yRef(numel), dxRef(numel);
  blpa_relu(&ctx, x.data(), y.data(), numel);
  for (size_t i = 0; i < numel; ++i)
    yRef[i] = x[i] > 0 ? x[i] : 0.0;
  expectClose("relu", y, yRef, 0);
  blpa_relu_grad(&ctx, dy.data(), y.data(), dx.data(), numel);
  for (size_t i = 0; i < numel; ++i)
    dxRef[i] = yRef[i] > 0 ? dy[i] : 0.0;
  expectClose("relu_grad", dx, dxRef, 0);
}

/// Row-major multi-index of `flat` in `dims`.
std::vector<int64_t> unflatten(int64_t flat, const std::vector<int64_t> &dims) {
  std::vector<int64_t> index(dims.size());
  for (size_t i = dims.size(); i-- > 0;) {
    index[i] = flat % dims[i];
    flat /= dims[i];
  }
  return index;
}

/// Flat offset of `index` in `dims`, clamping to 0 where dims[i] is 1.
int64_t broadcastOffset(const std::vector<int64_t> &index,
                        const std::vector<int64_t> &dims) {
  int64_t offset = 0;
  for (size_t i = 0; i < dims.size(); ++i)
    offset = offset * dims[i] + (dims[i] == 1 ? 0 : index[i]);
  return offset;
}

void testReduceSumTo(const char *name, std::vector<int64_t> in,
                     std::vector<int64_t> out, double scale) {
  Floats x = randomFloats(product(in)), y(product(out));
  Doubles yRef(y.size(), 0.0);
  for (size_t i = 0; i < x.size(); ++i)
    yRef[broadcastOffset(unflatten(i, in), out)] += x[i];
  for (double &v : yRef)
    v *= scale;
  blpa_reduce_sum_to(&ctx, x.data(), y.data(), in.size(), in.data(), out.data(),
                     scale);
  expectClose(std::string("reduce_sum_to/") + name, y, yRef);
}

void testCopy() {
  Floats src = randomFloats(1001), dst(1001);
  blpa_copy(&ctx, dst.data(), src.data(), src.size() * sizeof(float));
  report("copy", src == dst, "bytes differ");
}

void testFill() {
  Floats dst = randomFloats(70001);
  blpa_fill(&ctx, dst.data(), dst.size(), 1.25);
  bool ok =
      std::all_of(dst.begin(), dst.end(), [](float v) { return v == 1.25f; });
  report("fill", ok, "an element differs from the fill value");
}

void testSgd() {
  const size_t numel = 40003;
  Floats param = randomFloats(numel), grad = randomFloats(numel),
         mom = randomFloats(numel), gradOut(numel);
  ctx.lr = 0.1f;
  ctx.momentum = 0.9f;
  ctx.weight_decay = 5e-4f;
  Floats param0 = param, mom0 = mom;
  ctx.skip_update = 1;
  blpa_sgd_update(&ctx, param.data(), grad.data(), mom.data(), gradOut.data(),
                  numel);
  report("sgd_update/skip_update",
         param == param0 && mom == mom0 && gradOut == grad,
         "parameters changed or gradient not recorded");
  ctx.skip_update = 0;
  std::fill(gradOut.begin(), gradOut.end(), 0.0f);
  blpa_sgd_update(&ctx, param.data(), grad.data(), mom.data(), gradOut.data(),
                  numel);
  Doubles paramRef(numel), momRef(numel);
  for (size_t i = 0; i < numel; ++i) {
    double g = grad[i] + double(ctx.weight_decay) * param0[i];
    momRef[i] = double(ctx.momentum) * mom0[i] + g;
    paramRef[i] = param0[i] - double(ctx.lr) * momRef[i];
  }
  expectClose("sgd_update/param", param, paramRef);
  expectClose("sgd_update/momentum", mom, momRef);
  report("sgd_update/grad_out", gradOut == grad, "gradient not recorded");
}

//===----------------------------------------------------------------------===//
// Pooling
//===----------------------------------------------------------------------===//

/// A shared case (WindowCase.h) with its naive reference.
struct PoolCase : blpa_test::PoolGeometry {

  /// Calls visit(yIndex, xIndex or -1 outside the input, tap, whether the
  /// tap is inside the padded extent) for every window tap, in row-major
  /// order within each window.
  void forEachTap(
      const std::function<void(size_t, int64_t, int64_t, bool)> &visit) const {
    int64_t inPlane = win.inSize(), outPlane = win.outSize();
    for (int64_t p = 0; p < n * c; ++p)
      win.forEachTap([&](int64_t o, int64_t i, int64_t tap, bool inPadded) {
        visit(p * outPlane + o, i < 0 ? -1 : p * inPlane + i, tap, inPadded);
      });
  }
};

void testMaxPool(const PoolCase &pc) {
  std::string base = std::string("max_pool/") + pc.name;
  // Negative small integers: many ties, and a padded zero would win if
  // padding were treated as a value.
  Floats x = randomInts(pc.xSize(), -4, -1), dy = randomFloats(pc.ySize());
  std::vector<int64_t> argmax(pc.ySize(), -1);
  pc.forEachTap([&](size_t yi, int64_t xi, int64_t, bool) {
    if (xi >= 0 && (argmax[yi] < 0 || x[xi] > x[argmax[yi]]))
      argmax[yi] = xi;
  });
  Doubles yRef(pc.ySize()), dxRef(pc.xSize(), 0.0);
  for (size_t i = 0; i < yRef.size(); ++i) {
    yRef[i] = x[argmax[i]];
    dxRef[argmax[i]] += dy[i];
  }
  Floats y(pc.ySize()), dx(pc.xSize(), 42.0f);
  blpa_max_pool(&ctx, x.data(), y.data(), pc.n, pc.c, WINDOW_ARGS(pc.win));
  expectClose(base + "/forward", y, yRef, 0);
  blpa_max_pool_grad(&ctx, dy.data(), x.data(), dx.data(), pc.n, pc.c,
                     WINDOW_ARGS(pc.win));
  expectClose(base + "/grad", dx, dxRef, 1e-6);
}

void testAvgPool(const PoolCase &pc, int64_t countIncludePad) {
  std::string base = std::string("avg_pool/") + pc.name +
                     (countIncludePad ? "/include_pad" : "/exclude_pad");
  Floats x = randomFloats(pc.xSize()), dy = randomFloats(pc.ySize());
  Doubles count(pc.ySize(), 0.0), yRef(pc.ySize(), 0.0), dxRef(pc.xSize(), 0.0);
  // count_include_pad counts the taps inside the padded extent (a ceil_mode
  // window running past it is clipped), else those inside the input.
  pc.forEachTap([&](size_t yi, int64_t xi, int64_t, bool inPadded) {
    if (countIncludePad ? inPadded : xi >= 0)
      count[yi] += 1;
    if (xi >= 0)
      yRef[yi] += x[xi];
  });
  for (size_t i = 0; i < yRef.size(); ++i)
    yRef[i] /= count[i];
  pc.forEachTap([&](size_t yi, int64_t xi, int64_t, bool) {
    if (xi >= 0)
      dxRef[xi] += dy[yi] / count[yi];
  });
  Floats y(pc.ySize()), dx(pc.xSize(), 42.0f);
  blpa_avg_pool(&ctx, x.data(), y.data(), pc.n, pc.c, WINDOW_ARGS(pc.win),
                countIncludePad);
  expectClose(base + "/forward", y, yRef);
  blpa_avg_pool_grad(&ctx, dy.data(), dx.data(), pc.n, pc.c,
                     WINDOW_ARGS(pc.win), countIncludePad);
  expectClose(base + "/grad", dx, dxRef);
}

void testGlobalAvgPool() {
  const int64_t n = 5, c = 7, spatial = 13 * 11;
  Floats x = randomFloats(n * c * spatial), dy = randomFloats(n * c), y(n * c),
         dx(n * c * spatial);
  Doubles yRef(n * c, 0.0), dxRef(n * c * spatial);
  for (size_t i = 0; i < x.size(); ++i) {
    yRef[i / spatial] += x[i] / double(spatial);
    dxRef[i] = dy[i / spatial] / double(spatial);
  }
  blpa_global_avg_pool(&ctx, x.data(), y.data(), n, c, spatial);
  expectClose("global_avg_pool/forward", y, yRef);
  blpa_global_avg_pool_grad(&ctx, dy.data(), dx.data(), n, c, spatial);
  expectClose("global_avg_pool/grad", dx, dxRef);
}

//===----------------------------------------------------------------------===//
// Gemm and loss
//===----------------------------------------------------------------------===//

void testGemm(int64_t m, int64_t n, int64_t k, bool transA, bool transB,
              double alpha, double beta, int64_t cRows, int64_t cCols) {
  char name[128];
  std::snprintf(name, sizeof(name), "gemm/%lldx%lldx%lld_t%d%d_c%lldx%lld",
                (long long)m, (long long)n, (long long)k, transA, transB,
                (long long)cRows, (long long)cCols);
  Floats a = randomFloats(m * k), b = randomFloats(k * n),
         c = randomFloats(std::max<int64_t>(cRows * cCols, 1));
  Floats y(m * n, std::numeric_limits<float>::quiet_NaN());
  Doubles yRef(m * n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0;
      for (int64_t l = 0; l < k; ++l)
        acc += double(transA ? a[l * m + i] : a[i * k + l]) *
               (transB ? b[j * k + l] : b[l * n + j]);
      double bias =
          cRows ? c[(cRows == 1 ? 0 : i) * cCols + (cCols == 1 ? 0 : j)] : 0.0;
      yRef[i * n + j] = alpha * acc + beta * bias;
    }
  blpa_gemm(&ctx, a.data(), b.data(), cRows ? c.data() : nullptr, y.data(), m,
            n, k, transA, transB, alpha, beta, cRows, cCols);
  expectClose(name, y, yRef);
}

/// blpa_batch_matmul against a double reference; aBatch and bBatch (1 or
/// batch) say which operand is broadcast over the batch.
void testBatchMatMul(int64_t batch, int64_t m, int64_t n, int64_t k,
                     bool transA, bool transB, int64_t aBatch, int64_t bBatch) {
  char name[128];
  std::snprintf(name, sizeof(name),
                "batch_matmul/%lldx%lldx%lldx%lld_t%d%d_a%lld_b%lld",
                (long long)batch, (long long)m, (long long)n, (long long)k,
                transA, transB, (long long)aBatch, (long long)bBatch);
  Floats a = randomFloats(aBatch * m * k), b = randomFloats(bBatch * k * n);
  Floats y(batch * m * n, std::numeric_limits<float>::quiet_NaN());
  Doubles yRef(batch * m * n);
  for (int64_t p = 0; p < batch; ++p) {
    const float *ap = a.data() + (aBatch == 1 ? 0 : p * m * k);
    const float *bp = b.data() + (bBatch == 1 ? 0 : p * k * n);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double acc = 0;
        for (int64_t l = 0; l < k; ++l)
          acc += double(transA ? ap[l * m + i] : ap[i * k + l]) *
                 (transB ? bp[j * k + l] : bp[l * n + j]);
        yRef[(p * m + i) * n + j] = acc;
      }
  }
  blpa_batch_matmul(&ctx, a.data(), b.data(), y.data(), batch, m, n, k, transA,
                    transB, aBatch, bBatch);
  expectClose(name, y, yRef);
}

void testBatchMatMuls() {
  for (const blpa_test::BatchMatMulShape &b : blpa_test::batchMatMulShapes)
    testBatchMatMul(b.batch, b.m, b.n, b.k, b.transA, b.transB, b.aBatch,
                    b.bBatch);
}

/// The mean cross-entropy over the rows not labelled `ignoreIndex`; every
/// `ignoreEvery`-th row (0: none) is labelled so.
void testSoftmaxCrossEntropy(int64_t n, int64_t classes, float spread,
                             int64_t ignoreIndex = -100,
                             int64_t ignoreEvery = 0) {
  std::string base = "softmax_cross_entropy/" + std::to_string(n) + "x" +
                     std::to_string(classes) +
                     (ignoreEvery ? "/ignore_" + std::to_string(ignoreIndex)
                                  : std::string());
  // A wide spread of logits overflows a naive exp.
  Floats logits = randomFloats(n * classes, -spread, spread);
  std::vector<int64_t> labels(n);
  std::uniform_int_distribution<int64_t> pick(0, classes - 1);
  int64_t labelled = 0;
  for (int64_t i = 0; i < n; ++i) {
    labels[i] = ignoreEvery && i % ignoreEvery == 0 ? ignoreIndex : pick(rng);
    labelled += labels[i] != ignoreIndex;
  }
  Doubles lossRef(1, 0.0), dlogitsRef(n * classes, 0.0);
  const float dloss = 0.7f;
  for (int64_t i = 0; i < n; ++i) {
    if (labels[i] == ignoreIndex)
      continue;
    const float *row = logits.data() + i * classes;
    double max = *std::max_element(row, row + classes), sum = 0;
    for (int64_t j = 0; j < classes; ++j)
      sum += std::exp(row[j] - max);
    lossRef[0] += (std::log(sum) + max - row[labels[i]]) / labelled;
    for (int64_t j = 0; j < classes; ++j)
      dlogitsRef[i * classes + j] =
          dloss * (std::exp(row[j] - max) / sum - (j == labels[i])) / labelled;
  }
  Floats loss(1), dlogits(n * classes);
  blpa_softmax_cross_entropy(&ctx, logits.data(), labels.data(), loss.data(), n,
                             classes, ignoreIndex);
  expectClose(base + "/loss", loss, lossRef);
  blpa_softmax_cross_entropy_grad(&ctx, logits.data(), labels.data(), &dloss,
                                  dlogits.data(), n, classes, ignoreIndex);
  expectClose(base + "/grad", dlogits, dlogitsRef);
}

/// blpa_embedding against a row copy, and its gradient against a
/// scatter-add in double; ids include negative ones (from the end).
void testEmbedding(int64_t n, int64_t vocab, int64_t dim) {
  std::string base = "embedding/" + std::to_string(n) + "x" +
                     std::to_string(vocab) + "x" + std::to_string(dim);
  Floats table = randomFloats(vocab * dim), dy = randomFloats(n * dim);
  std::vector<int64_t> ids(n);
  std::uniform_int_distribution<int64_t> pick(-vocab, vocab - 1);
  for (int64_t &id : ids)
    id = pick(rng);
  Doubles yRef(n * dim), dtableRef(vocab * dim, 0.0);
  for (int64_t i = 0; i < n; ++i) {
    int64_t row = ids[i] < 0 ? ids[i] + vocab : ids[i];
    for (int64_t c = 0; c < dim; ++c) {
      yRef[i * dim + c] = table[row * dim + c];
      dtableRef[row * dim + c] += dy[i * dim + c];
    }
  }
  Floats y(n * dim), dtable(vocab * dim, 7.0f);
  blpa_embedding(&ctx, table.data(), ids.data(), y.data(), n, vocab, dim);
  expectClose(base + "/lookup", y, yRef);
  blpa_embedding_grad(&ctx, dy.data(), ids.data(), dtable.data(), n, vocab,
                      dim);
  expectClose(base + "/grad", dtable, dtableRef);
}

/// Softmax, or log-softmax when `log`, along the middle axis of x viewed as
/// [outer, length, inner], and its gradient from the kernel's own output,
/// against references in double; in place (y over x, dx over dy) the same
/// bits.
void testSoftmax(const char *name, int64_t outer, int64_t length, int64_t inner,
                 float spread, bool log) {
  std::string base = std::string(log ? "log_softmax/" : "softmax/") + name;
  size_t numel = size_t(outer * length * inner);
  // A wide spread overflows a naive exp.
  Floats x = randomFloats(numel, -spread, spread), dy = randomFloats(numel);
  auto forward = log ? blpa_log_softmax : blpa_softmax;
  auto backward = log ? blpa_log_softmax_grad : blpa_softmax_grad;
  Floats y(numel), dx(numel);
  forward(&ctx, x.data(), y.data(), outer, length, inner);
  backward(&ctx, dy.data(), y.data(), dx.data(), outer, length, inner);
  Doubles yRef(numel), dxRef(numel);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      auto at = [&](int64_t j) { return size_t((o * length + j) * inner + i); };
      double max = -INFINITY, sum = 0, gradSum = 0;
      for (int64_t j = 0; j < length; ++j)
        max = std::max(max, double(x[at(j)]));
      for (int64_t j = 0; j < length; ++j)
        sum += std::exp(double(x[at(j)]) - max);
      for (int64_t j = 0; j < length; ++j) {
        double shifted = double(x[at(j)]) - max;
        yRef[at(j)] = log ? shifted - std::log(sum) : std::exp(shifted) / sum;
        gradSum += log ? double(dy[at(j)]) : double(dy[at(j)]) * y[at(j)];
      }
      for (int64_t j = 0; j < length; ++j)
        dxRef[at(j)] = log ? dy[at(j)] - std::exp(double(y[at(j)])) * gradSum
                           : y[at(j)] * (dy[at(j)] - gradSum);
    }
  expectClose(base + "/forward", y, yRef);
  expectClose(base + "/grad", dx, dxRef);
  Floats yInPlace = x, dxInPlace = dy;
  forward(&ctx, yInPlace.data(), yInPlace.data(), outer, length, inner);
  backward(&ctx, dxInPlace.data(), y.data(), dxInPlace.data(), outer, length,
           inner);
  report(base + "/in_place", sameBits(yInPlace, y) && sameBits(dxInPlace, dx),
         "in place differs from out of place");
}

/// Axes of every kind: a classifier's last axis, the channels of NCHW, the
/// first axis, the block opset < 13 flattens from axis 1 of [4, 3, 5, 5],
/// long rows, more inner positions than one parallel block, a single
/// element per row (softmax 1, log-softmax 0), and no rows.
void testSoftmaxes() {
  for (bool log : {false, true}) {
    testSoftmax("last_axis_9x11", 9, 11, 1, 50.0f, log);
    testSoftmax("channels_3x5x42", 3, 5, 7 * 6, 5.0f, log);
    testSoftmax("first_axis_6x35", 1, 6, 35, 5.0f, log);
    testSoftmax("coerced_4x75", 4, 3 * 5 * 5, 1, 5.0f, log);
    testSoftmax("long_rows_2x1000", 2, 1000, 1, 20.0f, log);
    testSoftmax("inner_blocks_2x3x130", 2, 3, 130, 5.0f, log);
    testSoftmax("length_1", 5, 1, 3, 5.0f, log);
    testSoftmax("empty", 0, 4, 3, 1.0f, log);
  }
}

/// Runs `body` in a child process and expects it to exit with status 1
/// after printing `expected` on stderr.
void expectFailure(const std::string &name, const std::string &expected,
                   const std::function<void()> &body) {
  int fds[2];
  if (pipe(fds) != 0)
    return report(name, false, "pipe failed");
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 2);
    close(fds[0]);
    body();
    _exit(0); // the kernel did not fail
  }
  close(fds[1]);
  std::string err;
  char buf[256];
  for (ssize_t got; (got = read(fds[0], buf, sizeof(buf))) > 0;)
    err.append(buf, got);
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  bool exitedWith1 = WIFEXITED(status) && WEXITSTATUS(status) == 1;
  bool message = err.find(expected) != std::string::npos;
  report(name, exitedWith1 && message,
         "expected exit 1 and \"" + expected + "\" on stderr, got status " +
             std::to_string(status) + " and \"" + err + "\"");
}

void testBadLabels() {
  const int64_t n = 3, classes = 5;
  Floats logits = randomFloats(n * classes), out(n * classes);
  const float dloss = 1;
  for (int64_t bad : {int64_t(5), int64_t(-1)}) {
    std::vector<int64_t> labels = {0, bad, 2};
    std::string expected = "blpa runtime error: blpa_softmax_cross_entropy";
    std::string detail = "label " + std::to_string(bad) +
                         " of row 1 is out of range for 5 "
                         "classes";
    expectFailure("softmax_cross_entropy/label_" + std::to_string(bad),
                  expected + ": " + detail, [&] {
                    blpa_softmax_cross_entropy(nullptr, logits.data(),
                                               labels.data(), out.data(), n,
                                               classes, -100);
                  });
    expectFailure(
        "softmax_cross_entropy_grad/label_" + std::to_string(bad), detail, [&] {
          blpa_softmax_cross_entropy_grad(nullptr, logits.data(), labels.data(),
                                          &dloss, out.data(), n, classes, -100);
        });
  }
}

//===----------------------------------------------------------------------===//
// Activation codes
//===----------------------------------------------------------------------===//

using Codes = std::vector<int>;

/// The packed layout of Runtime.h, written out from its definition.
Bytes packRef(const Codes &codes, int bits) {
  Bytes packed(packedSize(codes.size(), bits), 0);
  for (size_t i = 0; i < codes.size(); ++i)
    packed[i * bits / 8] |= uint8_t(codes[i] << (i * bits % 8));
  return packed;
}

Codes unpackRef(const uint8_t *packed, size_t numel, int bits) {
  Codes codes(numel);
  for (size_t i = 0; i < numel; ++i)
    codes[i] = packed[i * bits / 8] >> (i * bits % 8) & ((1 << bits) - 1);
  return codes;
}

/// Room for numel codes, filled with junk the kernel must overwrite, then
/// guard bytes it must not touch.
using blpa_test::guardBytes;
constexpr uint8_t junk = 0xA5;

Bytes codeBuffer(size_t numel, int bits) {
  return Bytes(packedSize(numel, bits) + guardBytes, junk);
}

/// Checks what a kernel wrote into a codeBuffer (unused tail bits 0, guard
/// intact) and returns the unpacked codes.
Codes checkPacked(const std::string &name, const Bytes &buf, size_t numel,
                  int bits) {
  size_t size = packedSize(numel, bits);
  Codes codes = unpackRef(buf.data(), numel, bits);
  bool guard = std::all_of(buf.begin() + size, buf.end(),
                           [](uint8_t b) { return b == junk; });
  bool tail = packRef(codes, bits) == Bytes(buf.begin(), buf.begin() + size);
  report(name + "/packing", guard && tail,
         guard ? "unused tail bits are not 0" : "wrote past the last byte");
  return codes;
}

/// got == want, except off by one where `atEdge` says the reference value
/// lies within float rounding of a bin edge.
void expectCodes(const std::string &name, const Codes &got, const Codes &want,
                 const std::vector<bool> &atEdge) {
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < want.size(); ++i)
    if (got[i] != want[i] && !(atEdge[i] && std::abs(got[i] - want[i]) == 1))
      if (bad++ == 0)
        first = i;
  char detail[160];
  std::snprintf(detail, sizeof(detail),
                "%zu of %zu codes differ, first at %zu: %d, expected %d", bad,
                want.size(), first, bad ? got[first] : 0,
                bad ? want[first] : 0);
  report(name, bad == 0, detail);
}

/// Whether v lies within float rounding (a few ulps, relative) of a bin
/// edge; edges sit at the integers plus `offset`.
bool nearEdge(double v, double offset) {
  double d = v - offset;
  return std::fabs(d - std::round(d)) < 1e-6 * std::max(1.0, std::fabs(v));
}

void testCodeLayout() {
  bool ref = packRef({1, 2, 3}, 4) == Bytes{0x21, 0x03} &&
             packRef({1, 2, 3, 0, 3}, 2) == Bytes{0x39, 0x03} &&
             packRef({1, 0, 1, 1, 0, 0, 0, 1, 1}, 1) == Bytes{0x8D, 0x01} &&
             packRef({7, 200}, 8) == Bytes{7, 200};
  report("codes/layout/reference", ref, "the test's own packer is wrong");

  // Packing, through blpa_quantize: NONNEG with max = L has step 1, so
  // q = ceil(x); AFFINE over [0, 255] at 8 bits has q = round(x).
  struct Case {
    const char *name;
    int bits;
    int64_t scheme;
    Floats x, decoded;
    Bytes packed;
  };
  const Case cases[] = {
      {"nonneg4",
       4,
       BLPA_SCHEME_NONNEG,
       {1, 2, 15},
       {0.5, 1.5, 14.5},
       {0x21, 0x0F}},
      {"nonneg2",
       2,
       BLPA_SCHEME_NONNEG,
       {1, 2, 3, 0, 3},
       {0.5, 1.5, 2.5, 0, 2.5},
       {0x39, 0x03}},
      {"mask1",
       1,
       BLPA_SCHEME_MASK,
       {1, -1, 2, 3, 0, -2, -1, 4, 5},
       {1, 0, 1, 1, 0, 0, 0, 1, 1},
       {0x8D, 0x01}},
      {"affine8", 8, BLPA_SCHEME_AFFINE, {0, 255, 7}, {0, 255, 7}, {0, 255, 7}},
  };
  for (const Case &cs : cases) {
    std::string base = std::string("codes/layout/") + cs.name;
    int64_t numel = cs.x.size();
    Floats params(2);
    float *p = cs.scheme == BLPA_SCHEME_MASK ? nullptr : params.data();
    Bytes buf = codeBuffer(numel, cs.bits);
    blpa_quantize(&ctx, cs.x.data(), buf.data(), p, 1, 1, numel, cs.bits,
                  cs.scheme);
    bool same = std::equal(cs.packed.begin(), cs.packed.end(), buf.begin()) &&
                buf[cs.packed.size()] == junk;
    report(base + "/pack", same, "bytes differ from the hand-packed ones");
    // Unpacking: decode the hand-packed bytes.
    Floats y(numel);
    Floats unitSteps = {0.0f, 1.0f};
    blpa_dequantize(&ctx, cs.packed.data(), p ? unitSteps.data() : nullptr,
                    y.data(), 1, 1, numel, cs.bits, cs.scheme);
    report(base + "/unpack", y == cs.decoded, "decoded values differ");
  }
}

/// Runtime.h's BN-ReLU code of one channel, in double.
struct BnCodeRef {
  bool constant; // gamma == 0
  double a, sgn, t, w, beta;
  int shift, maxCode;

  BnCodeRef(double gamma, double beta, int bits)
      : constant(gamma == 0), beta(beta) {
    a = constant ? 1 : std::fabs(gamma);
    sgn = gamma < 0 ? -1 : 1;
    t = constant ? 0 : beta / a;
    maxCode = (1 << bits) - 1;
    w = 6.0 / (1 << bits);
    shift = int(std::clamp((1 << (bits - 1)) - std::floor(t / w), 1.0,
                           double(maxCode)));
  }
  int code(double u, bool positive) const {
    if (positive)
      return int(std::max<double>(
          std::min<double>(shift + std::floor(u / w), maxCode), shift));
    return int(std::min<double>(
        std::max<double>(shift - 1 - std::floor(-u / w), 0), shift - 1));
  }
  /// The bin centre u~ of code q.
  double centre(int q) const { return (q - shift + 0.5) * w; }
  double y(int q) const { return constant ? beta : a * centre(q); }
  double xhat(int q) const { return sgn * (centre(q) - t); }
  bool mask(int q) const { return constant ? beta > 0 : q >= shift; }
  /// Whether u is inside the range the codes cover without clipping.
  bool inRange(double u) const {
    return u >= -shift * w && u < (maxCode + 1 - shift) * w;
  }
};

/// Gammas of every sign with betas of both signs, including |beta/gamma|
/// large enough to clip every value and clamp the shift.
const float bnGammas[16] = {1.3f,  -0.7f, 0.0f,  0.05f, -0.03f, 2.5f,
                            -1.9f, 0.8f,  0.0f,  -1.1f, 0.6f,   1.0f,
                            -0.4f, 3.0f,  -2.2f, 0.02f};
const float bnBetas[16] = {-0.5f, 2.2f,  1.5f,  0.4f, -3.0f, 0.0f,
                           -0.3f, 1.0f,  -2.0f, 0.7f, -1.2f, 0.1f,
                           2.5f,  -0.8f, 0.3f,  -1.0f};

/// Inputs and outputs of blpa_batch_norm_train_encode.
struct BnEncoded {
  int64_t n, c, spatial;
  int bits;
  Floats x, scale, bias, y, mean, invStd;
  Bytes codes;
  std::vector<BnCodeRef> ref;

  BnEncoded(int64_t n, int64_t c, int64_t spatial, int bits)
      : n(n), c(c), spatial(spatial), bits(bits) {}

  size_t numel() const { return n * c * spatial; }
  int64_t channelOf(size_t i) const { return int64_t(i) / spatial % c; }
  /// u = y / |gamma|, or xhat for gamma == 0.
  double u(size_t i) const {
    int64_t ch = channelOf(i);
    return ref[ch].constant ? (double(x[i]) - mean[ch]) * invStd[ch]
                            : double(y[i]) / ref[ch].a;
  }

  void encode() {
    y.resize(numel());
    mean.resize(c);
    invStd.resize(c);
    codes = codeBuffer(numel(), bits);
    blpa_batch_norm_train_encode(&ctx, x.data(), scale.data(), bias.data(),
                                 y.data(), mean.data(), invStd.data(),
                                 codes.data(), n, c, spatial, 1e-5, bits);
    ref.clear();
    for (int64_t ch = 0; ch < c; ++ch)
      ref.emplace_back(scale[ch], bias[ch], bits);
  }
};

BnEncoded bnEncoded(int64_t n, int64_t c, int64_t spatial, int bits) {
  BnEncoded bn(n, c, spatial, bits);
  bn.x = randomNormals(bn.numel(), 1.5f, 2.0f);
  // Channel 5 (beta 0) is constant, so y is exactly 0 there: the one value
  // on the ReLU edge, which must encode as negative.
  for (size_t i = 0; i < bn.numel(); ++i)
    if (bn.channelOf(i) == 5)
      bn.x[i] = 0.25f;
  for (int64_t ch = 0; ch < c; ++ch) {
    bn.scale.push_back(bnGammas[ch % 16]);
    bn.bias.push_back(bnBetas[ch % 16]);
  }
  bn.encode();
  return bn;
}

void testBnEncode(const std::string &base, const BnEncoded &bn,
                  const Codes &q) {
  Floats y(bn.numel()), mean(bn.c), invStd(bn.c);
  blpa_batch_norm_train(&ctx, bn.x.data(), bn.scale.data(), bn.bias.data(),
                        y.data(), mean.data(), invStd.data(), bn.n, bn.c,
                        bn.spatial, 1e-5);
  report(base + "/forward_exact",
         sameBits(y, bn.y) && sameBits(mean, bn.mean) &&
             sameBits(invStd, bn.invStd),
         "y, mean or invStd differ from blpa_batch_norm_train");

  Codes want(bn.numel());
  std::vector<bool> near(bn.numel());
  bool mask = true;
  for (size_t i = 0; i < bn.numel(); ++i) {
    const BnCodeRef &r = bn.ref[bn.channelOf(i)];
    double u = bn.u(i);
    want[i] = r.code(u, r.constant ? u > 0 : bn.y[i] > 0);
    near[i] = nearEdge(u / r.w, 0);
    mask &= r.constant || (q[i] >= r.shift) == (bn.y[i] > 0);
  }
  expectCodes(base + "/codes", q, want, near);
  report(base + "/codes_mask", mask, "q >= shift differs from y > 0");
}

void testBnDecode(const std::string &base, const BnEncoded &bn,
                  const Codes &q) {
  size_t numel = bn.numel();
  Floats y(numel), z(numel);
  blpa_bn_decode(&ctx, bn.codes.data(), bn.scale.data(), bn.bias.data(),
                 y.data(), bn.n, bn.c, bn.spatial, bn.bits, 0);
  blpa_bn_decode(&ctx, bn.codes.data(), bn.scale.data(), bn.bias.data(),
                 z.data(), bn.n, bn.c, bn.spatial, bn.bits, 1);
  Doubles yRef(numel), zRef(numel);
  size_t inRange = 0, tooFar = 0, maskErrors = 0;
  for (size_t i = 0; i < numel; ++i) {
    const BnCodeRef &r = bn.ref[bn.channelOf(i)];
    yRef[i] = r.y(q[i]);
    zRef[i] = r.mask(q[i]) ? yRef[i] : 0.0;
    maskErrors += (z[i] > 0) != (bn.y[i] > 0);
    if (r.inRange(bn.u(i))) {
      ++inRange;
      double bound = r.constant ? 0 : r.a * r.w / 2 * (1 + 1e-4);
      tooFar += std::fabs(y[i] - bn.y[i]) > bound + 1e-6 * std::fabs(bn.y[i]);
    }
  }
  expectClose(base + "/decode", y, yRef, 1e-6);
  expectClose(base + "/decode_relu", z, zRef, 1e-6);
  // The method promises exact masks except where values are clipped; with
  // the shift clamped to [1, 2^K - 1] even clipped values keep their side.
  std::printf("  %s: ReLU mask recovered for %zu of %zu elements; %zu "
              "(%.2f%%) clipped outside the code range\n",
              base.c_str(), numel - maskErrors, numel, numel - inRange,
              100.0 * double(numel - inRange) / double(numel));
  report(base + "/decode_relu_mask", maskErrors == 0,
         std::to_string(maskErrors) + " elements where (z~ > 0) differs "
                                      "from (y > 0)");
  report(base + "/decode_error", inRange > 0 && tooFar == 0,
         std::to_string(tooFar) + " of " + std::to_string(inRange) +
             " in-range values decode further than a*w/2");
}

/// BN backward from the definition in Runtime.h with xhat~ in place of xhat.
void bnGradRef(const BnEncoded &bn, const Codes &q, const Floats &dy,
               Doubles &dx, Doubles &dscale, Doubles &dbias) {
  dx.assign(bn.numel(), 0.0);
  dscale.assign(bn.c, 0.0);
  dbias.assign(bn.c, 0.0);
  auto xhat = [&](size_t i) { return bn.ref[bn.channelOf(i)].xhat(q[i]); };
  for (size_t i = 0; i < bn.numel(); ++i) {
    dbias[bn.channelOf(i)] += dy[i];
    dscale[bn.channelOf(i)] += dy[i] * xhat(i);
  }
  double m = double(bn.n * bn.spatial);
  for (size_t i = 0; i < bn.numel(); ++i) {
    int64_t ch = bn.channelOf(i);
    dx[i] = bn.scale[ch] * bn.invStd[ch] *
            (dy[i] - dbias[ch] / m - xhat(i) * dscale[ch] / m);
  }
}

void testBnGradDecode(const std::string &base, const BnEncoded &bn,
                      const Codes &q) {
  Floats dy = randomFloats(bn.numel()), dx(bn.numel()), dscale(bn.c),
         dbias(bn.c);
  blpa_batch_norm_grad_decode(&ctx, dy.data(), bn.codes.data(), bn.scale.data(),
                              bn.bias.data(), bn.invStd.data(), dx.data(),
                              dscale.data(), dbias.data(), bn.n, bn.c,
                              bn.spatial, bn.bits);
  Doubles dxRef, dscaleRef, dbiasRef;
  bnGradRef(bn, q, dy, dxRef, dscaleRef, dbiasRef);
  expectClose(base + "/grad_input", dx, dxRef);
  expectClose(base + "/grad_scale", dscale, dscaleRef);
  expectClose(base + "/grad_bias", dbias, dbiasRef);
}

/// The fused kernel against its two parts: the ReLU gradient over
/// blpa_bn_decode's ReLU output, then blpa_batch_norm_grad_decode; bit for
/// bit, since the mask is the decode's own.
void testBnReluGradDecode(const std::string &base, const BnEncoded &bn) {
  size_t numel = bn.numel();
  Floats dy = randomFloats(numel), z(numel), masked(numel), dx(numel),
         dxRef(numel), ds(bn.c), dsRef(bn.c), db(bn.c), dbRef(bn.c);
  blpa_bn_decode(&ctx, bn.codes.data(), bn.scale.data(), bn.bias.data(),
                 z.data(), bn.n, bn.c, bn.spatial, bn.bits, /*relu=*/1);
  blpa_relu_grad(&ctx, dy.data(), z.data(), masked.data(), numel);
  blpa_batch_norm_grad_decode(&ctx, masked.data(), bn.codes.data(),
                              bn.scale.data(), bn.bias.data(), bn.invStd.data(),
                              dxRef.data(), dsRef.data(), dbRef.data(), bn.n,
                              bn.c, bn.spatial, bn.bits);
  blpa_batch_norm_relu_grad_decode(&ctx, dy.data(), bn.codes.data(),
                                   bn.scale.data(), bn.bias.data(),
                                   bn.invStd.data(), dx.data(), ds.data(),
                                   db.data(), bn.n, bn.c, bn.spatial, bn.bits);
  report(base + "/relu_grad_decode",
         sameBits(dx, dxRef) && sameBits(ds, dsRef) && sameBits(db, dbRef),
         "differs from relu_grad of the decoded ReLU, then grad_decode");
}

/// The encode with its ReLU fused: the same codes, mean and invStd, and y
/// clipped at 0, bit for bit.
void testBnReluEncode(const std::string &base, const BnEncoded &bn) {
  size_t numel = bn.numel();
  Floats y(numel), mean(bn.c), invStd(bn.c);
  Bytes codes = codeBuffer(numel, bn.bits);
  blpa_batch_norm_relu_train_encode(
      &ctx, bn.x.data(), bn.scale.data(), bn.bias.data(), y.data(), mean.data(),
      invStd.data(), codes.data(), bn.n, bn.c, bn.spatial, 1e-5, bn.bits);
  Floats relued = bn.y;
  for (float &v : relued)
    v = std::max(v, 0.0f);
  report(base + "/relu_encode",
         sameBits(y, relued) && codes == bn.codes && sameBits(mean, bn.mean) &&
             sameBits(invStd, bn.invStd),
         "differs from blpa_batch_norm_train_encode followed by a ReLU");
}

void testBnCodes(const char *shape, int64_t n, int64_t c, int64_t spatial) {
  for (int bits : {2, 4, 8}) {
    std::string base =
        std::string("bn_codes/") + shape + "/" + std::to_string(bits) + "bit";
    BnEncoded bn = bnEncoded(n, c, spatial, bits);
    Codes q = checkPacked(base, bn.codes, bn.numel(), bits);
    testBnEncode(base, bn, q);
    testBnDecode(base, bn, q);
    testBnGradDecode(base, bn, q);
    testBnReluGradDecode(base, bn);
    testBnReluEncode(base, bn);
  }
}

Doubles toDoubles(const Floats &v) { return Doubles(v.begin(), v.end()); }

/// With 8-bit codes and no clipping (uniform data, |beta/gamma| < 1.2), the
/// approximate backward stays close to the exact one. Measured over 200
/// draws of this data: dx relative error median 2.0e-4, max 4.0e-4; dscale
/// (a sum of random-signed terms, so its relative error varies more)
/// median 7.2e-3, 95th percentile 1.5e-2, max 2.8e-2. The bounds leave
/// room above the maxima for any draw.
void testBnGradVsExact() {
  const int64_t n = 16, c = 6, spatial = 13 * 11;
  const float gammas[c] = {1.3f, -0.7f, 0.0f, 0.9f, -1.5f, 2.0f};
  const float betas[c] = {0.4f, -0.5f, 0.8f, -1.0f, 0.6f, 0.0f};
  BnEncoded bn(n, c, spatial, 8);
  bn.x = randomFloats(bn.numel(), -1.0f, 3.0f);
  bn.scale.assign(gammas, gammas + c);
  bn.bias.assign(betas, betas + c);
  bn.encode();
  Floats dy = randomFloats(bn.numel()), dx(bn.numel()), dscale(c), dbias(c),
         dxExact(bn.numel()), dscaleExact(c), dbiasExact(c);
  blpa_batch_norm_grad_decode(&ctx, dy.data(), bn.codes.data(), bn.scale.data(),
                              bn.bias.data(), bn.invStd.data(), dx.data(),
                              dscale.data(), dbias.data(), n, c, spatial, 8);
  blpa_batch_norm_grad(&ctx, dy.data(), bn.x.data(), bn.scale.data(),
                       bn.mean.data(), bn.invStd.data(), dxExact.data(),
                       dscaleExact.data(), dbiasExact.data(), n, c, spatial);
  expectClose("bn_codes/8bit_vs_exact/grad_input", dx, toDoubles(dxExact),
              1e-3);
  expectClose("bn_codes/8bit_vs_exact/grad_scale", dscale,
              toDoubles(dscaleExact), 5e-2);
  report("bn_codes/8bit_vs_exact/grad_bias", sameBits(dbias, dbiasExact),
         "dbias differs from the exact kernel's");
}

/// The reference code of one element for `scheme`; `near` says whether x
/// lies within float rounding of a bin edge.
int quantizeRef(float x, double lo, double step, int64_t scheme, int bits,
                bool &near) {
  int maxCode = (1 << bits) - 1;
  double v = step > 0 ? (x - lo) / step : 0;
  switch (scheme) {
  case BLPA_SCHEME_AFFINE:
    near = nearEdge(v, 0.5);
    return int(std::clamp(std::round(v), 0.0, double(maxCode)));
  case BLPA_SCHEME_NONNEG:
    near = x > 0 && nearEdge(v, 0);
    return x > 0 ? int(std::clamp(std::ceil(v), 1.0, double(maxCode))) : 0;
  default:
    near = false;
    return x > 0;
  }
}

void testQuantize(const char *shape, int64_t n, int64_t c, int64_t spatial,
                  int64_t scheme, int bits) {
  const char *schemes[] = {"affine", "nonneg", "mask"};
  std::string base = std::string("quantize/") + schemes[scheme] + "/" + shape +
                     "/" + std::to_string(bits) + "bit";
  size_t numel = n * c * spatial;
  auto channelOf = [&](size_t i) { return int64_t(i) / spatial % c; };
  bool mask = scheme == BLPA_SCHEME_MASK;
  Floats x = blpa_test::quantizeInput({"", n, c, spatial}, scheme,
                                      /*nans=*/false),
         params(2 * c), y(numel);
  float *p = mask ? nullptr : params.data();
  Bytes codes = codeBuffer(numel, bits);
  blpa_quantize(&ctx, x.data(), codes.data(), p, n, c, spatial, bits, scheme);
  Codes q = checkPacked(base, codes, numel, bits);

  if (!mask) {
    const double inf = std::numeric_limits<double>::infinity();
    Doubles lo(c, inf), hi(c, -inf), loRef(c), stepRef(c);
    for (size_t i = 0; i < numel; ++i) {
      lo[channelOf(i)] = std::min<double>(lo[channelOf(i)], x[i]);
      hi[channelOf(i)] = std::max<double>(hi[channelOf(i)], x[i]);
    }
    for (int64_t ch = 0; ch < c; ++ch) {
      loRef[ch] = scheme == BLPA_SCHEME_NONNEG ? 0.0 : lo[ch];
      stepRef[ch] = (hi[ch] - loRef[ch]) / ((1 << bits) - 1);
    }
    expectClose(base + "/lo", Floats(params.begin(), params.begin() + c), loRef,
                0);
    expectClose(base + "/step", Floats(params.begin() + c, params.end()),
                stepRef, 1e-6);
  }
  Codes want(numel);
  std::vector<bool> near(numel);
  for (size_t i = 0; i < numel; ++i) {
    bool edge = false;
    int64_t ch = channelOf(i);
    want[i] = mask ? x[i] > 0
                   : quantizeRef(x[i], params[ch], params[c + ch], scheme, bits,
                                 edge);
    near[i] = edge;
  }
  expectCodes(base + "/codes", q, want, near);

  blpa_dequantize(&ctx, codes.data(), p, y.data(), n, c, spatial, bits, scheme);
  size_t tooFar = 0, signs = 0;
  for (size_t i = 0; i < numel; ++i) {
    if (mask) {
      tooFar += y[i] != (x[i] > 0 ? 1.0f : 0.0f);
      continue;
    }
    double half = params[c + channelOf(i)] / 2 * (1 + 1e-4);
    tooFar += std::fabs(double(y[i]) - x[i]) > half + 1e-6 * std::fabs(x[i]);
    if (scheme == BLPA_SCHEME_NONNEG)
      signs += (y[i] > 0) != (x[i] > 0) || (x[i] == 0 && y[i] != 0);
  }
  report(base + "/decode_error", tooFar == 0,
         std::to_string(tooFar) + " of " + std::to_string(numel) +
             " values decode further than step/2");
  if (scheme == BLPA_SCHEME_NONNEG)
    report(base + "/decode_zeros", signs == 0,
           std::to_string(signs) + " values changed between zero and positive");
}

//===----------------------------------------------------------------------===//
// Probability codes
//===----------------------------------------------------------------------===//

/// The failures of one check over a tensor's rows: how many, and the first.
struct RowCheck {
  size_t bad = 0;
  std::string first;

  /// `what` is only called for the first failure.
  void fail(const std::function<std::string()> &what) {
    if (bad++ == 0)
      first = what();
  }
  void reportAs(const std::string &name, const char *unit) const {
    report(name, bad == 0,
           std::to_string(bad) + " " + unit + " fail, first: " + first);
  }
};

/// The checks of testProbabilityReference, over all rows.
struct ProbabilityChecks {
  RowCheck step, code, maxCode, packing, scale, zeros, ratio, sum;

  void reportAs(const std::string &base) const {
    step.reportAs(base + "/step", "rows");
    code.reportAs(base + "/codes", "codes");
    maxCode.reportAs(base + "/max_code", "maxima");
    packing.reportAs(base + "/packing", "rows");
    scale.reportAs(base + "/scale", "rows");
    zeros.reportAs(base + "/decode_zeros", "values");
    ratio.reportAs(base + "/decode_ratio", "values");
    sum.reportAs(base + "/decode_row_sums", "rows");
  }
};

/// The runtime builds its levels as up to L - 1 float products of the float
/// 2^-step (two roundings each) and a bin edge, in log2, from two more: its
/// edges sit within this many octaves of the exact m * 2^-(L - c + 1/2)
/// step, and its levels within as many of 2^-(L - c) step.
double tableOctaves(int levels) {
  return (2.0 * levels + 3) * 0x1p-24 / std::log(2.0);
}

/// Runtime.h's definition of a probability code, in double: L - round(t)
/// for t = log2(m / p) / step (0 below 1), 0 for p = 0. Where t lies within
/// `slack` of a half-integer (float rounding of the runtime's tables
/// decides) either neighbour is right: returns both, else twice the one.
std::pair<int, int> probabilityCodeRef(double p, double m, double step,
                                       int levels, double slack) {
  if (!(p > 0))
    return {0, 0};
  double t = std::log2(m / p) / step;
  auto code = [&](double k) { return int(std::max(0.0, levels - k)); };
  double below = std::floor(t);
  if (std::fabs(t - below - 0.5) <= slack)
    return {code(below + 1), code(below)};
  return {code(std::round(t)), code(std::round(t))};
}

/// One row's codes q and decoded values d against its probabilities p and
/// their maximum m, for the row's step and scale (its params).
void checkProbabilityRow(ProbabilityChecks &c, const std::string &at,
                         const float *p, const Codes &q, const float *d,
                         double m, double step, double scale, int bits) {
  const int levels = (1 << bits) - 1;
  double slack = m > 0 ? std::max(1e-3, tableOctaves(levels) / step) : 0;
  double pSum = 0, ySum = 0, levelSum = 0;
  for (size_t j = 0; j < q.size(); ++j) {
    auto el = [&] {
      return at + blpa_test::format(" [%zu] p %.9g code %d decoded %.9g: ", j,
                                    p[j], q[j], d[j]);
    };
    auto [lo, hi] = probabilityCodeRef(p[j], m, step, levels, slack);
    if (q[j] != lo && q[j] != hi)
      c.code.fail(
          [&] { return el() + blpa_test::format("want %d/%d", lo, hi); });
    if (p[j] > 0 && p[j] == m && q[j] != levels)
      c.maxCode.fail([&] { return el() + "the maximum's code is not L"; });
    if ((q[j] == 0) != (d[j] == 0) || !(d[j] >= 0))
      c.zeros.fail([&] { return el() + "zero iff code 0"; });
    // Decoded over p, relative to the row's common factor: half a step off
    // at most, and what the runtime's float tables add.
    double off = std::fabs(std::log2(d[j] / (scale / m * p[j])));
    if (q[j] > 0 && p[j] > 0 &&
        !(off <= step / 2 + 2 * tableOctaves(levels) + 1e-5 / M_LN2))
      c.ratio.fail(
          [&] { return el() + blpa_test::format("%.4g octaves", off); });
    if (q[j] > 0)
      levelSum += std::exp2(-(levels - q[j]) * step);
    pSum += p[j] > 0 ? p[j] : 0;
    ySum += d[j];
  }
  // The runtime sums its float levels: each within 2 (L - 1) roundings.
  double scaleRef = levelSum > 0 ? pSum / levelSum : 0;
  if (!(std::fabs(scale - scaleRef) <=
        (1e-6 + 2 * levels * 0x1p-24) * scaleRef))
    c.scale.fail([&] {
      return at + blpa_test::format(": scale %.9g, want %.9g", scale, scaleRef);
    });
  if (!(std::fabs(ySum - pSum) <= 1e-5 * pSum))
    c.sum.fail([&] {
      return at + blpa_test::format(": decoded sum %.9g, input sum %.9g", ySum,
                                    pSum);
    });
}

/// blpa_probability_encode and blpa_probability_decode on softmax rows
/// (KernelCases.h) against Runtime.h's definition, row by row: the step
/// from the row's extremes, every code (zeros to 0, the maximum to L), the
/// layout (rows start on byte boundaries, tail bits 0, every byte written:
/// the buffer starts as 0xFF), the scale sum(p) / sum(level), decoded zeros
/// exact, each decoded value within 2^(step / 2) of p up to the row's common
/// factor scale / m, and decoded rows summing to the input's.
void testProbabilityReference(const blpa_test::ProbabilityShape &s, int bits) {
  std::string base =
      std::string("probability/") + s.name + "/" + std::to_string(bits) + "bit";
  const double maxStep = bits == 2 ? 2.0 : bits == 4 ? 0.5 : 1.0 / 16;
  const int64_t rows = s.rows, length = s.length;
  const size_t rowBytes = packedSize(length, bits), numel = rows * length;
  Floats x = blpa_test::probabilityRows(rows, length);
  Floats params(2 * rows, std::nanf("")), y(numel, std::nanf(""));
  Bytes codes(rows * rowBytes + guardBytes, 0xFF);
  blpa_probability_encode(&ctx, x.data(), codes.data(), params.data(), rows,
                          length, bits);
  blpa_probability_decode(&ctx, codes.data(), params.data(), y.data(), rows,
                          length, bits);

  ProbabilityChecks c;
  for (int64_t r = 0; r < rows; ++r) {
    const float *p = x.data() + r * length;
    const uint8_t *row = codes.data() + r * rowBytes;
    Codes q = unpackRef(row, length, bits);
    std::string at = "row " + std::to_string(r);
    if (packRef(q, bits) != Bytes(row, row + rowBytes))
      c.packing.fail([&] { return at + ": unused tail bits are not 0"; });
    double m = 0, minPositive = std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < length; ++j)
      if (p[j] > 0) {
        m = std::max<double>(m, p[j]);
        minPositive = std::min<double>(minPositive, p[j]);
      }
    double step = params[2 * r + 1], scale = params[2 * r];
    double want =
        m > 0 ? std::clamp(std::log2(m / minPositive) / ((1 << bits) - 2),
                           0x1p-12, maxStep)
              : 0.0;
    // A row without positives: any finite params (it decodes to zeros).
    if (m > 0 ? !(std::fabs(step - want) <= 1e-6 * want)
              : !std::isfinite(step) || !std::isfinite(scale))
      c.step.fail([&] {
        return at + blpa_test::format(": step %.9g, want %.9g", step, want);
      });
    checkProbabilityRow(c, at, p, q, y.data() + r * length, m, step, scale,
                        bits);
  }
  if (!std::all_of(codes.begin() + rows * rowBytes, codes.end(),
                   [](uint8_t b) { return b == 0xFF; }))
    c.packing.fail([] { return std::string("wrote past the last row"); });
  c.reportAs(base);
}

/// The smallest code width of Runtime.h that holds every window position.
int argmaxBits(int64_t positions) {
  for (int bits : {1, 2, 4, 8})
    if (positions <= (1 << bits))
      return bits;
  return 0;
}

void testMaxPoolArgmax(const PoolCase &pc, bool ties) {
  std::string base = std::string("max_pool_argmax/") + pc.name +
                     (ties ? "/ties" : "/distinct");
  int bits = argmaxBits(pc.win.kernelSize());
  Floats x = ties ? randomInts(pc.xSize(), -3, -1) : randomFloats(pc.xSize()),
         dy = randomFloats(pc.ySize());
  Floats y(pc.ySize()), yRef(pc.ySize()), dx(pc.xSize(), 42.0f),
      dxRef(pc.xSize(), 7.0f);
  Bytes codes = codeBuffer(pc.ySize(), bits);
  blpa_max_pool(&ctx, x.data(), yRef.data(), pc.n, pc.c, WINDOW_ARGS(pc.win));
  blpa_max_pool_argmax(&ctx, x.data(), y.data(), codes.data(), pc.n, pc.c,
                       WINDOW_ARGS(pc.win), bits);
  report(base + "/forward", sameBits(y, yRef), "y differs from blpa_max_pool");

  // The first maximum's index in the window's row-major tap order; 0 for a
  // window entirely in the padding.
  Codes q = checkPacked(base, codes, pc.ySize(), bits), want(pc.ySize(), 0);
  std::vector<int64_t> best(pc.ySize(), -1);
  pc.forEachTap([&](size_t yi, int64_t xi, int64_t tap, bool) {
    if (xi >= 0 && (best[yi] < 0 || x[xi] > x[best[yi]])) {
      best[yi] = xi;
      want[yi] = tap;
    }
  });
  expectCodes(base + "/codes", q, want, std::vector<bool>(pc.ySize()));

  blpa_max_pool_grad(&ctx, dy.data(), x.data(), dxRef.data(), pc.n, pc.c,
                     WINDOW_ARGS(pc.win));
  blpa_max_pool_grad_argmax(&ctx, dy.data(), codes.data(), dx.data(), pc.n,
                            pc.c, WINDOW_ARGS(pc.win), bits);
  report(base + "/grad", sameBits(dx, dxRef),
         "dx differs from blpa_max_pool_grad");
}

void testBadCodeWidths() {
  uint8_t codes[4] = {};
  float x[2] = {1, 2}, y[2], params[2];
  expectFailure(
      "bn_decode/bits_3", "blpa_bn_decode: unsupported code width 3",
      [&] { blpa_bn_decode(nullptr, codes, x, x, y, 1, 1, 2, 3, 0); });
  expectFailure(
      "quantize/mask_bits_2", "blpa_quantize: unsupported code width 2", [&] {
        blpa_quantize(nullptr, x, codes, nullptr, 1, 1, 2, 2, BLPA_SCHEME_MASK);
      });
  expectFailure("quantize/affine_bits_1",
                "blpa_quantize: unsupported code width 1", [&] {
                  blpa_quantize(nullptr, x, codes, params, 1, 1, 2, 1,
                                BLPA_SCHEME_AFFINE);
                });
  expectFailure(
      "dequantize/scheme_7", "blpa_dequantize: unknown quantization scheme 7",
      [&] { blpa_dequantize(nullptr, codes, params, y, 1, 1, 2, 4, 7); });
  expectFailure("probability_encode/bits_3",
                "blpa_probability_encode: unsupported code width 3", [&] {
                  blpa_probability_encode(nullptr, x, codes, params, 1, 2, 3);
                });
  expectFailure("probability_decode/bits_3",
                "blpa_probability_decode: unsupported code width 3", [&] {
                  blpa_probability_decode(nullptr, codes, params, y, 1, 2, 3);
                });
  expectFailure("max_pool_argmax/3x3_in_2bit",
                "blpa_max_pool_argmax: unsupported code width 2", [&] {
                  WindowGeometry win{{1, 2}, {3, 3}, {1, 1}, {1, 1, 1, 1}};
                  blpa_max_pool_argmax(nullptr, x, y, codes, 1, 1,
                                       WINDOW_ARGS(win), 2);
                });
}

//===----------------------------------------------------------------------===//
// Determinism
//===----------------------------------------------------------------------===//

/// Runs `kernel` twice into fresh outputs and requires identical bits.
void expectDeterministic(const std::string &name, size_t outSize,
                         const std::function<void(float *)> &kernel) {
  Floats first(outSize, 1.0f), second(outSize, 2.0f);
  kernel(first.data());
  kernel(second.data());
  expectBitwise("determinism/" + name, first, second);
}

/// Runs `kernel` with one thread and with more threads than cores, into
/// fresh outputs, and requires identical bits.
void expectThreadIndependent(const std::string &name, size_t outSize,
                             const std::function<void(float *)> &kernel) {
  int threads = omp_get_max_threads();
  Floats one(outSize, 1.0f), many(outSize, 2.0f);
  omp_set_num_threads(1);
  kernel(one.data());
  omp_set_num_threads(std::max(threads, 2) + 1);
  kernel(many.data());
  omp_set_num_threads(threads);
  report("threads/" + name, sameBits(one, many),
         "one thread and several threads differ");
}

/// Floats that hold `bytes` bytes of codes in a determinism output.
size_t floatsFor(size_t bytes) { return (bytes + 3) / 4; }

/// The code region at the end of a determinism output of `floats` floats,
/// zeroed so that its padding compares equal.
uint8_t *codeRegion(float *out, size_t floats, size_t bytes) {
  std::memset(out + floats, 0, floatsFor(bytes) * sizeof(float));
  return reinterpret_cast<uint8_t *>(out + floats);
}

void testCodeDeterminism() {
  const int64_t n = 16, c = 32, spatial = 27 * 29, bits = 4;
  const size_t numel = n * c * spatial, codeBytes = packedSize(numel, bits);
  auto repeatable = [](const std::string &name, size_t outSize,
                       const std::function<void(float *)> &kernel) {
    expectDeterministic(name, outSize, kernel);
    expectThreadIndependent(name, outSize, kernel);
  };
  BnEncoded bn = bnEncoded(n, c, spatial, bits);
  repeatable("batch_norm_train_encode", numel + 2 * c + floatsFor(codeBytes),
             [&](float *o) {
               blpa_batch_norm_train_encode(
                   &ctx, bn.x.data(), bn.scale.data(), bn.bias.data(), o,
                   o + numel, o + numel + c,
                   codeRegion(o, numel + 2 * c, codeBytes), n, c, spatial, 1e-5,
                   bits);
             });
  Floats dy = randomFloats(numel);
  repeatable("batch_norm_grad_decode", numel + 2 * c, [&](float *o) {
    blpa_batch_norm_grad_decode(
        &ctx, dy.data(), bn.codes.data(), bn.scale.data(), bn.bias.data(),
        bn.invStd.data(), o, o + numel, o + numel + c, n, c, spatial, bits);
  });
  repeatable("bn_decode", numel, [&](float *o) {
    blpa_bn_decode(&ctx, bn.codes.data(), bn.scale.data(), bn.bias.data(), o, n,
                   c, spatial, bits, 1);
  });
  Floats params(2 * c);
  repeatable("quantize", 2 * c + floatsFor(codeBytes), [&](float *o) {
    blpa_quantize(&ctx, bn.x.data(), codeRegion(o, 2 * c, codeBytes), o, n, c,
                  spatial, bits, BLPA_SCHEME_AFFINE);
  });
  blpa_quantize(&ctx, bn.x.data(), bn.codes.data(), params.data(), n, c,
                spatial, bits, BLPA_SCHEME_AFFINE);
  repeatable("dequantize", numel, [&](float *o) {
    blpa_dequantize(&ctx, bn.codes.data(), params.data(), o, n, c, spatial,
                    bits, BLPA_SCHEME_AFFINE);
  });

  // Softmax rows, as many as the attention case of KernelCases.h.
  const int64_t rows = 300, length = 128;
  Floats probs = blpa_test::probabilityRows(rows, length), probParams(2 * rows);
  const size_t probBytes = rows * packedSize(length, bits);
  repeatable("probability_encode", 2 * rows + floatsFor(probBytes),
             [&](float *o) {
               blpa_probability_encode(&ctx, probs.data(),
                                       codeRegion(o, 2 * rows, probBytes), o,
                                       rows, length, bits);
             });
  Bytes probCodes(probBytes);
  blpa_probability_encode(&ctx, probs.data(), probCodes.data(),
                          probParams.data(), rows, length, bits);
  repeatable("probability_decode", rows * length, [&](float *o) {
    blpa_probability_decode(&ctx, probCodes.data(), probParams.data(), o, rows,
                            length, bits);
  });

  PoolCase pc = {"det", n, c, {{27, 29}, {3, 3}, {2, 2}, {1, 1, 1, 1}}};
  size_t poolBytes = packedSize(pc.ySize(), bits);
  Bytes codes(poolBytes);
  repeatable("max_pool_argmax", pc.ySize() + floatsFor(poolBytes),
             [&](float *o) {
               blpa_max_pool_argmax(&ctx, bn.x.data(), o,
                                    codeRegion(o, pc.ySize(), poolBytes), n, c,
                                    WINDOW_ARGS(pc.win), bits);
             });
  Floats y(pc.ySize());
  blpa_max_pool_argmax(&ctx, bn.x.data(), y.data(), codes.data(), n, c,
                       WINDOW_ARGS(pc.win), bits);
  repeatable("max_pool_grad_argmax", numel, [&](float *dx) {
    blpa_max_pool_grad_argmax(&ctx, dy.data(), codes.data(), dx, n, c,
                              WINDOW_ARGS(pc.win), bits);
  });
}

/// The kernels of ops with InPlaceOpInterface, called with the result over
/// the operand the planner may give it, write what they write out of place.
void testInPlace() {
  const int64_t n = 3, c = 5, spatial = 7 * 9, numel = n * c * spatial;
  Floats x = randomFloats(numel), dy = randomFloats(numel),
         other = randomFloats(numel), scale = randomFloats(c, 0.5, 2),
         bias = randomFloats(c), mean(c), invStd(c), y(numel);
  blpa_batch_norm_train(&ctx, x.data(), scale.data(), bias.data(), y.data(),
                        mean.data(), invStd.data(), n, c, spatial, 1e-5);
  // Runs `kernel(in, out)` out of place and then with out == in (a copy
  // of in), and compares every output.
  auto expectSame =
      [&](const char *name, const Floats &in,
          const std::function<void(const float *, float *, float *, float *)>
              &kernel) {
        Floats out(numel), outScale(c), outBias(c);
        kernel(in.data(), out.data(), outScale.data(), outBias.data());
        Floats inPlace = in, inPlaceScale(c), inPlaceBias(c);
        kernel(inPlace.data(), inPlace.data(), inPlaceScale.data(),
               inPlaceBias.data());
        report(std::string("in_place/") + name,
               sameBits(out, inPlace) && sameBits(outScale, inPlaceScale) &&
                   sameBits(outBias, inPlaceBias),
               "differs from the out-of-place result");
      };
  expectSame("relu", x, [&](const float *in, float *out, float *, float *) {
    blpa_relu(&ctx, in, out, numel);
  });
  expectSame("relu_grad", dy,
             [&](const float *in, float *out, float *, float *) {
               blpa_relu_grad(&ctx, in, x.data(), out, numel);
             });
  const int64_t dims[] = {n, c, spatial};
  expectSame("add_lhs", x, [&](const float *in, float *out, float *, float *) {
    blpa_add(&ctx, in, other.data(), out, 3, dims, dims, dims);
  });
  expectSame("add_rhs", x, [&](const float *in, float *out, float *, float *) {
    blpa_add(&ctx, other.data(), in, out, 3, dims, dims, dims);
  });
  expectSame("batch_norm_grad", dy,
             [&](const float *in, float *out, float *ds, float *db) {
               blpa_batch_norm_grad(&ctx, in, x.data(), scale.data(),
                                    mean.data(), invStd.data(), out, ds, db, n,
                                    c, spatial);
             });
  expectSame("batch_norm_relu_grad", dy,
             [&](const float *in, float *out, float *ds, float *db) {
               blpa_batch_norm_relu_grad(
                   &ctx, in, x.data(), scale.data(), bias.data(), mean.data(),
                   invStd.data(), out, ds, db, n, c, spatial);
             });
  BnEncoded bn(n, c, spatial, 4);
  bn.x = x;
  bn.scale = scale;
  bn.bias = bias;
  bn.encode();
  expectSame("batch_norm_grad_decode", dy,
             [&](const float *in, float *out, float *ds, float *db) {
               blpa_batch_norm_grad_decode(
                   &ctx, in, bn.codes.data(), scale.data(), bias.data(),
                   bn.invStd.data(), out, ds, db, n, c, spatial, 4);
             });
}

void testDeterminism() {
  ConvCase cc{{"det", 16, 32, 32, 1, {{28, 28}, {3, 3}, {1, 1}, {1, 1, 1, 1}}}};
  Floats x = randomFloats(cc.xSize()), wt = randomFloats(cc.wSize()),
         b = randomFloats(cc.k), dy = randomFloats(cc.ySize());
  expectDeterministic("conv", cc.ySize(), [&](float *y) {
    cc.forward(x.data(), wt.data(), b.data(), y);
  });
  expectDeterministic("conv_grad_input", cc.xSize(), [&](float *dx) {
    cc.gradInput(dy.data(), wt.data(), dx);
  });
  expectDeterministic("conv_grad_weight", cc.wSize(), [&](float *dw) {
    cc.gradWeight(dy.data(), x.data(), dw);
  });

  const int64_t n = 16, c = 32, spatial = 28 * 28;
  Floats scale = randomFloats(c), bias = randomFloats(c);
  Floats mean(c), invStd(c), y(cc.xSize());
  // Outputs of the multi-output kernels are concatenated for comparison.
  expectDeterministic("batch_norm_train", cc.xSize() + 2 * c, [&](float *o) {
    blpa_batch_norm_train(&ctx, x.data(), scale.data(), bias.data(), o,
                          o + cc.xSize(), o + cc.xSize() + c, n, c, spatial,
                          1e-5);
  });
  blpa_batch_norm_train(&ctx, x.data(), scale.data(), bias.data(), y.data(),
                        mean.data(), invStd.data(), n, c, spatial, 1e-5);
  expectDeterministic("batch_norm_grad", cc.xSize() + 2 * c, [&](float *o) {
    blpa_batch_norm_grad(&ctx, y.data(), x.data(), scale.data(), mean.data(),
                         invStd.data(), o, o + cc.xSize(), o + cc.xSize() + c,
                         n, c, spatial);
  });

  const int64_t m = 128, gn = 256, k = 512;
  Floats a = randomFloats(m * k), bm = randomFloats(k * gn),
         bc = randomFloats(gn);
  expectDeterministic("gemm", m * gn, [&](float *out) {
    blpa_gemm(&ctx, a.data(), bm.data(), bc.data(), out, m, gn, k, 0, 1, 1.0,
              1.0, 1, gn);
  });
  expectDeterministic("gemm_trans_a", k * k, [&](float *out) {
    blpa_gemm(&ctx, a.data(), a.data(), nullptr, out, k, k, m, 1, 0, 1.0, 0.0,
              0, 0);
  });
  // Over the batch on the threads, and one multithreaded sgemm at a time.
  expectDeterministic("batch_matmul", 64 * 16 * 16, [&](float *out) {
    blpa_batch_matmul(&ctx, a.data(), bm.data(), out, 64, 16, 16, 64, 0, 1, 64,
                      64);
  });
  expectDeterministic("batch_matmul_1", 2 * m * gn, [&](float *out) {
    blpa_batch_matmul(&ctx, a.data(), bm.data(), out, 2, m, gn, k / 2, 0, 0, 1,
                      2);
  });

  std::vector<int64_t> in = {n, c, 28, 28}, out = {1, c, 1, 1};
  expectDeterministic("reduce_sum_to", c, [&](float *o) {
    blpa_reduce_sum_to(&ctx, x.data(), o, 4, in.data(), out.data(), 1.0);
  });
  PoolCase pc = {"det", n, c, {{28, 28}, {3, 3}, {2, 2}, {1, 1, 1, 1}}};
  expectDeterministic("max_pool_grad", cc.xSize(), [&](float *dx) {
    blpa_max_pool_grad(&ctx, dy.data(), x.data(), dx, n, c,
                       WINDOW_ARGS(pc.win));
  });
  expectDeterministic("avg_pool_grad", cc.xSize(), [&](float *dx) {
    blpa_avg_pool_grad(&ctx, dy.data(), dx, n, c, WINDOW_ARGS(pc.win), 0);
  });
}

//===----------------------------------------------------------------------===//
// Broadcasting arithmetic, activations, strided copies, padding, dropout
//===----------------------------------------------------------------------===//

/// Every element of `got` bit for bit `want`'s (NaN wherever want is NaN).
void expectSameFloats(const std::string &name, const Floats &got,
                      const Floats &want) {
  if (got.size() != want.size())
    return report(name, false, "size mismatch");
  size_t differ = 0, first = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    bool same = std::isnan(want[i])
                    ? std::isnan(got[i])
                    : std::memcmp(&got[i], &want[i], sizeof(float)) == 0;
    if (!same && differ++ == 0)
      first = i;
  }
  char detail[200];
  std::snprintf(detail, sizeof(detail),
                "%zu of %zu elements differ from the reference's bits, first "
                "at [%zu]: %.9g, expected %.9g",
                differ, want.size(), first, differ ? got[first] : 0.0f,
                differ ? want[first] : 0.0f);
  report(name, differ == 0, detail);
}

/// blpa_trilu against ONNX's definition (numpy.triu / numpy.tril of each
/// matrix), both triangles.
void testTriluReference(const blpa_test::TriluCase &t) {
  size_t numel = size_t(t.batch * t.rows * t.cols);
  Floats x = randomFloats(numel);
  for (int64_t upper : {1, 0}) {
    Floats want(numel), y(numel, std::numeric_limits<float>::quiet_NaN());
    for (size_t i = 0; i < numel; ++i) {
      int64_t col = int64_t(i) % t.cols, row = int64_t(i) / t.cols % t.rows;
      bool keep = upper ? col >= row + t.k : col <= row + t.k;
      want[i] = keep ? x[i] : 0.0f;
    }
    blpa_trilu(&ctx, x.data(), y.data(), t.batch, t.rows, t.cols, t.k, upper);
    expectSameFloats(std::string("trilu_reference/") + t.name +
                         (upper ? "/upper" : "/lower"),
                     y, want);
  }
}

using BroadcastKernel = decltype(&blpa_add);

struct BinaryOp {
  const char *name;
  BroadcastKernel kernel;
  double (*ref)(double, double);
  /// Whether the float operation is correctly rounded (pow is not: libm's
  /// powf errs by up to about 1 ulp; it gets positive bases and a relative
  /// bar).
  bool exact = true;
};

// In double, then rounded once to float: the correctly rounded float
// operation (double has more than 2 * 24 + 2 bits), so the kernels must
// match bit for bit.
const BinaryOp binaryOps[] = {
    {"add", blpa_add, [](double u, double v) { return u + v; }},
    {"mul", blpa_mul, [](double u, double v) { return u * v; }},
    {"sub", blpa_sub, [](double u, double v) { return u - v; }},
    {"div", blpa_div, [](double u, double v) { return u / v; }},
    {"power", blpa_power, [](double u, double v) { return std::pow(u, v); },
     /*exact=*/false},
};

/// Expects `got` to be `want` bit for bit for an exact op, else within
/// 1e-6 relative.
void expectBinaryResult(const BinaryOp &op, const std::string &name,
                        const Floats &got, const Doubles &want) {
  if (op.exact)
    expectSameFloats(name, got, Floats(want.begin(), want.end()));
  else
    expectClose(name, got, want, 1e-6);
}

/// Out of place and in place over each operand with the output's shape,
/// against the reference bit for bit. Operands are away from 0 (divisors).
void testBroadcast(const BinaryOp &op, const char *name,
                   std::vector<int64_t> out, std::vector<int64_t> aDims,
                   std::vector<int64_t> bDims) {
  std::string base = std::string(op.name) + "/" + name;
  Floats a = op.exact ? awayFromZero(randomFloats(product(aDims)))
                      : randomFloats(product(aDims), 0.25f, 4.0f),
         b = awayFromZero(randomFloats(product(bDims)));
  Doubles want(product(out));
  for (size_t i = 0; i < want.size(); ++i) {
    std::vector<int64_t> index = unflatten(i, out);
    want[i] = op.exact ? double(float(op.ref(a[broadcastOffset(index, aDims)],
                                             b[broadcastOffset(index, bDims)])))
                       : op.ref(a[broadcastOffset(index, aDims)],
                                b[broadcastOffset(index, bDims)]);
  }
  int64_t rank = out.size();
  Floats y(want.size(), std::numeric_limits<float>::quiet_NaN());
  op.kernel(&ctx, a.data(), b.data(), y.data(), rank, out.data(), aDims.data(),
            bDims.data());
  expectBinaryResult(op, base, y, want);
  if (aDims == out) {
    Floats over = a;
    op.kernel(&ctx, over.data(), b.data(), over.data(), rank, out.data(),
              aDims.data(), bDims.data());
    expectBinaryResult(op, base + "/in_place_lhs", over, want);
  }
  if (bDims == out) {
    Floats over = b;
    op.kernel(&ctx, a.data(), over.data(), over.data(), rank, out.data(),
              aDims.data(), bDims.data());
    expectBinaryResult(op, base + "/in_place_rhs", over, want);
  }
}

void testBroadcasts() {
  struct Shape {
    const char *name;
    std::vector<int64_t> out, a, b;
  };
  const Shape shapes[] = {
      {"channel_bias", {2, 3, 5, 7}, {2, 3, 5, 7}, {1, 3, 1, 1}},
      {"channel_lhs", {2, 3, 5, 7}, {1, 3, 1, 1}, {2, 3, 5, 7}},
      {"row_bias", {9, 17}, {9, 17}, {1, 17}},
      {"column_bias", {9, 17}, {9, 1}, {9, 17}},
      {"scalar_rhs", {3, 4}, {3, 4}, {1, 1}},
      {"scalar_plus_matrix", {3, 4}, {1, 1}, {3, 4}},
      {"scalar_only", {1}, {1}, {1}},
      {"outer_product", {4, 5, 6}, {4, 1, 6}, {1, 5, 1}},
      {"rank5", {2, 3, 1, 4, 5}, {2, 1, 1, 4, 1}, {1, 3, 1, 1, 5}},
      {"rank5_same", {3, 1, 2, 5, 7}, {3, 1, 2, 5, 7}, {3, 1, 2, 5, 7}},
      {"rank5_rhs_channel", {2, 5, 3, 4, 3}, {2, 5, 3, 4, 3}, {1, 5, 1, 1, 1}},
      {"same_shape_large", {3, 7, 1001}, {3, 7, 1001}, {3, 7, 1001}},
      // Innermost runs longer than a parallel block, split within a row.
      {"long_rows", {3, 40001}, {3, 40001}, {1, 40001}},
      {"long_rows_alternating", {5, 3, 20011}, {5, 1, 20011}, {1, 3, 1}},
      {"empty", {3, 0, 2}, {3, 0, 2}, {1, 1, 2}},
  };
  for (const BinaryOp &op : binaryOps)
    for (const Shape &s : shapes)
      testBroadcast(op, s.name, s.out, s.a, s.b);
}

/// alpha * x + beta in float arithmetic (float parameters, each operation
/// rounded), as a float32 kernel evaluates it: where the exact value lies
/// within a rounding of 0 or 1, the rounded one decides the branch.
double floatAffine(double alpha, double beta, float x) {
  float product = float(double(float(alpha)) * x); // exact, then rounded
  return float(double(product) + float(beta));
}

/// The argument of tanh in GELU's tanh approximation.
double geluTanhArgument(double x) {
  return std::sqrt(2 / 3.14159265358979323846) * (x + 0.044715 * x * x * x);
}

double activationRef(const ActivationCase &a, double x) {
  switch (a.kind) {
  case BLPA_ACT_SIGMOID:
    return 1 / (1 + std::exp(-x));
  case BLPA_ACT_HARD_SIGMOID:
    return std::max(0.0, std::min(1.0, floatAffine(a.alpha, a.beta, x)));
  case BLPA_ACT_HARD_SWISH:
    return x * std::max(0.0, std::min(1.0, x / 6 + 0.5));
  case BLPA_ACT_TANH:
    return std::tanh(x);
  case BLPA_ACT_ERF:
    return std::erf(x);
  case BLPA_ACT_GELU:
    return x / 2 * (1 + std::erf(x / std::sqrt(2.0)));
  case BLPA_ACT_GELU_TANH:
    return x / 2 * (1 + std::tanh(geluTanhArgument(x)));
  case BLPA_ACT_SQRT:
    return std::sqrt(x);
  case BLPA_ACT_POW:
    return std::pow(x, a.alpha);
  case BLPA_ACT_EXP:
    return std::exp(x);
  case BLPA_ACT_LOG:
    return std::log(x);
  default: // CLIP: NaN stays NaN
    return std::isnan(x) ? x : std::min(std::max(x, a.alpha), a.beta);
  }
}

/// The derivatives of the smooth kinds at input x, in double.
double smoothDerivativeRef(const ActivationCase &a, double x) {
  const double pi = 3.14159265358979323846;
  switch (a.kind) {
  case BLPA_ACT_ERF:
    return 2 / std::sqrt(pi) * std::exp(-x * x);
  case BLPA_ACT_GELU:
    return (1 + std::erf(x / std::sqrt(2.0))) / 2 +
           x * std::exp(-x * x / 2) / std::sqrt(2 * pi);
  case BLPA_ACT_GELU_TANH: {
    double t = std::tanh(geluTanhArgument(x));
    double inner = std::sqrt(2 / pi) * (1 + 3 * 0.044715 * x * x);
    return (1 + t) / 2 + x / 2 * (1 - t * t) * inner;
  }
  default: // POW: 0 for a zero exponent, as torch's pow_backward
    return a.alpha == 0 ? 0.0 : a.alpha * std::pow(x, a.alpha - 1);
  }
}

/// dx from dy and `saved` (the output for SIGMOID, TANH and SQRT, else the
/// input), as Runtime.h defines it.
double activationGradRef(const ActivationCase &a, double dy, double saved) {
  switch (a.kind) {
  case BLPA_ACT_SIGMOID:
    return dy * saved * (1 - saved);
  case BLPA_ACT_TANH:
    return dy * (1 - saved * saved);
  case BLPA_ACT_SQRT:
    return dy / (2 * saved);
  case BLPA_ACT_EXP:
    return dy * saved;
  case BLPA_ACT_LOG:
    return dy / saved;
  case BLPA_ACT_ERF:
  case BLPA_ACT_GELU:
  case BLPA_ACT_GELU_TANH:
  case BLPA_ACT_POW:
    return dy * smoothDerivativeRef(a, saved);
  case BLPA_ACT_HARD_SIGMOID: {
    double t = floatAffine(a.alpha, a.beta, float(saved));
    return t > 0 && t < 1 ? dy * double(float(a.alpha)) : 0.0;
  }
  case BLPA_ACT_HARD_SWISH:
    return saved < -3 ? 0.0 : saved <= 3 ? dy * (saved / 3 + 0.5) : dy;
  default:
    return saved > a.alpha && saved < a.beta ? dy : 0.0;
  }
}

/// Elements whose reference value the kernel computes exactly even where
/// the case is not `exact`: hard_swish's saturated branches (and x = +-3,
/// whose slopes are exact), 0.5 at 0 and 1 from 20 on for sigmoid, the
/// other smooth kinds' values at 0 (0, or 1 for x ** 0).
bool exactElement(const ActivationCase &a, float x, bool grad) {
  switch (a.kind) {
  case BLPA_ACT_SIGMOID:
    return !grad && (x == 0 || x >= 20);
  case BLPA_ACT_HARD_SWISH:
    return x <= -3 || x >= 3;
  case BLPA_ACT_CLIP:
  case BLPA_ACT_HARD_SIGMOID:
    return true;
  default:
    return !grad && x == 0;
  }
}

Floats floatsOf(const Doubles &v) { return Floats(v.begin(), v.end()); }

void testActivation(const ActivationCase &a) {
  std::string base = std::string("activation/") + a.name;
  std::string gradBase = std::string("activation_grad/") + a.name;
  const size_t numel = 50001; // several parallel blocks, odd tail
  Floats x = withValues(randomFloats(numel, -8, 8), a.specials),
         dy = randomFloats(numel);
  Doubles yRef(numel);
  for (size_t i = 0; i < numel; ++i)
    yRef[i] = activationRef(a, x[i]);
  Floats y(numel, std::numeric_limits<float>::quiet_NaN());
  blpa_activation(&ctx, x.data(), y.data(), numel, a.kind, a.alpha, a.beta);

  // The backward pass's saved value: the kernel's own output for sigmoid.
  const Floats &saved = blpa::activationGradReadsOutput(a.kind) ? y : x;
  Doubles dxRef(numel);
  for (size_t i = 0; i < numel; ++i)
    dxRef[i] = activationGradRef(a, dy[i], saved[i]);
  Floats dx(numel, std::numeric_limits<float>::quiet_NaN());
  blpa_activation_grad(&ctx, dy.data(), saved.data(), dx.data(), numel, a.kind,
                       a.alpha, a.beta);

  if (a.exact) {
    expectSameFloats(base, y, floatsOf(yRef));
    expectSameFloats(gradBase, dx, floatsOf(dxRef));
  } else {
    expectClose(base, y, yRef, 1e-6);
    expectClose(gradBase, dx, dxRef, 1e-6);
    // Where the reference is exact, so must the kernel be.
    for (bool grad : {false, true}) {
      Floats got, want;
      for (size_t i = 0; i < numel; ++i)
        if (exactElement(a, x[i], grad)) {
          got.push_back(grad ? dx[i] : y[i]);
          want.push_back(float(grad ? dxRef[i] : yRef[i]));
        }
      expectSameFloats((grad ? gradBase : base) + "/saturated_exact", got,
                       want);
    }
  }

  // In place: y over x, dx over dy.
  Floats over = x;
  blpa_activation(&ctx, over.data(), over.data(), numel, a.kind, a.alpha,
                  a.beta);
  report(base + "/in_place", sameBits(over, y),
         "differs from the out-of-place result");
  over = dy;
  blpa_activation_grad(&ctx, over.data(), saved.data(), over.data(), numel,
                       a.kind, a.alpha, a.beta);
  report(gradBase + "/in_place", sameBits(over, dx),
         "differs from the out-of-place result");
}

void testActivations() {
  for (const ActivationCase &a : blpa_test::activationCases())
    testActivation(a);
}

/// The elements a strided copy reaches, offset + (rows - 1) * stride +
/// rowElems, and 5 more.
size_t stridedExtent(int64_t rows, int64_t rowElems, int64_t stride,
                     int64_t offset) {
  if (rows <= 0 || rowElems <= 0)
    return 5;
  return size_t(offset + (rows - 1) * stride + rowElems + 5);
}

/// The rows the call copies, every other element of dst left as it was
/// (offsets and strides in elements).
void testCopyStrided(const char *name, int64_t rows, int64_t rowElems,
                     int64_t srcStride, int64_t dstStride, int64_t srcOffset,
                     int64_t dstOffset) {
  Floats src =
             randomFloats(stridedExtent(rows, rowElems, srcStride, srcOffset)),
         dst =
             randomFloats(stridedExtent(rows, rowElems, dstStride, dstOffset));
  Floats want = dst;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < rowElems; ++j)
      want[dstOffset + r * dstStride + j] = src[srcOffset + r * srcStride + j];
  blpa_copy_strided(&ctx, src.data(), dst.data(), rows, rowElems, srcStride,
                    dstStride, srcOffset, dstOffset);
  report(std::string("copy_strided/") + name, sameBits(dst, want),
         "dst differs from the rows copied into it");
}

void testCopiesStrided() {
  for (const blpa_test::CopyStridedShape &c : blpa_test::copyStridedShapes)
    testCopyStrided(c.name, c.rows, c.rowElems, c.srcStride, c.dstStride,
                    c.srcOffset, c.dstOffset);
}

/// blpa_pad against its definition (bit for bit: a copy or the value). A
/// pure padding's gradient, the crop with -begin, must give x back.
void testPad(const char *name, std::vector<int64_t> in,
             std::vector<int64_t> begin, std::vector<int64_t> end,
             double value) {
  std::string base = std::string("pad/") + name;
  int64_t rank = in.size();
  std::vector<int64_t> out = in;
  bool padding = true;
  for (int64_t d = 0; d < rank; ++d) {
    out[d] += begin[d] + end[d];
    padding &= begin[d] >= 0 && end[d] >= 0;
  }
  Floats x = randomFloats(product(in)), want(product(out));
  for (size_t i = 0; i < want.size(); ++i) {
    std::vector<int64_t> index = unflatten(i, out);
    int64_t source = 0;
    bool inside = true;
    for (int64_t d = 0; d < rank; ++d) {
      int64_t at = index[d] - begin[d];
      inside &= at >= 0 && at < in[d];
      source = source * in[d] + at;
    }
    want[i] = inside ? x[source] : float(value);
  }
  Floats y(want.size(), std::numeric_limits<float>::quiet_NaN());
  blpa_pad(&ctx, x.data(), y.data(), rank, in.data(), out.data(), begin.data(),
           BLPA_PAD_CONSTANT, value, nullptr);
  expectSameFloats(base, y, want);
  // The value given at run time wins over the static one.
  const float runtimeValue = float(value);
  Floats fromBuffer(want.size(), std::numeric_limits<float>::quiet_NaN());
  blpa_pad(&ctx, x.data(), fromBuffer.data(), rank, in.data(), out.data(),
           begin.data(), BLPA_PAD_CONSTANT, value + 1.0, &runtimeValue);
  expectSameFloats(base + "/runtime_value", fromBuffer, want);
  if (!padding)
    return;
  std::vector<int64_t> back(rank);
  for (int64_t d = 0; d < rank; ++d)
    back[d] = -begin[d];
  Floats dx(x.size(), std::numeric_limits<float>::quiet_NaN());
  blpa_pad(&ctx, y.data(), dx.data(), rank, out.data(), in.data(), back.data(),
           BLPA_PAD_CONSTANT, 0.0, nullptr);
  expectSameFloats(base + "/gradient_crop", dx, x);
}

void testPads() {
  for (const blpa_test::PadShape &c : blpa_test::padShapes)
    testPad(c.name, c.in, c.begin, c.end, c.value);
}

/// The reference of a reflect or edge padding along one axis of size n:
/// the position that y's position `at` (relative to x's first element)
/// copies, found by walking back into x one step at a time as numpy's
/// np.pad describes it (mirrored without repeating the edge, or the edge).
int64_t padSourceRef(int64_t at, int64_t n, int64_t mode) {
  if (mode == BLPA_PAD_EDGE)
    return std::min(std::max<int64_t>(at, 0), n - 1);
  while (at < 0 || at >= n)
    at = at < 0 ? -at : 2 * (n - 1) - at;
  return at;
}

/// blpa_pad in reflect or edge mode against its definition (bit for bit: a
/// copy), and blpa_pad_grad against the scatter of dy into x's positions
/// summed in double; both repeatable and thread-count independent.
void testPadMode(const char *name, int64_t mode, std::vector<int64_t> in,
                 std::vector<int64_t> begin, std::vector<int64_t> end) {
  std::string base =
      std::string(mode == BLPA_PAD_REFLECT ? "pad_reflect/" : "pad_edge/") +
      name;
  int64_t rank = in.size();
  std::vector<int64_t> out = in;
  for (int64_t d = 0; d < rank; ++d)
    out[d] += begin[d] + end[d];
  Floats x = randomFloats(product(in)), dy = randomFloats(product(out));
  Floats want(product(out));
  Doubles dxRef(x.size(), 0.0);
  for (size_t i = 0; i < want.size(); ++i) {
    std::vector<int64_t> index = unflatten(i, out);
    int64_t source = 0;
    for (int64_t d = 0; d < rank; ++d)
      source = source * in[d] + padSourceRef(index[d] - begin[d], in[d], mode);
    want[i] = x[source];
    dxRef[source] += dy[i];
  }
  auto pad = [&](float *y) {
    blpa_pad(&ctx, x.data(), y, rank, in.data(), out.data(), begin.data(), mode,
             0.0, nullptr);
  };
  auto padGrad = [&](float *dx) {
    blpa_pad_grad(&ctx, dy.data(), dx, rank, in.data(), out.data(),
                  begin.data(), mode);
  };
  Floats y(want.size(), std::numeric_limits<float>::quiet_NaN());
  pad(y.data());
  expectSameFloats(base, y, want);
  Floats dx(x.size(), std::numeric_limits<float>::quiet_NaN());
  padGrad(dx.data());
  expectClose(base + "/grad", dx, dxRef, 1e-6);
  expectDeterministic(base + "/grad", dx.size(), padGrad);
  expectThreadIndependent(base + "/grad", dx.size(), padGrad);
}

void testPadModes() {
  for (const blpa_test::PadModeShape &c : blpa_test::padModeShapes())
    testPadMode(c.name, c.mode, c.in, c.begin, c.end);
}

/// blpa_activation_dynamic and its gradient read their parameters from
/// buffers where given: the same bits as blpa_activation with them static.
void testActivationDynamic() {
  const size_t numel = 50001;
  Floats x = randomFloats(numel, -8, 8), dy = randomFloats(numel);
  const float lo = -1.25f, hi = 3.5f;
  const float inf = std::numeric_limits<float>::infinity();
  struct Bounds {
    const char *name;
    const float *loAt, *hiAt;
    double staticLo, staticHi;
  } cases[] = {{"both", &lo, &hi, -inf, inf},
               {"min_only", &lo, nullptr, -inf, hi},
               {"max_only", nullptr, &hi, lo, inf}};
  for (const Bounds &b : cases) {
    std::string base = std::string("activation_dynamic/clip_") + b.name;
    Floats want(numel), got(numel), wantDx(numel), gotDx(numel);
    blpa_activation(&ctx, x.data(), want.data(), numel, BLPA_ACT_CLIP, lo, hi);
    blpa_activation_dynamic(&ctx, x.data(), got.data(), numel, BLPA_ACT_CLIP,
                            b.staticLo, b.staticHi, b.loAt, b.hiAt);
    expectSameFloats(base, got, want);
    blpa_activation_grad(&ctx, dy.data(), x.data(), wantDx.data(), numel,
                         BLPA_ACT_CLIP, lo, hi);
    blpa_activation_grad_dynamic(&ctx, dy.data(), x.data(), gotDx.data(), numel,
                                 BLPA_ACT_CLIP, b.staticLo, b.staticHi, b.loAt,
                                 b.hiAt);
    expectSameFloats(base + "/grad", gotDx, wantDx);
  }
}

/// blpa_transpose against its definition (bit for bit: a copy), and the
/// transpose by the inverse permutation (the gradient) must give x back.
void testTranspose(const char *name, std::vector<int64_t> in,
                   std::vector<int64_t> perm) {
  std::string base = std::string("transpose/") + name;
  int64_t rank = in.size();
  std::vector<int64_t> out(rank), inverse(rank);
  for (int64_t d = 0; d < rank; ++d) {
    out[d] = in[perm[d]];
    inverse[perm[d]] = d;
  }
  Floats x = randomFloats(product(in)), want(x.size());
  for (size_t i = 0; i < want.size(); ++i) {
    std::vector<int64_t> index = unflatten(i, out), source(rank);
    for (int64_t d = 0; d < rank; ++d)
      source[perm[d]] = index[d];
    int64_t at = 0;
    for (int64_t d = 0; d < rank; ++d)
      at = at * in[d] + source[d];
    want[i] = x[at];
  }
  Floats y(want.size(), std::numeric_limits<float>::quiet_NaN());
  blpa_transpose(&ctx, x.data(), y.data(), rank, in.data(), perm.data());
  expectSameFloats(base, y, want);
  Floats dx(x.size(), std::numeric_limits<float>::quiet_NaN());
  blpa_transpose(&ctx, y.data(), dx.data(), rank, out.data(), inverse.data());
  expectSameFloats(base + "/gradient_inverse", dx, x);
}

void testTransposes() {
  for (const blpa_test::TransposeShape &t : blpa_test::transposeShapes)
    testTranspose(t.name, t.in, t.perm);
}

/// Runtime.h's mask (DropoutMask.h's hash): whether element i is kept.
std::vector<bool> dropoutMaskRef(uint64_t seed, uint64_t step, int64_t stream,
                                 double ratio, size_t numel) {
  uint64_t key = blpa::dropoutKey(seed, step, stream);
  uint32_t threshold = blpa::dropoutThreshold(ratio);
  std::vector<bool> mask(numel);
  for (size_t i = 0; i < numel; ++i)
    mask[i] = blpa::dropoutKeeps(key, int64_t(i), threshold);
  return mask;
}

/// Whether `value` is within `sigmas` standard deviations of the mean
/// `p * n` of a binomial count over `n` draws.
bool withinSigmas(double count, double n, double p, double sigmas) {
  return std::fabs(count - p * n) <= sigmas * std::sqrt(n * p * (1 - p)) + 1;
}

/// Kept elements: y[i] != 0 (inputs are away from 0).
std::vector<bool> keptOf(const Floats &y) {
  std::vector<bool> kept(y.size());
  for (size_t i = 0; i < y.size(); ++i)
    kept[i] = y[i] != 0;
  return kept;
}

/// blpa_dropout's and blpa_dropout_grad's outputs at ctx's seed and step:
/// kept elements exactly x times the float scale 1 / (1 - ratio) (the
/// multiplication PyTorch does; exactly x / (1 - ratio) where the scale is
/// a power of two), dropped ones +0, the mask Runtime.h's and the same for
/// both kernels, the fraction kept within 4 sigmas of 1 - ratio.
void testDropout(double ratio, size_t numel, uint64_t seed, uint64_t step,
                 int64_t stream) {
  char name[160];
  std::snprintf(name, sizeof(name),
                "dropout/ratio%g/n%zu/seed0x%llx/step%llu/stream%lld", ratio,
                numel, (unsigned long long)seed, (unsigned long long)step,
                (long long)stream);
  std::string base = name;
  ctx.seed = seed;
  ctx.step = step;
  Floats x = awayFromZero(randomFloats(numel)),
         dy = awayFromZero(randomFloats(numel));
  std::vector<bool> mask = dropoutMaskRef(seed, step, stream, ratio, numel);
  float scale = float(1.0 / (1.0 - ratio));
  Floats yRef(numel), dxRef(numel);
  for (size_t i = 0; i < numel; ++i) {
    yRef[i] = mask[i] ? x[i] * scale : 0.0f;
    dxRef[i] = mask[i] ? dy[i] * scale : 0.0f;
  }
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Floats y(numel, nan), dx(numel, nan);
  blpa_dropout(&ctx, x.data(), y.data(), numel, ratio, stream);
  blpa_dropout_grad(&ctx, dy.data(), dx.data(), numel, ratio, stream);
  expectSameFloats(base + "/forward", y, yRef);
  expectSameFloats(base + "/grad", dx, dxRef);
  report(base + "/grad_mask", keptOf(y) == keptOf(dx),
         "blpa_dropout_grad drops other elements than blpa_dropout");
  // Kept values against the definition's division: within one rounding.
  size_t far = 0;
  for (size_t i = 0; i < numel; ++i)
    far +=
        mask[i] && std::fabs(y[i] - x[i] / (1.0 - ratio)) >
                       std::fabs(x[i] / (1.0 - ratio)) * std::ldexp(1.0, -23);
  report(base + "/scale", far == 0,
         std::to_string(far) + " kept elements are not x / (1 - ratio)");
  if (ratio == 0)
    report(base + "/identity", sameBits(y, x) && sameBits(dx, dy),
           "ratio 0 does not copy its input");
  if (numel >= 10000) {
    size_t kept = std::count(mask.begin(), mask.end(), true);
    char detail[160];
    std::snprintf(detail, sizeof(detail),
                  "kept %zu of %zu elements, expected %.0f +- 4 sigma", kept,
                  numel, (1 - ratio) * double(numel));
    report(base + "/kept_fraction",
           withinSigmas(double(kept), double(numel), 1 - ratio, 4), detail);
  }

  Floats over = x;
  blpa_dropout(&ctx, over.data(), over.data(), numel, ratio, stream);
  report(base + "/in_place", sameBits(over, y),
         "differs from the out-of-place result");
  over = dy;
  blpa_dropout_grad(&ctx, over.data(), over.data(), numel, ratio, stream);
  report(base + "/grad_in_place", sameBits(over, dx),
         "differs from the out-of-place result");
  expectThreadIndependent(base, numel, [&](float *out) {
    blpa_dropout(&ctx, x.data(), out, numel, ratio, stream);
  });
}

/// Another step, seed or stream draws another mask: about 2 r (1 - r) of
/// the elements change sides, within 4 sigmas.
void testDropoutStreams() {
  const size_t numel = 100003;
  const double ratio = 0.3;
  const uint64_t seed = 20240611, step = 41;
  const int64_t stream = 3;
  Floats x = awayFromZero(randomFloats(numel));
  auto keptAt = [&](uint64_t s, uint64_t t, int64_t id) {
    ctx.seed = s;
    ctx.step = t;
    Floats y(numel);
    blpa_dropout(&ctx, x.data(), y.data(), numel, ratio, id);
    return keptOf(y);
  };
  std::vector<bool> first = keptAt(seed, step, stream);
  report("dropout/same_step_same_mask", keptAt(seed, step, stream) == first,
         "the same seed, step and stream gave another mask");
  struct {
    const char *name;
    uint64_t seed, step;
    int64_t stream;
  } others[] = {{"step", seed, step + 1, stream},
                {"seed", seed + 1, step, stream},
                {"stream", seed, step, stream + 1},
                {"stream_negative", seed, step, -stream},
                {"step_high_bits", seed, step | (uint64_t(1) << 40), stream}};
  for (const auto &o : others) {
    std::vector<bool> mask = keptAt(o.seed, o.step, o.stream);
    size_t changed = 0;
    for (size_t i = 0; i < numel; ++i)
      changed += mask[i] != first[i];
    double p = 2 * ratio * (1 - ratio);
    char detail[160];
    std::snprintf(detail, sizeof(detail),
                  "%zu of %zu elements changed sides, expected %.0f +- 4 "
                  "sigma",
                  changed, numel, p * double(numel));
    report(std::string("dropout/other_") + o.name + "_other_mask",
           withinSigmas(double(changed), double(numel), p, 4), detail);
  }
  ctx.seed = 0;
  ctx.step = 0;
}

void testDropouts() {
  testDropout(0.3, 100003, 20240611, 0, 0);
  testDropout(0.3, 100003, 20240611, 1, 0);
  testDropout(0.1, 50001, 7, 12, 5);
  testDropout(0.5, 50001, 7, 12, 5);
  testDropout(0.75, 20011, 0x9e3779b97f4a7c15ull, (uint64_t(1) << 40) + 7, -3);
  testDropout(0.9, 50001, 1, 2, 1 << 20);
  testDropout(0.0, 10007, 3, 4, 2);
  testDropout(0.3, 7, 3, 4, 2);
  testDropout(0.3, 1, 3, 4, 2);
  testDropout(0.3, 0, 3, 4, 2);
  testDropoutStreams();
}

/// Arguments the new kernels reject through blpa_runtime_fail (forks: call
/// before any thread exists).
void testBadLayerArguments() {
  blpa_context local{};
  float x[4] = {1, 2, 3, 4}, y[4];
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const struct {
    const char *name;
    double ratio;
    bool grad;
    const char *expected;
  } ratios[] = {
      {"ratio_1", 1.0, false, "blpa_dropout: ratio 1 is outside [0, 1)"},
      {"ratio_negative", -0.1, false,
       "blpa_dropout: ratio -0.1 is outside [0, 1)"},
      {"ratio_nan", nan, false, "nan is outside [0, 1)"},
      {"grad_ratio_1.5", 1.5, true,
       "blpa_dropout_grad: ratio 1.5 is outside [0, 1)"},
      {"grad_ratio_1", 1.0, true,
       "blpa_dropout_grad: ratio 1 is outside [0, 1)"},
  };
  for (const auto &r : ratios)
    expectFailure(std::string("dropout/") + r.name, r.expected, [&] {
      if (r.grad)
        blpa_dropout_grad(&local, x, y, 4, r.ratio, 0);
      else
        blpa_dropout(&local, x, y, 4, r.ratio, 0);
    });
  expectFailure("activation/unknown_kind",
                "blpa runtime error: blpa_activation: unknown kind 99",
                [&] { blpa_activation(&local, x, y, 4, 99, 0, 0); });
  expectFailure("activation_grad/unknown_kind",
                "blpa runtime error: blpa_activation_grad: unknown kind -1",
                [&] { blpa_activation_grad(&local, x, x, y, 4, -1, 0, 0); });
  const int64_t out[2] = {2, 2}, bad[2] = {3, 2};
  expectFailure("div/bad_broadcast",
                "blpa_div: dimension 0 of b is 3, expected 1 or 2",
                [&] { blpa_div(&local, x, x, y, 2, out, out, bad); });
  expectFailure("mul/bad_broadcast",
                "blpa_mul: dimension 0 of a is 3, expected 1 or 2",
                [&] { blpa_mul(&local, x, x, y, 2, out, bad, out); });
  expectFailure("pad/rank_0", "blpa runtime error: blpa_pad: rank 0", [&] {
    blpa_pad(&local, x, y, 0, out, out, out, BLPA_PAD_CONSTANT, 0.0, nullptr);
  });
  expectFailure("transpose/rank_0",
                "blpa runtime error: blpa_transpose: the rank is below 1",
                [&] { blpa_transpose(&local, x, y, 0, out, out); });
  const int64_t repeated[2] = {1, 1};
  expectFailure("transpose/not_a_permutation",
                "blpa runtime error: blpa_transpose: perm is not a permutation "
                "of 0..rank-1",
                [&] { blpa_transpose(&local, x, y, 2, out, repeated); });
  expectFailure(
      "batch_matmul/bad_batch",
      "blpa runtime error: blpa_batch_matmul: an operand's batch is "
      "neither 1 nor the output's",
      [&] { blpa_batch_matmul(&local, x, x, y, 2, 1, 1, 1, 0, 0, 2, 3); });
  expectFailure("softmax/negative_shape",
                "blpa runtime error: blpa_softmax: negative shape [2, -1, 2]",
                [&] { blpa_softmax(&local, x, y, 2, -1, 2); });
  expectFailure("log_softmax_grad/negative_shape",
                "blpa runtime error: blpa_log_softmax_grad: negative shape "
                "[-2, 1, 2]",
                [&] { blpa_log_softmax_grad(&local, x, x, y, -2, 1, 2); });
}

//===----------------------------------------------------------------------===//
// The shared cases
//===----------------------------------------------------------------------===//

/// KernelCases.h on the CPU runtime: each call with more threads than
/// cores against the same call with one thread (the CPU runtime's results
/// do not depend on the thread count: bit for bit, but for oneDNN's and
/// sgemm's), in guarded host memory (nothing
/// written outside the outputs, every output element written: they start
/// as NaN), and a second run to the same bits.
class ThreadsBackend : public blpa_test::Backend {
public:
  using Api = blpa_test::Api;
  using Case = blpa_test::Case;
  using HostMemory = blpa_test::HostMemory;
  using Kernel = blpa_test::Kernel;
  using Results = blpa_test::Results;

  const Api &api() const override { return cpuApi; }
  const Api &refApi() const override { return cpuApi; }
  blpa_context *refContext() override { return &ctx; }
  std::vector<blpa_context *> contexts() override { return {&ctx}; }
  bool exactArithmetic() const override { return true; }
  /// Every reduced value is accumulated by one thread in a fixed order.
  bool sameOrder() const override { return true; }

  Results run(const Case &c, const Kernel &kernel) override {
    Results r;
    r.names = c.names();
    r.ref = outputsWith(c, kernel, 1);
    int many = std::max(defaultThreads, 2) + 1;
    HostMemory first(c.buffers);
    call(kernel, first, many);
    r.got = first.outputs();
    std::string stray = first.strayWrites();
    report(c.name + "/memory", stray.empty(), stray);
    report(c.name + "/repeat", outputsWith(c, kernel, many) == r.got,
           "a second run gives other bits");
    return r;
  }

  int defaultThreads = 1;

private:
  static const Api cpuApi;

  void call(const Kernel &kernel, const HostMemory &memory, int threads) {
    omp_set_num_threads(threads);
    kernel(cpuApi, &ctx, memory.ptrs);
    omp_set_num_threads(defaultThreads);
  }
  std::vector<Bytes> outputsWith(const Case &c, const Kernel &kernel,
                                 int threads) {
    HostMemory memory(c.buffers);
    call(kernel, memory, threads);
    return memory.outputs();
  }
};

#define BLPA_CPU_ENTRY(name) &::name,
const blpa_test::Api ThreadsBackend::cpuApi = {BLPA_KERNELS(BLPA_CPU_ENTRY)};
#undef BLPA_CPU_ENTRY

//===----------------------------------------------------------------------===//
// Benchmark
//===----------------------------------------------------------------------===//

/// Average wall time of `step` in milliseconds, after a few warm-up runs.
double averageMs(const std::function<void()> &step) {
  using Clock = std::chrono::steady_clock;
  const int warmup = 3, iters = 20;
  for (int it = 0; it < warmup; ++it)
    step();
  auto start = Clock::now();
  for (int it = 0; it < iters; ++it)
    step();
  return std::chrono::duration<double, std::milli>(Clock::now() - start)
             .count() /
         iters;
}

/// The code kernels next to the exact kernels they replace or extend, on the
/// benchmark convolution's activation shape.
void benchCodes(const ConvCase &cc) {
  const int64_t n = cc.n, c = cc.c, spatial = cc.win.inSize(), bits = 4;
  size_t numel = n * c * spatial;
  Floats x = randomNormals(numel, 0.5f, 1.0f), dy = randomFloats(numel),
         scale = randomFloats(c, 0.5f, 2.0f), bias = randomFloats(c), y(numel),
         dx(numel), mean(c), invStd(c), dscale(c), dbias(c), params(2 * c);
  Bytes codes(packedSize(numel, bits));
  auto line = [](const char *what, double exact, double coded) {
    std::printf("%-28s exact %6.2f ms, 4-bit %6.2f ms (%.2fx)\n", what, exact,
                coded, coded / exact);
  };
  line("batch_norm_train / encode", averageMs([&] {
         blpa_batch_norm_train(&ctx, x.data(), scale.data(), bias.data(),
                               y.data(), mean.data(), invStd.data(), n, c,
                               spatial, 1e-5);
       }),
       averageMs([&] {
         blpa_batch_norm_train_encode(&ctx, x.data(), scale.data(), bias.data(),
                                      y.data(), mean.data(), invStd.data(),
                                      codes.data(), n, c, spatial, 1e-5, bits);
       }));
  line("batch_norm_grad / decode", averageMs([&] {
         blpa_batch_norm_grad(&ctx, dy.data(), x.data(), scale.data(),
                              mean.data(), invStd.data(), dx.data(),
                              dscale.data(), dbias.data(), n, c, spatial);
       }),
       averageMs([&] {
         blpa_batch_norm_grad_decode(&ctx, dy.data(), codes.data(),
                                     scale.data(), bias.data(), invStd.data(),
                                     dx.data(), dscale.data(), dbias.data(), n,
                                     c, spatial, bits);
       }));
  line("relu / bn_decode relu",
       averageMs([&] { blpa_relu(&ctx, x.data(), y.data(), numel); }),
       averageMs([&] {
         blpa_bn_decode(&ctx, codes.data(), scale.data(), bias.data(), y.data(),
                        n, c, spatial, bits, 1);
       }));
  line("copy / quantize nonneg", averageMs([&] {
         blpa_copy(&ctx, y.data(), x.data(), numel * sizeof(float));
       }),
       averageMs([&] {
         blpa_quantize(&ctx, x.data(), codes.data(), params.data(), n, c,
                       spatial, bits, BLPA_SCHEME_NONNEG);
       }));
  line("copy / dequantize nonneg", averageMs([&] {
         blpa_copy(&ctx, y.data(), x.data(), numel * sizeof(float));
       }),
       averageMs([&] {
         blpa_dequantize(&ctx, codes.data(), params.data(), y.data(), n, c,
                         spatial, bits, BLPA_SCHEME_NONNEG);
       }));
  PoolCase pc = {"bench", n, c, {cc.win.in, {3, 3}, {2, 2}, {1, 1, 1, 1}}};
  line("max_pool / argmax", averageMs([&] {
         blpa_max_pool(&ctx, x.data(), y.data(), n, c, WINDOW_ARGS(pc.win));
       }),
       averageMs([&] {
         blpa_max_pool_argmax(&ctx, x.data(), y.data(), codes.data(), n, c,
                              WINDOW_ARGS(pc.win), bits);
       }));
  line("max_pool_grad / argmax", averageMs([&] {
         blpa_max_pool_grad(&ctx, dy.data(), x.data(), dx.data(), n, c,
                            WINDOW_ARGS(pc.win));
       }),
       averageMs([&] {
         blpa_max_pool_grad_argmax(&ctx, dy.data(), codes.data(), dx.data(), n,
                                   c, WINDOW_ARGS(pc.win), bits);
       }));
}

void bench() {
  ConvCase cc{
      {"bench", 64, 32, 32, 1, {{28, 28}, {3, 3}, {1, 1}, {1, 1, 1, 1}}}};
  Floats x = randomFloats(cc.xSize()), wt = randomFloats(cc.wSize()),
         b = randomFloats(cc.k), dy = randomFloats(cc.ySize()), y(cc.ySize()),
         dx(cc.xSize()), dw(cc.wSize());
  double forward =
      averageMs([&] { cc.forward(x.data(), wt.data(), b.data(), y.data()); });
  double gradInput =
      averageMs([&] { cc.gradInput(dy.data(), wt.data(), dx.data()); });
  double gradWeight =
      averageMs([&] { cc.gradWeight(dy.data(), x.data(), dw.data()); });
  std::printf("conv [64,32,28,28]x[32,32,3,3] pad 1: forward %.2f ms, "
              "grad_input %.2f ms, grad_weight %.2f ms, total %.2f ms\n",
              forward, gradInput, gradWeight, forward + gradInput + gradWeight);
  benchCodes(cc);
}

//===----------------------------------------------------------------------===//
// Region codes of piecewise activations (blpa_activation_region and
// blpa_activation_grad_region) against naive references; KernelCases.h
// checks thread counts, in-place calls and bounds read from memory.
//===----------------------------------------------------------------------===//

using blpa_test::regionBits;

/// The piece of x, from Runtime.h's definition.
int regionRef(const ActivationCase &a, float x) {
  switch (a.kind) {
  case BLPA_ACT_HARD_SIGMOID: {
    double t = floatAffine(a.alpha, a.beta, x);
    return t > 0 && t < 1;
  }
  case BLPA_ACT_HARD_SWISH:
    return x < -3 ? 0 : x <= 3 ? 1 : 2;
  default:
    return x > a.alpha && x < a.beta;
  }
}

/// dx from dy, the piece and v (any approximation of x), from Runtime.h.
double regionGradRef(const ActivationCase &a, double dy, int region, double v) {
  if (a.kind == BLPA_ACT_HARD_SIGMOID)
    return region ? dy * double(float(a.alpha)) : 0.0;
  if (a.kind != BLPA_ACT_HARD_SWISH || region != 1)
    return region ? dy : 0.0;
  return dy * (std::min(std::max(v, -3.0), 3.0) / 3 + 0.5);
}

void testActivationRegion(const ActivationCase &a) {
  std::string base = std::string("activation_region/") + a.name;
  const size_t numel = 50001; // several parallel blocks, odd tail
  const int bits = regionBits(a.kind);
  const bool readsValues = a.kind == BLPA_ACT_HARD_SWISH;
  Floats x = withValues(randomFloats(numel, -8, 8), a.specials),
         dy = randomFloats(numel);
  Codes want(numel);
  for (size_t i = 0; i < numel; ++i)
    want[i] = regionRef(a, x[i]);
  Bytes buf = codeBuffer(numel, bits);
  blpa_activation_region(&ctx, x.data(), buf.data(), numel, a.kind, a.alpha,
                         a.beta, nullptr, nullptr, bits);
  Codes codes = checkPacked(base, buf, numel, bits);
  expectCodes(base + "/codes", codes, want, std::vector<bool>(numel, false));

  // With the exact input as its values, the exact gradient bit for bit.
  const float *exactValues = readsValues ? x.data() : nullptr;
  Floats exact(numel), dx(numel, std::numeric_limits<float>::quiet_NaN());
  blpa_activation_grad(&ctx, dy.data(), x.data(), exact.data(), numel, a.kind,
                       a.alpha, a.beta);
  blpa_activation_grad_region(&ctx, dy.data(), buf.data(), exactValues,
                              dx.data(), numel, a.kind, a.alpha, a.beta, bits);
  expectSameFloats(base + "/grad_of_exact_values", dx, exact);

  // Values off by up to half a 4-bit bin of [-8, 8], as decoded ones are:
  // the pieces still come from the codes, only the slope moves.
  Floats v = x, moved = randomFloats(numel, -0.5f, 0.5f);
  for (size_t i = 0; i < numel; ++i)
    v[i] += moved[i];
  Doubles ref(numel);
  for (size_t i = 0; i < numel; ++i)
    ref[i] = regionGradRef(a, dy[i], want[i], v[i]);
  const float *values = readsValues ? v.data() : nullptr;
  blpa_activation_grad_region(&ctx, dy.data(), buf.data(), values, dx.data(),
                              numel, a.kind, a.alpha, a.beta, bits);
  if (readsValues)
    expectClose(base + "/grad_of_approximate_values", dx, ref, 1e-6);
  else
    expectSameFloats(base + "/grad_of_approximate_values", dx, floatsOf(ref));
}

void testActivationRegions() {
  for (const ActivationCase &a : blpa_test::activationCases())
    if (blpa::activationRegionBits(a.kind))
      testActivationRegion(a);
}

/// Kinds without pieces, wrong widths and hard swish without its values
/// are refused.
void testBadActivationRegions() {
  float x[2] = {1, 2}, dx[2];
  uint8_t codes[4] = {};
  expectFailure("activation_region/sigmoid",
                "blpa_activation_region: activation kind 0 has no region "
                "codes",
                [&] {
                  blpa_activation_region(nullptr, x, codes, 2, BLPA_ACT_SIGMOID,
                                         0, 0, nullptr, nullptr, 1);
                });
  expectFailure("activation_region/hard_swish_bits_1",
                "blpa_activation_region: unsupported code width 1", [&] {
                  blpa_activation_region(nullptr, x, codes, 2,
                                         BLPA_ACT_HARD_SWISH, 0, 0, nullptr,
                                         nullptr, 1);
                });
  expectFailure("activation_grad_region/clip_bits_2",
                "blpa_activation_grad_region: unsupported code width 2", [&] {
                  blpa_activation_grad_region(nullptr, x, codes, nullptr, dx, 2,
                                              BLPA_ACT_CLIP, 0, 6, 2);
                });
  expectFailure("activation_grad_region/hard_swish_without_values",
                "blpa_activation_grad_region: hard swish reads the values",
                [&] {
                  blpa_activation_grad_region(nullptr, x, codes, nullptr, dx, 2,
                                              BLPA_ACT_HARD_SWISH, 0, 0, 2);
                });
}

} // namespace

int main(int argc, char **argv) {
  // One line per check, as before the shared cases.
  blpa_test::verbose = true;
  // Forks first, before any thread exists.
  if (argc == 1) {
    testBadLabels();
    testBadCodeWidths();
    testBadLayerArguments();
    testBadActivationRegions();
  }

  ctx = blpa_context{};
  blpa_runtime_init(&ctx);
  if (argc > 1 && std::strcmp(argv[1], "--bench") == 0) {
    bench();
    blpa_runtime_shutdown(&ctx);
    return 0;
  }

  for (const ConvGeometry &geometry : convGeometries())
    testConv(ConvCase{geometry});
  // Again with each sample a chunk of its own (CpuRuntime::convChunkBytes):
  // a large batch runs so, and backward-weights then sums the chunks.
  blpa_runtime_shutdown(&ctx);
  setenv("BLPA_CPU_CONV_CHUNK_BYTES", "1", 1);
  blpa_runtime_init(&ctx);
  for (const ConvGeometry &geometry : convGeometries())
    testConv(ConvCase{geometry}, "/chunked");
  blpa_runtime_shutdown(&ctx);
  unsetenv("BLPA_CPU_CONV_CHUNK_BYTES");
  blpa_runtime_init(&ctx);
  testConvInWorkspace(int64_t(64) << 20, "/workspace");
  testConvInWorkspace(int64_t(24) << 10, "/small_workspace");

  testBatchNorm("4d", 5, 7, 13 * 11);
  testBatchNorm("2d", 33, 6, 1);
  testBatchNormRelu("4d", 5, 7, 13 * 11);
  testBatchNormRelu("2d", 33, 6, 1);
  for (const blpa_test::LnShape &s : blpa_test::lnShapes)
    testLayerNormReference(s);
  testRunningStats();

  testRelu();
  testBroadcasts();
  testActivations();
  testCopiesStrided();
  testPads();
  testPadModes();
  testActivationDynamic();
  testActivationRegions();
  testTransposes();
  for (const blpa_test::TriluCase &t : blpa_test::triluCases)
    testTriluReference(t);
  testDropouts();
  for (const blpa_test::ReduceShape &r : blpa_test::reduceShapes)
    testReduceSumTo(r.name, r.in, r.out, r.scale);
  testCopy();
  testFill();
  testSgd();

  for (const blpa_test::PoolGeometry &geometry :
       blpa_test::dilatedPoolGeometries()) {
    PoolCase pc{geometry};
    testMaxPool(pc);
    testMaxPoolArgmax(pc, true);
  }
  for (const blpa_test::PoolGeometry &geometry : blpa_test::poolGeometries()) {
    PoolCase pc{geometry};
    testMaxPool(pc);
    testAvgPool(pc, 0);
    testAvgPool(pc, 1);
  }
  testGlobalAvgPool();

  for (const blpa_test::GemmShape &g : blpa_test::gemmShapes)
    testGemm(g.m, g.n, g.k, g.transA, g.transB, g.alpha, g.beta, g.cRows,
             g.cCols);
  testBatchMatMuls();
  testSoftmaxCrossEntropy(9, 11, 50.0f);
  testSoftmaxCrossEntropy(64, 1000, 5.0f);
  testSoftmaxCrossEntropy(40, 7, 5.0f, -100, 3);
  // A class label as the ignored one (a padding token), and every row
  // ignored: the loss and its gradient are 0.
  testSoftmaxCrossEntropy(40, 7, 5.0f, 0, 2);
  testSoftmaxCrossEntropy(5, 7, 5.0f, -1, 1);
  testEmbedding(37, 11, 19);
  testEmbedding(256, 256, 128);
  testEmbedding(0, 4, 3);
  testSoftmaxes();

  testCodeLayout();
  testBnCodes("4d", 3, 3, 7 * 5);
  testBnCodes("2d", 37, 16, 1);
  testBnCodes("large_odd_planes", 4, 5, 43 * 41);
  testBnGradVsExact();
  for (int64_t scheme : {BLPA_SCHEME_AFFINE, BLPA_SCHEME_NONNEG}) {
    for (int bits : {2, 4, 8}) {
      testQuantize("4d", 3, 3, 7 * 5, scheme, bits);
      testQuantize("2d", 37, 16, 1, scheme, bits);
      testQuantize("2d_tall_odd", 301, 13, 1, scheme, bits);
      testQuantize("large_odd_planes", 4, 5, 43 * 41, scheme, bits);
    }
  }
  for (const blpa_test::ProbabilityShape &s : blpa_test::probabilityShapes)
    for (int bits : {2, 4, 8})
      testProbabilityReference(s, bits);
  testQuantize("4d", 3, 3, 7 * 5, BLPA_SCHEME_MASK, 1);
  testQuantize("large_odd_planes", 4, 5, 43 * 41, BLPA_SCHEME_MASK, 1);
  std::vector<PoolCase> argmaxCases = {PoolCase{blpa_test::allPaddingPool}};
  for (const blpa_test::PoolGeometry &geometry : blpa_test::poolGeometries())
    argmaxCases.push_back(PoolCase{geometry});
  for (const PoolCase &pc : argmaxCases) {
    testMaxPoolArgmax(pc, false);
    testMaxPoolArgmax(pc, true);
  }

  testInPlace();
  testDeterminism();
  testCodeDeterminism();

  ThreadsBackend threads;
  threads.defaultThreads = omp_get_max_threads();
  blpa_test::backend = &threads;
  blpa_test::runKernelCases();

  blpa_runtime_shutdown(&ctx);
  std::printf("%d passed, %d failed\n", blpa_test::passed, blpa_test::failed);
  return blpa_test::failed == 0 ? 0 : 1;
}
