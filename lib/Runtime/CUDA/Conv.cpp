//===- Conv.cpp - Convolution kernels on cuDNN ---------------------------===//
//
// Forward, backward-data and backward-filter through cuDNN's legacy
// convolution API. Each (direction, shape) gets a ConvPlan on its first
// call: the descriptors, built once, and the algorithm, chosen once. First
// calls happen in the first run of a step, which is never recorded, so
// nothing here that may synchronize or allocate runs during graph capture.
//
// Results must be bitwise repeatable and match the CPU target to float32
// rounding, so the descriptors ask for FMA math (no TF32) and only
// deterministic algorithms are accepted.
//
// cuDNN pads both sides of an axis equally. For the asymmetric pads some
// exporters produce for 'SAME', the convolution runs with the smaller pad of
// each axis on a copy of x that carries the excess as explicit zero rows and
// columns; backward-data computes the gradient of that copy and extracts its
// interior. Both give exactly the asymmetric convolution.
//
//===----------------------------------------------------------------------===//

#include "CudaRuntime.h"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>
#include <vector>

using namespace blpa::cuda;

namespace {

/// The padded copy of x (asymmetric pads only).
constexpr unsigned paddedInputSlot = 30;
/// First element of every plan key of this file ("conv").
constexpr int64_t convPlanTag = 0x636f6e76;

const float one = 1.0f, zero = 0.0f;

/// The static arguments every conv kernel of the ABI takes, in ABI order.
struct ConvShape {
  int64_t n, c, h, w, k, r, s, oh, ow, strideH, strideW, padTop, padLeft,
      padBottom, padRight, dilationH, dilationW, group;
};

enum class Direction : int64_t { forward, backwardData, backwardFilter };

std::string describe(const ConvShape &s) {
  char text[384];
  auto ll = [](int64_t v) { return (long long)v; };
  std::snprintf(
      text, sizeof(text),
      "x [%lld, %lld, %lld, %lld], w [%lld, %lld, %lld, %lld], y [%lld, "
      "%lld, %lld, %lld], strides %lldx%lld, pads (top %lld, left %lld, "
      "bottom %lld, right %lld), dilations %lldx%lld, group %lld",
      ll(s.n), ll(s.c), ll(s.h), ll(s.w), ll(s.k),
      ll(s.group > 0 ? s.c / s.group : s.c), ll(s.r), ll(s.s), ll(s.n), ll(s.k),
      ll(s.oh), ll(s.ow), ll(s.strideH), ll(s.strideW), ll(s.padTop),
      ll(s.padLeft), ll(s.padBottom), ll(s.padRight), ll(s.dilationH),
      ll(s.dilationW), ll(s.group));
  return text;
}

/// True when the product of `dims` (each >= 0) is at most INT_MAX: cuDNN's
/// legacy descriptors take int dimensions and strides.
bool fitsInt(std::initializer_list<int64_t> dims) {
  int64_t product = 1;
  for (int64_t d : dims) {
    if (d > INT_MAX || (d > 0 && product > INT_MAX / d))
      return false;
    product *= d;
  }
  return true;
}

/// Rows (or columns) of the explicit padding copy: the part of the pads
/// beyond the symmetric one cuDNN applies.
int64_t paddedExtent(int64_t size, int64_t before, int64_t after) {
  return size + before + after - 2 * std::min(before, after);
}

void validate(const char *name, const ConvShape &s) {
  if (s.group < 1 || s.c % s.group || s.k % s.group)
    failf("%s: channels (%lld in, %lld out) not divisible by group %lld", name,
          (long long)s.c, (long long)s.k, (long long)s.group);
  bool positive = s.n >= 0 && s.c > 0 && s.h > 0 && s.w > 0 && s.k > 0 &&
                  s.r > 0 && s.s > 0 && s.oh > 0 && s.ow > 0 && s.strideH > 0 &&
                  s.strideW > 0 && s.dilationH > 0 && s.dilationW > 0;
  bool padsValid = s.padTop >= 0 && s.padLeft >= 0 && s.padBottom >= 0 &&
                   s.padRight >= 0 && s.padTop <= INT_MAX / 2 &&
                   s.padLeft <= INT_MAX / 2 && s.padBottom <= INT_MAX / 2 &&
                   s.padRight <= INT_MAX / 2;
  if (!positive || !padsValid)
    failf("%s: degenerate convolution %s", name, describe(s).c_str());
  int64_t hp = paddedExtent(s.h, s.padTop, s.padBottom);
  int64_t wp = paddedExtent(s.w, s.padLeft, s.padRight);
  if (!fitsInt({s.n, s.c, hp, wp}) || !fitsInt({s.n, s.k, s.oh, s.ow}) ||
      !fitsInt({s.k, s.c / s.group, s.r, s.s}) ||
      std::max({s.strideH, s.strideW, s.dilationH, s.dilationW}) > INT_MAX)
    failf("%s: a tensor has more than 2^31-1 elements (or a stride or "
          "dilation exceeds it), beyond cuDNN's convolution descriptors: %s",
          name, describe(s).c_str());
}

/// An owned cuDNN descriptor, destroyed with its plan.
template <typename T, cudnnStatus_t (*create)(T *), cudnnStatus_t (*destroy)(T)>
class Descriptor {
public:
  Descriptor() { check(create(&value), "creating a cuDNN descriptor"); }
  ~Descriptor() { destroy(value); }
  Descriptor(const Descriptor &) = delete;
  Descriptor &operator=(const Descriptor &) = delete;
  operator T() const { return value; }

private:
  T value = nullptr;
};

using TensorDesc =
    Descriptor<cudnnTensorDescriptor_t, cudnnCreateTensorDescriptor,
               cudnnDestroyTensorDescriptor>;
using FilterDesc =
    Descriptor<cudnnFilterDescriptor_t, cudnnCreateFilterDescriptor,
               cudnnDestroyFilterDescriptor>;
using ConvDesc =
    Descriptor<cudnnConvolutionDescriptor_t, cudnnCreateConvolutionDescriptor,
               cudnnDestroyConvolutionDescriptor>;

/// One direction of one convolution shape.
struct ConvPlan {
  /// x as the convolution sees it: the caller's [n, c, h, w], or the padded
  /// copy [n, c, hp, wp] when the pads are asymmetric.
  TensorDesc x;
  /// With asymmetric pads: the caller's packed x and the [n, c, h, w] view
  /// of it inside the padded copy (the copy's strides, from interiorOffset).
  TensorDesc userX, interiorX;
  TensorDesc y, bias;
  FilterDesc w;
  ConvDesc conv;
  bool padded = false;
  int64_t paddedElements = 0;
  int64_t interiorOffset = 0;
  /// The chosen algorithm (a cudnnConvolution*Algo_t of the plan's
  /// direction) and the workspace it needs; set on the first run.
  bool chosen = false;
  int algorithm = 0;
  size_t workspaceBytes = 0;
};

void setTensor(cudnnTensorDescriptor_t desc, int64_t n, int64_t c, int64_t h,
               int64_t w, const char *name) {
  check(cudnnSetTensor4dDescriptor(desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT,
                                   int(n), int(c), int(h), int(w)),
        name);
}

/// Describes the padded copy and the caller's x inside it.
void setPaddedInput(ConvPlan &plan, const ConvShape &s, int64_t hp, int64_t wp,
                    const char *name) {
  int64_t extraTop = s.padTop - std::min(s.padTop, s.padBottom);
  int64_t extraLeft = s.padLeft - std::min(s.padLeft, s.padRight);
  plan.padded = true;
  plan.paddedElements = s.n * s.c * hp * wp;
  plan.interiorOffset = extraTop * wp + extraLeft;
  setTensor(plan.userX, s.n, s.c, s.h, s.w, name);
  check(cudnnSetTensor4dDescriptorEx(
            plan.interiorX, CUDNN_DATA_FLOAT, int(s.n), int(s.c), int(s.h),
            int(s.w), int(s.c * hp * wp), int(hp * wp), int(wp), 1),
        name);
}

std::shared_ptr<ConvPlan> makePlan(const char *name, const ConvShape &s) {
  validate(name, s);
  auto plan = std::make_shared<ConvPlan>();
  int64_t hp = paddedExtent(s.h, s.padTop, s.padBottom);
  int64_t wp = paddedExtent(s.w, s.padLeft, s.padRight);
  setTensor(plan->x, s.n, s.c, hp, wp, name);
  if (hp != s.h || wp != s.w)
    setPaddedInput(*plan, s, hp, wp, name);
  setTensor(plan->y, s.n, s.k, s.oh, s.ow, name);
  setTensor(plan->bias, 1, s.k, 1, 1, name);
  // The ABI's [K, C/group, R, S] weights are exactly cuDNN's grouped KCRS.
  check(cudnnSetFilter4dDescriptor(plan->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW,
                                   int(s.k), int(s.c / s.group), int(s.r),
                                   int(s.s)),
        name);
  check(cudnnSetConvolution2dDescriptor(
            plan->conv, int(std::min(s.padTop, s.padBottom)),
            int(std::min(s.padLeft, s.padRight)), int(s.strideH),
            int(s.strideW), int(s.dilationH), int(s.dilationW),
            CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
        name);
  check(cudnnSetConvolutionGroupCount(plan->conv, int(s.group)), name);
  // CUDNN_DEFAULT_MATH permits TF32 tensor cores on sm_80+; FMA math
  // keeps full float32 products.
  check(cudnnSetConvolutionMathType(plan->conv, CUDNN_FMA_MATH), name);
  int on = 0, ok = 0, ooh = 0, oow = 0;
  check(cudnnGetConvolution2dForwardOutputDim(plan->conv, plan->x, plan->w, &on,
                                              &ok, &ooh, &oow),
        name);
  if (on != s.n || ok != s.k || ooh != s.oh || oow != s.ow)
    failf("%s: output size [%d, %d, %d, %d] of the convolution does not "
          "match the given one: %s",
          name, on, ok, ooh, oow, describe(s).c_str());
  return plan;
}

ConvPlan &planFor(CudaRuntime &rt, const char *name, Direction direction,
                  const ConvShape &s) {
  std::vector<int64_t> key = {
      convPlanTag, int64_t(direction), s.n, s.c, s.h, s.w, s.k, s.r, s.s, s.oh,
      s.ow};
  key.insert(key.end(), {s.strideH, s.strideW, s.padTop, s.padLeft, s.padBottom,
                         s.padRight, s.dilationH, s.dilationW, s.group});
  std::shared_ptr<void> &entry = rt.plans[key];
  if (!entry)
    entry = makePlan(name, s);
  return *static_cast<ConvPlan *>(entry.get());
}

/// The zero-padded copy of the caller's x, for asymmetric pads.
const float *paddedInput(CudaRuntime &rt, const ConvPlan &plan, const float *x,
                         const char *name) {
  size_t bytes = size_t(plan.paddedElements) * sizeof(float);
  auto *copy = static_cast<float *>(scratchFor(rt, paddedInputSlot, bytes));
  check(cudaMemsetAsync(copy, 0, bytes, rt.stream), name);
  check(cudnnTransformTensor(rt.cudnn, &one, plan.userX, x, &zero,
                             plan.interiorX, copy + plan.interiorOffset),
        name);
  return copy;
}

/// The convolution's three tensors as cuDNN sees them: x (possibly the
/// padded copy), w and y. Each direction writes one of them (forward y,
/// backward-data x, backward-filter w) and casts away its const.
struct ConvTensors {
  const float *x, *w, *y;
};

/// The per-direction cuDNN entry points, so that choosing and running an
/// algorithm is written once.
struct Forward {
  using Perf = cudnnConvolutionFwdAlgoPerf_t;
  using Algo = cudnnConvolutionFwdAlgo_t;
  static cudnnStatus_t maxCount(cudnnHandle_t h, int *count) {
    return cudnnGetConvolutionForwardAlgorithmMaxCount(h, count);
  }
  static cudnnStatus_t heuristics(cudnnHandle_t h, const ConvPlan &p, int max,
                                  int *returned, Perf *perfs) {
    return cudnnGetConvolutionForwardAlgorithm_v7(h, p.x, p.w, p.conv, p.y, max,
                                                  returned, perfs);
  }
  static cudnnStatus_t find(cudnnHandle_t h, const ConvPlan &p,
                            const ConvTensors &t, int max, int *returned,
                            Perf *perfs, void *ws, size_t wsBytes) {
    return cudnnFindConvolutionForwardAlgorithmEx(
        h, p.x, t.x, p.w, t.w, p.conv, p.y, const_cast<float *>(t.y), max,
        returned, perfs, ws, wsBytes);
  }
  static cudnnStatus_t workspace(cudnnHandle_t h, const ConvPlan &p, Algo a,
                                 size_t *bytes) {
    return cudnnGetConvolutionForwardWorkspaceSize(h, p.x, p.w, p.conv, p.y, a,
                                                   bytes);
  }
  static cudnnStatus_t run(cudnnHandle_t h, const ConvPlan &p,
                           const ConvTensors &t, void *ws) {
    return cudnnConvolutionForward(h, &one, p.x, t.x, p.w, t.w, p.conv,
                                   Algo(p.algorithm), ws, p.workspaceBytes,
                                   &zero, p.y, const_cast<float *>(t.y));
  }
};

struct BackwardData {
  using Perf = cudnnConvolutionBwdDataAlgoPerf_t;
  using Algo = cudnnConvolutionBwdDataAlgo_t;
  static cudnnStatus_t maxCount(cudnnHandle_t h, int *count) {
    return cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, count);
  }
  static cudnnStatus_t heuristics(cudnnHandle_t h, const ConvPlan &p, int max,
                                  int *returned, Perf *perfs) {
    return cudnnGetConvolutionBackwardDataAlgorithm_v7(h, p.w, p.y, p.conv, p.x,
                                                       max, returned, perfs);
  }
  static cudnnStatus_t find(cudnnHandle_t h, const ConvPlan &p,
                            const ConvTensors &t, int max, int *returned,
                            Perf *perfs, void *ws, size_t wsBytes) {
    return cudnnFindConvolutionBackwardDataAlgorithmEx(
        h, p.w, t.w, p.y, t.y, p.conv, p.x, const_cast<float *>(t.x), max,
        returned, perfs, ws, wsBytes);
  }
  static cudnnStatus_t workspace(cudnnHandle_t h, const ConvPlan &p, Algo a,
                                 size_t *bytes) {
    return cudnnGetConvolutionBackwardDataWorkspaceSize(h, p.w, p.y, p.conv,
                                                        p.x, a, bytes);
  }
  static cudnnStatus_t run(cudnnHandle_t h, const ConvPlan &p,
                           const ConvTensors &t, void *ws) {
    return cudnnConvolutionBackwardData(h, &one, p.w, t.w, p.y, t.y, p.conv,
                                        Algo(p.algorithm), ws, p.workspaceBytes,
                                        &zero, p.x, const_cast<float *>(t.x));
  }
};

struct BackwardFilter {
  using Perf = cudnnConvolutionBwdFilterAlgoPerf_t;
  using Algo = cudnnConvolutionBwdFilterAlgo_t;
  static cudnnStatus_t maxCount(cudnnHandle_t h, int *count) {
    return cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, count);
  }
  static cudnnStatus_t heuristics(cudnnHandle_t h, const ConvPlan &p, int max,
                                  int *returned, Perf *perfs) {
    return cudnnGetConvolutionBackwardFilterAlgorithm_v7(
        h, p.x, p.y, p.conv, p.w, max, returned, perfs);
  }
  static cudnnStatus_t find(cudnnHandle_t h, const ConvPlan &p,
                            const ConvTensors &t, int max, int *returned,
                            Perf *perfs, void *ws, size_t wsBytes) {
    return cudnnFindConvolutionBackwardFilterAlgorithmEx(
        h, p.x, t.x, p.y, t.y, p.conv, p.w, const_cast<float *>(t.w), max,
        returned, perfs, ws, wsBytes);
  }
  static cudnnStatus_t workspace(cudnnHandle_t h, const ConvPlan &p, Algo a,
                                 size_t *bytes) {
    return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, p.x, p.y, p.conv,
                                                          p.w, a, bytes);
  }
  static cudnnStatus_t run(cudnnHandle_t h, const ConvPlan &p,
                           const ConvTensors &t, void *ws) {
    return cudnnConvolutionBackwardFilter(
        h, &one, p.x, t.x, p.y, t.y, p.conv, Algo(p.algorithm), ws,
        p.workspaceBytes, &zero, p.w, const_cast<float *>(t.w));
  }
};

