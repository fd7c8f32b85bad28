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
// 2-D and 3-D convolutions use the same N-d descriptors (4-D and 5-D
// tensors). cuDNN pads both sides of an axis equally. For the asymmetric
// pads some exporters produce for 'SAME', the convolution runs with the
// smaller pad of each axis on a copy of x that carries the excess as
// explicit zero planes, rows and columns; backward-data computes the
// gradient of that copy and extracts its interior. Both give exactly the
// asymmetric convolution.
//
//===----------------------------------------------------------------------===//

#include "CudaRuntime.h"

#include "../Common/WindowShape.h"

#include <algorithm>
#include <climits>
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

using blpa::ConvShape;

enum class Direction : int64_t { forward, backwardData, backwardFilter };

/// "[a, b, ...]" of the window's `values`.
std::string formatDims(const blpa::WindowShape &win, const int64_t *values) {
  std::string text = "[";
  for (int64_t i = 0; i < win.rank; ++i)
    text += (i ? ", " : "") + std::to_string(values[i]);
  return text + "]";
}

std::string describe(const ConvShape &s) {
  const blpa::WindowShape &win = s.window;
  return "n " + std::to_string(s.n) + ", c " + std::to_string(s.c) + ", k " +
         std::to_string(s.k) + ", group " + std::to_string(s.group) + ", in " +
         formatDims(win, win.in) + ", out " + formatDims(win, win.out) +
         ", kernel " + formatDims(win, win.kernel) + ", strides " +
         formatDims(win, win.stride) + ", pads " +
         formatDims(win, win.padBegin) + " + " + formatDims(win, win.padEnd) +
         ", dilations " + formatDims(win, win.dilation);
}

/// True when the product of `dims` (each >= 0) is at most INT_MAX: cuDNN's
/// legacy descriptors take int dimensions and strides.
bool fitsInt(const std::vector<int64_t> &dims) {
  int64_t product = 1;
  for (int64_t d : dims) {
    if (d > INT_MAX || (d > 0 && product > INT_MAX / d))
      return false;
    product *= d;
  }
  return true;
}

/// Planes, rows or columns of the explicit padding copy along spatial axis
/// i: the part of the pads beyond the symmetric one cuDNN applies.
int64_t paddedExtent(const blpa::WindowShape &win, int64_t i) {
  return win.in[i] + win.padBegin[i] + win.padEnd[i] -
         2 * std::min(win.padBegin[i], win.padEnd[i]);
}

/// [n, channels, spatial...] of a tensor of the convolution.
std::vector<int64_t> tensorDims(int64_t n, int64_t channels,
                                const blpa::WindowShape &win,
                                const int64_t *spatial) {
  std::vector<int64_t> dims = {n, channels};
  dims.insert(dims.end(), spatial, spatial + win.rank);
  return dims;
}

/// x's dims as the convolution sees it (the padded copy's when padded).
std::vector<int64_t> paddedInputDims(const ConvShape &s) {
  std::vector<int64_t> dims = {s.n, s.c};
  for (int64_t i = 0; i < s.window.rank; ++i)
    dims.push_back(paddedExtent(s.window, i));
  return dims;
}