/// BLPA_CUDNN_FIND=1 benchmarks the candidates (cudnnFind*AlgorithmEx) on
/// the first call instead of trusting cuDNN's heuristics. Off by default:
/// timings vary between processes, so the winner, and with it the bits of
/// the results, could differ from run to run; the heuristics' order is fixed
/// for a given device, cuDNN version and workspace size.
bool benchmarkAlgorithms() {
  static const bool enabled = [] {
    const char *value = std::getenv("BLPA_CUDNN_FIND");
    return value && std::strcmp(value, "1") == 0;
  }();
  return enabled;
}

/// Picks the first candidate, best first, that cuDNN supports here, is
/// deterministic (backward algorithms 0 and 3 accumulate with atomics), does
/// not use tensor-op (TF32) math and whose workspace, asked again under our
/// FMA-math descriptor, fits the arena's workspace.
template <typename Ops>
void chooseAlgorithm(CudaRuntime &rt, ConvPlan &plan, const ConvTensors &t,
                     const char *name, const ConvShape &s) {
  int max = 0;
  check(Ops::maxCount(rt.cudnn, &max), name);
  std::vector<typename Ops::Perf> perfs(size_t(std::max(max, 1)));
  int returned = 0;
  // Find overwrites only the direction's output, which the real call that
  // follows writes again.
  if (benchmarkAlgorithms())
    check(Ops::find(rt.cudnn, plan, t, max, &returned, perfs.data(),
                    rt.workspace, rt.workspaceBytes),
          name);
  else
    check(Ops::heuristics(rt.cudnn, plan, max, &returned, perfs.data()), name);
  for (int i = 0; i < returned && i < int(perfs.size()); ++i) {
    const typename Ops::Perf &perf = perfs[size_t(i)];
    if (perf.status != CUDNN_STATUS_SUCCESS ||
        perf.determinism != CUDNN_DETERMINISTIC ||
        perf.mathType == CUDNN_TENSOR_OP_MATH ||
        perf.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)
      continue;
    size_t bytes = 0;
    if (Ops::workspace(rt.cudnn, plan, perf.algo, &bytes) !=
            CUDNN_STATUS_SUCCESS ||
        bytes > rt.workspaceBytes)
      continue;
    plan.algorithm = int(perf.algo);
    plan.workspaceBytes = bytes;
    plan.chosen = true;
    return;
  }
  failf("%s: no deterministic FMA-math cuDNN algorithm fits the %zu-byte "
        "workspace for %s",
        name, rt.workspaceBytes, describe(s).c_str());
}

/// Runs one direction of `plan`, choosing its algorithm first when needed
/// (again if the workspace shrank since).
template <typename Ops>
void runPlan(CudaRuntime &rt, ConvPlan &plan, const ConvTensors &t,
             const char *name, const ConvShape &s) {
  if (!plan.chosen || plan.workspaceBytes > rt.workspaceBytes)
    chooseAlgorithm<Ops>(rt, plan, t, name, s);
  check(Ops::run(rt.cudnn, plan, t, rt.workspace), name);
}

} // namespace

extern "C" {

void blpa_conv2d(blpa_context *ctx, const float *x, const float *w,
                 const float *b, float *y, int64_t n, int64_t c, int64_t h,
                 int64_t w_, int64_t k, int64_t r, int64_t s, int64_t oh,
                 int64_t ow, int64_t strideH, int64_t strideW, int64_t padTop,
                 int64_t padLeft, int64_t padBottom, int64_t padRight,
                 int64_t dilationH, int64_t dilationW, int64_t group) {
  const char *name = "blpa_conv2d";
  ConvShape shape{n,       c,         h,        w_,        k,         r,
                  s,       oh,        ow,       strideH,   strideW,   padTop,
                  padLeft, padBottom, padRight, dilationH, dilationW, group};
  if (n == 0)
    return; // y is empty
  CudaRuntime &rt = runtimeOf(ctx);
  ConvPlan &plan = planFor(rt, name, Direction::forward, shape);
  const float *input = plan.padded ? paddedInput(rt, plan, x, name) : x;
  runPlan<Forward>(rt, plan, {input, w, y}, name, shape);
  if (b)
    check(cudnnAddTensor(rt.cudnn, &one, plan.bias, b, &one, plan.y, y), name);
}

void blpa_conv2d_grad_input(blpa_context *ctx, const float *dy, const float *w,
                            float *dx, int64_t n, int64_t c, int64_t h,
                            int64_t w_, int64_t k, int64_t r, int64_t s,
                            int64_t oh, int64_t ow, int64_t strideH,
                            int64_t strideW, int64_t padTop, int64_t padLeft,
                            int64_t padBottom, int64_t padRight,
                            int64_t dilationH, int64_t dilationW,
                            int64_t group) {
  const char *name = "blpa_conv2d_grad_input";
  ConvShape shape{n,       c,         h,        w_,        k,         r,
                  s,       oh,        ow,       strideH,   strideW,   padTop,
                  padLeft, padBottom, padRight, dilationH, dilationW, group};
  if (n == 0)
    return; // dx is empty
  CudaRuntime &rt = runtimeOf(ctx);
  // plan.x is the true input shape (or its padded copy), so cuDNN knows the
  // rows and columns a strided forward skipped and gives them zero gradient.
  ConvPlan &plan = planFor(rt, name, Direction::backwardData, shape);
  float *target = dx;
  if (plan.padded)
    target = static_cast<float *>(scratchFor(
        rt, paddedInputSlot, size_t(plan.paddedElements) * sizeof(float)));
  runPlan<BackwardData>(rt, plan, {target, w, dy}, name, shape);
  // The gradient of the explicit padding is dropped.
  if (plan.padded)
    check(cudnnTransformTensor(rt.cudnn, &one, plan.interiorX,
                               target + plan.interiorOffset, &zero, plan.userX,
                               dx),
          name);
}

void blpa_conv2d_grad_weight(blpa_context *ctx, const float *dy, const float *x,
                             float *dw, int64_t n, int64_t c, int64_t h,
                             int64_t w_, int64_t k, int64_t r, int64_t s,
                             int64_t oh, int64_t ow, int64_t strideH,
                             int64_t strideW, int64_t padTop, int64_t padLeft,
                             int64_t padBottom, int64_t padRight,
                             int64_t dilationH, int64_t dilationW,
                             int64_t group) {
  const char *name = "blpa_conv2d_grad_weight";
  ConvShape shape{n,       c,         h,        w_,        k,         r,
                  s,       oh,        ow,       strideH,   strideW,   padTop,
                  padLeft, padBottom, padRight, dilationH, dilationW, group};
  CudaRuntime &rt = runtimeOf(ctx);
  if (n == 0) {
    // An empty batch contributes nothing: dw is zero.
    validate(name, shape);
    size_t bytes = size_t(k * (c / group) * r * s) * sizeof(float);
    check(cudaMemsetAsync(dw, 0, bytes, rt.stream), name);
    return;
  }
  ConvPlan &plan = planFor(rt, name, Direction::backwardFilter, shape);
  const float *input = plan.padded ? paddedInput(rt, plan, x, name) : x;
  runPlan<BackwardFilter>(rt, plan, {input, dw, dy}, name, shape);
}

} // extern "C"