void validate(const char *name, const ConvShape &s) {
  const blpa::WindowShape &win = s.window;
  if (s.group < 1 || s.c % s.group || s.k % s.group)
    failf("%s: channels (%lld in, %lld out) not divisible by group %lld", name,
          (long long)s.c, (long long)s.k, (long long)s.group);
  if (win.rank != 2 && win.rank != 3)
    failf("%s: %lld spatial dimensions; only 2 and 3 are supported", name,
          (long long)win.rank);
  bool positive = s.n >= 0 && s.c > 0 && s.k > 0;
  int64_t largest = 0;
  for (int64_t i = 0; i < win.rank; ++i) {
    positive = positive && win.in[i] > 0 && win.out[i] > 0;
    if (win.padBegin[i] > INT_MAX / 2 || win.padEnd[i] > INT_MAX / 2)
      positive = false;
    largest = std::max({largest, win.stride[i], win.dilation[i]});
  }
  if (!positive)
    failf("%s: degenerate convolution %s", name, describe(s).c_str());
  std::vector<int64_t> weight = {s.k, s.c / s.group};
  weight.insert(weight.end(), win.kernel, win.kernel + win.rank);
  if (!fitsInt(paddedInputDims(s)) ||
      !fitsInt(tensorDims(s.n, s.k, win, win.out)) || !fitsInt(weight) ||
      largest > INT_MAX)
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
  /// x as the convolution sees it: the caller's [n, c, spatial...], or the
  /// padded copy when the pads are asymmetric.
  TensorDesc x;
  /// With asymmetric pads: the caller's packed x and the view of it inside
  /// the padded copy (the copy's strides, from interiorOffset).
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

/// Row-major strides of `dims`.
std::vector<int> packedStrides(const std::vector<int> &dims) {
  std::vector<int> strides(dims.size(), 1);
  for (size_t i = dims.size() - 1; i > 0; --i)
    strides[i - 1] = strides[i] * dims[i];
  return strides;
}

std::vector<int> toInt(const std::vector<int64_t> &values) {
  return std::vector<int>(values.begin(), values.end());
}

/// A float tensor of `dims` with `strides` (packed when empty).
void setTensor(cudnnTensorDescriptor_t desc, const std::vector<int64_t> &dims,
               const char *name, std::vector<int> strides = {}) {
  std::vector<int> sizes = toInt(dims);
  if (strides.empty())
    strides = packedStrides(sizes);
  check(cudnnSetTensorNdDescriptor(desc, CUDNN_DATA_FLOAT, int(sizes.size()),
                                   sizes.data(), strides.data()),
        name);
}

/// Describes the padded copy's interior, where the caller's x goes.
void setPaddedInput(ConvPlan &plan, const ConvShape &s,
                    const std::vector<int64_t> &paddedDims, const char *name) {
  const blpa::WindowShape &win = s.window;
  std::vector<int> copyStrides = packedStrides(toInt(paddedDims));
  plan.padded = true;
  plan.paddedElements = 1;
  for (int64_t d : paddedDims)
    plan.paddedElements *= d;
  plan.interiorOffset = 0;
  for (int64_t i = 0; i < win.rank; ++i) {
    int64_t extra = win.padBegin[i] - std::min(win.padBegin[i], win.padEnd[i]);
    plan.interiorOffset += extra * copyStrides[size_t(2 + i)];
  }
  std::vector<int64_t> userDims = tensorDims(s.n, s.c, win, win.in);
  setTensor(plan.userX, userDims, name);
  setTensor(plan.interiorX, userDims, name, copyStrides);
}

std::shared_ptr<ConvPlan> makePlan(const char *name, const ConvShape &s) {
  validate(name, s);
  const blpa::WindowShape &win = s.window;
  auto plan = std::make_shared<ConvPlan>();
  std::vector<int64_t> xDims = paddedInputDims(s);
  setTensor(plan->x, xDims, name);
  if (xDims != tensorDims(s.n, s.c, win, win.in))
    setPaddedInput(*plan, s, xDims, name);
  std::vector<int64_t> yDims = tensorDims(s.n, s.k, win, win.out);
  setTensor(plan->y, yDims, name);
  std::vector<int64_t> biasDims(yDims.size(), 1);
  biasDims[1] = s.k;
  setTensor(plan->bias, biasDims, name);
  // The ABI's [K, C/group, kernel...] weights are exactly cuDNN's grouped
  // KC(D)RS.
  std::vector<int> filter = {int(s.k), int(s.c / s.group)};
  std::vector<int> pads, strides, dilations;
  for (int64_t i = 0; i < win.rank; ++i) {
    filter.push_back(int(win.kernel[i]));
    pads.push_back(int(std::min(win.padBegin[i], win.padEnd[i])));
    strides.push_back(int(win.stride[i]));
    dilations.push_back(int(win.dilation[i]));
  }
  check(cudnnSetFilterNdDescriptor(plan->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW,
                                   int(filter.size()), filter.data()),
        name);
  check(cudnnSetConvolutionNdDescriptor(
            plan->conv, int(win.rank), pads.data(), strides.data(),
            dilations.data(), CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
        name);
  check(cudnnSetConvolutionGroupCount(plan->conv, int(s.group)), name);
  // CUDNN_DEFAULT_MATH permits TF32 tensor cores on sm_80+; FMA math
  // keeps full float32 products.
  check(cudnnSetConvolutionMathType(plan->conv, CUDNN_FMA_MATH), name);
  std::vector<int> outDims(yDims.size());
  check(cudnnGetConvolutionNdForwardOutputDim(
            plan->conv, plan->x, plan->w, int(outDims.size()), outDims.data()),
        name);
  if (outDims != toInt(yDims))
    failf("%s: the convolution's output size does not match the given one: "
          "%s",
          name, describe(s).c_str());
  return plan;
}

ConvPlan &planFor(CudaRuntime &rt, const char *name, Direction direction,
                  const ConvShape &s) {
  const blpa::WindowShape &win = s.window;
  std::vector<int64_t> key = {
      convPlanTag, int64_t(direction), s.n, s.c, s.k, s.group, win.rank};
  for (const int64_t *values : {win.in, win.out, win.kernel, win.stride,
                                win.padBegin, win.padEnd, win.dilation})
    key.insert(key.end(), values, values + win.rank);
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

/// The ConvShape of the ABI's static arguments.
ConvShape convShape(const char *name, int64_t n, int64_t c, int64_t k,
                    int64_t group, int64_t rank, const int64_t *in,
                    const int64_t *out, const int64_t *kernel,
                    const int64_t *strides, const int64_t *pads,
                    const int64_t *dilations) {
  ConvShape shape;
  if (!shape.read(n, c, k, group, rank, in, out, kernel, strides, pads,
                  dilations))
    failf("%s: invalid window (%lld spatial dimensions)", name,
          (long long)rank);
  return shape;
}

} // namespace

extern "C" {

void blpa_conv(blpa_context *ctx, const float *x, const float *w,
               const float *b, float *y, int64_t n, int64_t c, int64_t k,
               int64_t group, int64_t rank, const int64_t *in,
               const int64_t *out, const int64_t *kernel,
               const int64_t *strides, const int64_t *pads,
               const int64_t *dilations) {
  const char *name = "blpa_conv";
  ConvShape shape = convShape(name, n, c, k, group, rank, in, out, kernel,
                              strides, pads, dilations);
  if (n == 0)
    return; // y is empty
  CudaRuntime &rt = runtimeOf(ctx);
  ConvPlan &plan = planFor(rt, name, Direction::forward, shape);
  const float *input = plan.padded ? paddedInput(rt, plan, x, name) : x;
  runPlan<Forward>(rt, plan, {input, w, y}, name, shape);
  if (b)
    check(cudnnAddTensor(rt.cudnn, &one, plan.bias, b, &one, plan.y, y), name);
}

void blpa_conv_grad_input(blpa_context *ctx, const float *dy, const float *w,
                          float *dx, int64_t n, int64_t c, int64_t k,
                          int64_t group, int64_t rank, const int64_t *in,
                          const int64_t *out, const int64_t *kernel,
                          const int64_t *strides, const int64_t *pads,
                          const int64_t *dilations) {
  const char *name = "blpa_conv_grad_input";
  ConvShape shape = convShape(name, n, c, k, group, rank, in, out, kernel,
                              strides, pads, dilations);
  if (n == 0)
    return; // dx is empty
  CudaRuntime &rt = runtimeOf(ctx);
  // plan.x is the true input shape (or its padded copy), so cuDNN knows the
  // positions a strided forward skipped and gives them zero gradient.
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

void blpa_conv_grad_weight(blpa_context *ctx, const float *dy, const float *x,
                           float *dw, int64_t n, int64_t c, int64_t k,
                           int64_t group, int64_t rank, const int64_t *in,
                           const int64_t *out, const int64_t *kernel,
                           const int64_t *strides, const int64_t *pads,
                           const int64_t *dilations) {
  const char *name = "blpa_conv_grad_weight";
  ConvShape shape = convShape(name, n, c, k, group, rank, in, out, kernel,
                              strides, pads, dilations);
  CudaRuntime &rt = runtimeOf(ctx);
  if (n == 0) {
    // An empty batch contributes nothing: dw is zero.
    validate(name, shape);
    size_t bytes = size_t(k * (c / group)) * sizeof(float);
    for (int64_t i = 0; i < rank; ++i)
      bytes *= size_t(kernel[i]);
    check(cudaMemsetAsync(dw, 0, bytes, rt.stream), name);
    return;
  }
  ConvPlan &plan = planFor(rt, name, Direction::backwardFilter, shape);
  const float *input = plan.padded ? paddedInput(rt, plan, x, name) : x;
  runPlan<BackwardFilter>(rt, plan, {input, dw, dy}, name, shape);
}

} // extern "C"
