//===- Elementwise.cu - ReLU, add, fill, reductions and the SGD update ---===//
//
// The element-wise kernels share one grid-stride map kernel that moves
// float4s when every pointer is 16-byte aligned; an output may be one of
// its inputs (each element is read and written by the same thread).
// Broadcasting add and blpa_reduce_sum_to merge their dimensions on the host
// exactly as the CPU runtime does (CPU/Shape.h) and pass the few merged runs
// to the device by value.
//
// blpa_reduce_sum_to accumulates in double over a fixed partition that
// depends only on the shape: each output's elements are cut into chunks,
// each chunk summed by a fixed group of threads with a fixed tree, and the
// chunks' partial sums added in chunk order by a second kernel. The SGD and
// running-statistics updates read the hyper-parameters from device memory
// (the step may be a replayed graph) and use explicitly rounded operations,
// so that nvcc's contraction into FMAs cannot change results relative to
// the CPU runtime.
//
//===----------------------------------------------------------------------===//

#include "CudaRuntime.h"

#include "../Common/ActivationMath.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>

// The CPU runtime's dimension merging (header-only), so that both targets
// see the same runs.
#include "../CPU/Shape.h"

using namespace blpa;
using namespace blpa::cuda;
using blpa::cpu::MergedDim;

namespace {

/// The scratchFor slot of the reduction's partial sums.
constexpr unsigned partialsSlot = 10;

//===----------------------------------------------------------------------===//
// Element-wise maps
//===----------------------------------------------------------------------===//

/// Operands of a map: up to two inputs (unused ones are null) and the output.
struct MapArgs {
  const float *a;
  const float *b;
  float *y;
  int64_t numel;
};

/// y[i] = op(a[i], b[i]) over numel elements; Op::inputs says how many of a
/// and b it reads. Vec4: the pointers are 16-byte aligned, so the bulk moves
/// as float4 and the last numel % 4 elements one by one.
template <typename Op, bool Vec4>
__global__ void __launch_bounds__(blockThreads) mapKernel(MapArgs args, Op op) {
  int64_t first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  int64_t done = 0;
  if constexpr (Vec4) {
    int64_t groups = args.numel / 4;
    const float4 *a4 = reinterpret_cast<const float4 *>(args.a);
    const float4 *b4 = reinterpret_cast<const float4 *>(args.b);
    float4 *y4 = reinterpret_cast<float4 *>(args.y);
    for (int64_t g = first; g < groups; g += stride) {
      float4 va{}, vb{};
      if constexpr (Op::inputs > 0)
        va = a4[g];
      if constexpr (Op::inputs > 1)
        vb = b4[g];
      y4[g] = float4{op(va.x, vb.x), op(va.y, vb.y), op(va.z, vb.z),
                     op(va.w, vb.w)};
    }
    done = groups * 4;
  }
  for (int64_t i = done + first; i < args.numel; i += stride) {
    float va = 0, vb = 0;
    if constexpr (Op::inputs > 0)
      va = args.a[i];
    if constexpr (Op::inputs > 1)
      vb = args.b[i];
    args.y[i] = op(va, vb);
  }
}

bool aligned16(const void *p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

template <typename Op>
void launchMap(blpa_context *ctx, const char *kernel, MapArgs args, Op op) {
  CudaRuntime &rt = runtimeOf(ctx);
  if (args.numel <= 0)
    return;
  if (aligned16(args.a) && aligned16(args.b) && aligned16(args.y))
    mapKernel<Op, true>
        <<<gridFor((args.numel + 3) / 4), blockThreads, 0, rt.stream>>>(args,
                                                                        op);
  else
    mapKernel<Op, false>
        <<<gridFor(args.numel), blockThreads, 0, rt.stream>>>(args, op);
  checkLaunch(kernel);
}

struct FillOp {
  static constexpr int inputs = 0;
  float value;
  __device__ float operator()(float, float) const { return value; }
};

struct ReluOp {
  static constexpr int inputs = 1;
  // Not fmaxf: x < 0 ? 0 : x keeps NaN (and -0), as std::max(x, 0.0f) on
  // the CPU and PyTorch's relu do.
  __device__ float operator()(float x, float) const {
    return x < 0.0f ? 0.0f : x;
  }
};

struct ReluGradOp {
  static constexpr int inputs = 2;
  __device__ float operator()(float dy, float y) const {
    return y > 0.0f ? dy : 0.0f;
  }
};

// The broadcasting arithmetic of blpa_add, blpa_mul, blpa_sub, blpa_div,
// blpa_power.
struct AddOp {
  static constexpr int inputs = 2;
  __device__ float operator()(float a, float b) const { return a + b; }
};

struct MulOp {
  static constexpr int inputs = 2;
  __device__ float operator()(float a, float b) const { return a * b; }
};

struct SubOp {
  static constexpr int inputs = 2;
  __device__ float operator()(float a, float b) const { return a - b; }
};

struct DivOp {
  static constexpr int inputs = 2;
  __device__ float operator()(float a, float b) const { return a / b; }
};

struct PowerOp {
  static constexpr int inputs = 2;
  __device__ float operator()(float a, float b) const { return powf(a, b); }
};

// Element-wise activations: the formulas the CPU runtime uses too. Dynamic:
// the parameters are read from device memory where alphaAt / betaAt are
// non-null (blpa_activation_dynamic), when the kernel runs, so that a
// replayed graph sees the current inputs.
struct DynamicParams {
  ActivationParams params;
  const float *alphaAt = nullptr, *betaAt = nullptr;
  template <bool Dynamic> __device__ ActivationParams load() const {
    if constexpr (Dynamic)
      return loadActivationParams(params, alphaAt, betaAt);
    return params;
  }
};

template <int Kind, bool Dynamic> struct ActivationOp {
  static constexpr int inputs = 1;
  DynamicParams params;
  __device__ float operator()(float x, float) const {
    return activationValue<Kind>(x, params.load<Dynamic>());
  }
};

template <int Kind, bool Dynamic> struct ActivationGradOp {
  static constexpr int inputs = 2;
  DynamicParams params;
  __device__ float operator()(float dy, float saved) const {
    return activationGrad<Kind>(dy, saved, params.load<Dynamic>());
  }
};

/// blpa_activation(_dynamic) and their gradients: `Op` is ActivationOp or
/// ActivationGradOp; `b` is null for a forward.
template <template <int, bool> class Op>
void launchActivation(blpa_context *ctx, const char *kernel, const float *a,
                      const float *b, float *y, int64_t numel, int64_t kind,
                      DynamicParams params) {
  bool dynamic = params.alphaAt || params.betaAt;
  bool known = withActivationKind(kind, [&](auto k) {
    constexpr int Kind = decltype(k)::value;
    if (dynamic)
      launchMap(ctx, kernel, {a, b, y, numel}, Op<Kind, true>{params});
    else
      launchMap(ctx, kernel, {a, b, y, numel}, Op<Kind, false>{params});
  });
  if (!known)
    failf("%s: unknown kind %lld", kernel, (long long)kind);
}

//===----------------------------------------------------------------------===//
// Merged runs on the device
//===----------------------------------------------------------------------===//

/// Merged runs a kernel handles. Runs alternate kinds, so this covers any
/// rank up to 8, well above what ONNX models use.
constexpr int maxRuns = 8;

/// Up to maxRuns merged runs (row-major) with K sets of element strides,
/// e.g. those of operands a and b of a broadcasting add.
template <int K> struct Strided {
  int count = 0;
  int64_t sizes[maxRuns] = {};
  int64_t strides[K][maxRuns] = {};

  void add(const char *kernel, int64_t size,
           const std::array<int64_t, K> &runStrides) {
    if (count == maxRuns)
      failf("%s: more than %d merged dimensions", kernel, maxRuns);
    sizes[count] = size;
    for (int k = 0; k < K; ++k)
      strides[k][count] = runStrides[k];
    ++count;
  }

  /// The number of index tuples.
  int64_t total() const {
    int64_t product = 1;
    for (int i = 0; i < count; ++i)
      product *= sizes[i];
    return product;
  }

  /// offsets[k] = the offset of the index-th tuple (row-major) with the
  /// k-th strides. Divisions run in Index (32 bits when every index fits:
  /// a 64-bit division is several times slower); the outermost run needs
  /// none.
  template <typename Index>
  __device__ void offsetsOf(Index index, int64_t (&offsets)[K]) const {
    for (int k = 0; k < K; ++k)
      offsets[k] = 0;
    for (int i = count - 1; i > 0; --i) {
      Index size = Index(sizes[i]), quotient = index / size;
      int64_t rest = int64_t(index - quotient * size);
      for (int k = 0; k < K; ++k)
        offsets[k] += rest * strides[k][i];
      index = quotient;
    }
    if (count > 0)
      for (int k = 0; k < K; ++k)
        offsets[k] += int64_t(index) * strides[k][0];
  }

  __device__ int64_t offsetOf(int64_t index) const {
    static_assert(K == 1, "one set of strides");
    int64_t offsets[1];
    offsetsOf(index, offsets);
    return offsets[0];
  }
};

/// Calls f(Index{}) with Index = uint32_t when every index below `count`
/// fits in 31 bits (so grid-stride sums cannot wrap either), else uint64_t.
template <typename F> void withIndexType(int64_t count, F &&f) {
  if (count < (int64_t(1) << 31))
    f(uint32_t());
  else
    f(uint64_t());
}

//===----------------------------------------------------------------------===//
// Broadcasting arithmetic
//===----------------------------------------------------------------------===//

template <typename Op, typename Index>
__global__ void __launch_bounds__(blockThreads)
    broadcastKernel(const float *a, const float *b, float *y, int64_t numel,
                    Strided<2> shape, Op op) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < numel;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t at[2];
    shape.offsetsOf(Index(i), at);
    y[i] = op(a[at[0]], b[at[1]]);
  }
}

void checkBroadcast(const char *kernel, const char *operand, int64_t rank,
                    const int64_t *dims, const int64_t *outDims) {
  for (int64_t i = 0; i < rank; ++i)
    if (dims[i] != outDims[i] && dims[i] != 1)
      failf("%s: dimension %lld of %s is %lld, expected 1 or %lld", kernel,
            (long long)i, operand, (long long)dims[i], (long long)outDims[i]);
}

/// y = op(a, b) with numpy broadcasting (blpa_add's static arguments).
template <typename Op>
void broadcastBinary(blpa_context *ctx, const char *kernel, const float *a,
                     const float *b, float *y, int64_t rank,
                     const int64_t *outDims, const int64_t *aDims,
                     const int64_t *bDims, Op op) {
  CudaRuntime &rt = runtimeOf(ctx);
  checkBroadcast(kernel, "a", rank, aDims, outDims);
  checkBroadcast(kernel, "b", rank, bDims, outDims);
  const unsigned aAbsent = 1, bAbsent = 2;
  std::vector<MergedDim> dims =
      blpa::cpu::mergeDims(rank, outDims, [&](int64_t i) {
        return (aDims[i] != outDims[i] ? aAbsent : 0u) |
               (bDims[i] != outDims[i] ? bAbsent : 0u);
      });
  int64_t numel = 1;
  for (const MergedDim &d : dims)
    numel *= d.size;
  if (numel == 0)
    return;
  // Equal shapes merge into one run that neither operand lacks.
  if (dims.size() == 1 && dims[0].flags == 0)
    return launchMap(ctx, kernel, {a, b, y, numel}, op);
  std::vector<int64_t> aStrides = blpa::cpu::stridesOf(dims, aAbsent),
                       bStrides = blpa::cpu::stridesOf(dims, bAbsent);
  Strided<2> shape;
  for (size_t i = 0; i < dims.size(); ++i)
    shape.add(kernel, dims[i].size, {aStrides[i], bStrides[i]});
  withIndexType(numel, [&](auto index) {
    using Index = decltype(index);
    broadcastKernel<Op, Index><<<gridFor(numel), blockThreads, 0, rt.stream>>>(
        a, b, y, numel, shape, op);
  });
  checkLaunch(kernel);
}

//===----------------------------------------------------------------------===//
// Reductions
//===----------------------------------------------------------------------===//

/// Sum of v over each aligned group of G lanes (G a power of two <= 32), on
/// every lane of the group. The butterfly gives every lane the same bits:
/// at each level a lane and its partner add the same two values, and
/// floating-point addition is commutative.
template <int G> __device__ double warpGroupSum(double v) {
  static_assert(G <= 32 && (G & (G - 1)) == 0, "a power of two in a warp");
  for (int mask = G / 2; mask > 0; mask /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, mask);
  return v;
}

/// Sum of v over each group of G consecutive threads, valid on the group's
/// first thread. Every thread of the block must call it (G == blockThreads
/// synchronizes the block).
template <int G> __device__ double groupSum(double v) {
  if constexpr (G <= 32) {
    return warpGroupSum<G>(v);
  } else {
    static_assert(G == blockThreads, "a group is a warp part or the block");
    __shared__ double warpSums[blockThreads / 32];
    v = warpGroupSum<32>(v);
    __syncthreads(); // the previous call's readers are done
    if (threadIdx.x % 32 == 0)
      warpSums[threadIdx.x / 32] = v;
    __syncthreads();
    double total = 0;
    for (int w = 0; w < blockThreads / 32; ++w)
      total += warpSums[w];
    return total;
  }
}

/// Where one reduction's results go: straight into y (scaled) when there is
/// one chunk per output, else into the chunk-major partial sums.
struct ReduceOut {
  float *y;
  double *partials;
  int64_t outputs; // output elements
  int64_t chunks;  // chunks per output element
  double scale;

  __device__ void store(int64_t output, int64_t chunk, double sum) const {
    if (chunks == 1)
      y[output] = float(sum * scale);
    else
      partials[chunk * outputs + output] = sum;
  }
};

/// A reduction whose innermost run is reduced (e.g. [N,C,H,W] -> [1,C,1,1]):
/// output o sums the `total` = reduced.total() * slice elements
/// x[kept(o) + reduced(r) + s], s < slice, ordered by (r, s).
struct SliceReduction {
  const float *x;
  Strided<1> kept, reduced;
  int64_t slice, total, chunkLen;
  /// (r, s) advance per group stride: G / slice rows and G % slice.
  int64_t stepRows, stepCols;
};

/// Sum of the elements first, first + G, ... < end of output o.
template <int G>
__device__ double sliceRange(const SliceReduction &p, int64_t o, int64_t first,
                             int64_t end) {
  if (first >= end)
    return 0;
  const float *base = p.x + p.kept.offsetOf(o);
  int64_t r = first / p.slice, s = first - r * p.slice;
  double acc = 0;
#pragma unroll 4
  for (int64_t i = first; i < end; i += G) {
    acc += base[p.reduced.offsetOf(r) + s];
    r += p.stepRows;
    s += p.stepCols;
    if (s >= p.slice) {
      s -= p.slice;
      ++r;
    }
  }
  return acc;
}

/// Groups of G threads, one per (output, chunk) item. The item loop is
/// uniform over the block so that groupSum's shuffles and barriers see
/// every thread.
template <int G>
__global__ void __launch_bounds__(blockThreads)
    sliceReduceKernel(SliceReduction p, ReduceOut out) {
  constexpr int groupsPerBlock = blockThreads / G;
  int lane = threadIdx.x % G, group = threadIdx.x / G;
  int64_t items = out.outputs * out.chunks;
  for (int64_t firstItem = int64_t(blockIdx.x) * groupsPerBlock;
       firstItem < items; firstItem += int64_t(gridDim.x) * groupsPerBlock) {
    int64_t item = firstItem + group;
    bool active = item < items;
    int64_t o = item / out.chunks, chunk = item - o * out.chunks;
    int64_t begin = chunk * p.chunkLen;
    double acc = active ? sliceRange<G>(p, o, begin + lane,
                                        std::min(begin + p.chunkLen, p.total))
                        : 0.0;
    double sum = groupSum<G>(acc);
    if (active && lane == 0)
      out.store(o, chunk, sum);
  }
}

/// A reduction whose innermost run (`row` elements, contiguous in x and y)
/// is kept (e.g. [N,K] -> [1,K]): output element (o, j) sums
/// x[kept(o) + reduced(r) + j] over r < rows, in order of r.
struct RowReduction {
  const float *x;
  Strided<1> kept, reduced;
  int64_t row, rows, rowsPerChunk;
};

/// One thread per (chunk, output element), consecutive threads on
/// consecutive j so that every load is coalesced.
__global__ void __launch_bounds__(blockThreads)
    rowReduceKernel(RowReduction p, ReduceOut out) {
  int64_t items = out.outputs * out.chunks;
  for (int64_t item = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
       item < items; item += int64_t(gridDim.x) * blockDim.x) {
    int64_t chunk = item / out.outputs, e = item - chunk * out.outputs;
    int64_t o = e / p.row, j = e - o * p.row;
    int64_t r0 = chunk * p.rowsPerChunk,
            r1 = std::min(r0 + p.rowsPerChunk, p.rows);
    const float *base = p.x + p.kept.offsetOf(o) + j;
    double acc = 0;
#pragma unroll 4
    for (int64_t r = r0; r < r1; ++r)
      acc += base[p.reduced.offsetOf(r)];
    out.store(e, chunk, acc);
  }
}

/// y[e] = (sum over chunks, in chunk order, of the partials) * scale.
__global__ void __launch_bounds__(blockThreads)
    finishPartialsKernel(ReduceOut out) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
       e < out.outputs; e += int64_t(gridDim.x) * blockDim.x) {
    double sum = 0;
    for (int64_t chunk = 0; chunk < out.chunks; ++chunk)
      sum += out.partials[chunk * out.outputs + e];
    out.y[e] = float(sum * out.scale);
  }
}

//===----------------------------------------------------------------------===//
// Reduction plans (host)
//===----------------------------------------------------------------------===//

/// Blocks that fill an H100/H200 (132 SMs, 8 blocks of 256 each) about
/// twice, and the threads they hold: what a split reduction aims for.
constexpr int64_t targetBlocks = 2048;
constexpr int64_t targetThreads = targetBlocks * blockThreads;
/// Elements per thread below which splitting a sum further does not pay.
constexpr int64_t minPerThread = 16;

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/// How many chunks to cut each of `outputs` sums of `length` terms into:
/// enough for `outputs * chunks` to reach `wanted` work items, none shorter
/// than `minLength` (and at least one).
int64_t chunkCount(int64_t length, int64_t outputs, int64_t wanted,
                   int64_t minLength) {
  int64_t chunks = std::min(ceilDiv(wanted, std::max<int64_t>(outputs, 1)),
                            ceilDiv(length, minLength));
  return std::max<int64_t>(chunks, 1);
}

/// Chunks of length ceil(length / chunks); returns the length and trims
/// `chunks` so that none is empty.
int64_t chunkLength(int64_t length, int64_t &chunks) {
  int64_t chunkLen = ceilDiv(length, chunks);
  chunks = chunkLen ? ceilDiv(length, chunkLen) : 1;
  return chunkLen;
}

/// Points out.partials at scratch when the sums are split.
void preparePartials(CudaRuntime &rt, ReduceOut &out) {
  if (out.chunks > 1)
    out.partials = static_cast<double *>(scratchFor(
        rt, partialsSlot, size_t(out.chunks * out.outputs) * sizeof(double)));
}

void finishPartials(CudaRuntime &rt, const ReduceOut &out) {
  if (out.chunks == 1)
    return;
  finishPartialsKernel<<<gridFor(out.outputs), blockThreads, 0, rt.stream>>>(
      out);
  checkLaunch("blpa_reduce_sum_to (partials)");
}

template <int G>
void launchSliceReduce(CudaRuntime &rt, const SliceReduction &p,
                       const ReduceOut &out) {
  SliceReduction q = p;
  q.stepRows = p.slice ? G / p.slice : 0;
  q.stepCols = p.slice ? G % p.slice : 0;
  sliceReduceKernel<G>
      <<<gridFor(out.outputs * out.chunks * G), blockThreads, 0, rt.stream>>>(
          q, out);
  checkLaunch("blpa_reduce_sum_to");
}

/// The innermost run reduced: short sums get a group of 8 or 32 lanes each,
/// long ones whole blocks, split into chunks when the outputs alone do not
/// give the device enough blocks.
void reduceSlices(CudaRuntime &rt, const float *x, float *y,
                  const Strided<1> &kept, const Strided<1> &reduced,
                  int64_t slice, double scale) {
  SliceReduction p{x, kept, reduced, slice, reduced.total() * slice, 0, 0, 0};
  ReduceOut out{y, nullptr, kept.total(), 1, scale};
  if (p.total <= 8 * minPerThread) {
    p.chunkLen = chunkLength(p.total, out.chunks);
    return launchSliceReduce<8>(rt, p, out);
  }
  if (p.total <= 32 * minPerThread) {
    p.chunkLen = chunkLength(p.total, out.chunks);
    return launchSliceReduce<32>(rt, p, out);
  }
  out.chunks = chunkCount(p.total, out.outputs, targetBlocks,
                          blockThreads * minPerThread);
  p.chunkLen = chunkLength(p.total, out.chunks);
  preparePartials(rt, out);
  launchSliceReduce<blockThreads>(rt, p, out);
  finishPartials(rt, out);
}

/// The innermost run kept: one thread per output element and chunk of rows.
void reduceRows(CudaRuntime &rt, const float *x, float *y,
                const Strided<1> &kept, const Strided<1> &reduced, int64_t row,
                double scale) {
  RowReduction p{x, kept, reduced, row, reduced.total(), 0};
  ReduceOut out{y, nullptr, kept.total() * row, 1, scale};
  out.chunks = chunkCount(p.rows, out.outputs, targetThreads, minPerThread);
  p.rowsPerChunk = chunkLength(p.rows, out.chunks);
  preparePartials(rt, out);
  rowReduceKernel<<<gridFor(out.outputs * out.chunks), blockThreads, 0,
                    rt.stream>>>(p, out);
  checkLaunch("blpa_reduce_sum_to");
  finishPartials(rt, out);
}

//===----------------------------------------------------------------------===//
// Optimizer updates
//===----------------------------------------------------------------------===//

/// torch.optim.SGD's update in the CPU runtime's operation order (its first
/// step's buffer is grad itself, which equals momentum * 0 + grad), with
/// every product and sum rounded on its own as the CPU computes them.
__global__ void __launch_bounds__(blockThreads)
    sgdKernel(float *param, const float *grad, float *momentumBuf,
              float *gradOut, int64_t numel, const DeviceHyper *hyper) {
  const DeviceHyper h = *hyper;
  bool copy = gradOut && gradOut != grad;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < numel;
       i += int64_t(gridDim.x) * blockDim.x) {
    float gi = grad[i];
    if (copy)
      gradOut[i] = gi;
    if (h.skipUpdate)
      continue;
    float p = param[i];
    float g = __fadd_rn(gi, __fmul_rn(h.weightDecay, p));
    float v =
        momentumBuf ? __fadd_rn(__fmul_rn(h.momentum, momentumBuf[i]), g) : g;
    if (momentumBuf)
      momentumBuf[i] = v;
    param[i] = __fsub_rn(p, __fmul_rn(h.lr, v));
  }
}

/// running = running * momentum + batch * (1 - momentum) per channel, the
/// variance made unbiased by `correction`; nothing when the step skips
/// updates.
__global__ void __launch_bounds__(blockThreads)
    runningStatsKernel(float *runningMean, float *runningVar, const float *mean,
                       const float *invStd, int64_t c, double momentum,
                       double epsilon, double correction,
                       const DeviceHyper *hyper) {
  if (hyper->skipUpdate)
    return;
  double keep = 1.0 - momentum;
  for (int64_t ch = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; ch < c;
       ch += int64_t(gridDim.x) * blockDim.x) {
    double is = invStd[ch];
    double var = (1.0 / (is * is) - epsilon) * correction;
    runningMean[ch] = float(__dadd_rn(__dmul_rn(runningMean[ch], momentum),
                                      __dmul_rn(mean[ch], keep)));
    runningVar[ch] = float(
        __dadd_rn(__dmul_rn(runningVar[ch], momentum), __dmul_rn(var, keep)));
  }
}

} // namespace

extern "C" {

void blpa_fill(blpa_context *ctx, float *y, int64_t numel, double value) {
  launchMap(ctx, "blpa_fill", {nullptr, nullptr, y, numel},
            FillOp{float(value)});
}

void blpa_relu(blpa_context *ctx, const float *x, float *y, int64_t numel) {
  launchMap(ctx, "blpa_relu", {x, nullptr, y, numel}, ReluOp{});
}

void blpa_relu_grad(blpa_context *ctx, const float *dy, const float *y,
                    float *dx, int64_t numel) {
  launchMap(ctx, "blpa_relu_grad", {dy, y, dx, numel}, ReluGradOp{});
}

void blpa_add(blpa_context *ctx, const float *a, const float *b, float *y,
              int64_t rank, const int64_t *outDims, const int64_t *aDims,
              const int64_t *bDims) {
  broadcastBinary(ctx, "blpa_add", a, b, y, rank, outDims, aDims, bDims,
                  AddOp{});
}

void blpa_mul(blpa_context *ctx, const float *a, const float *b, float *y,
              int64_t rank, const int64_t *outDims, const int64_t *aDims,
              const int64_t *bDims) {
  broadcastBinary(ctx, "blpa_mul", a, b, y, rank, outDims, aDims, bDims,
                  MulOp{});
}

void blpa_sub(blpa_context *ctx, const float *a, const float *b, float *y,
              int64_t rank, const int64_t *outDims, const int64_t *aDims,
              const int64_t *bDims) {
  broadcastBinary(ctx, "blpa_sub", a, b, y, rank, outDims, aDims, bDims,
                  SubOp{});
}

void blpa_div(blpa_context *ctx, const float *a, const float *b, float *y,
              int64_t rank, const int64_t *outDims, const int64_t *aDims,
              const int64_t *bDims) {
  broadcastBinary(ctx, "blpa_div", a, b, y, rank, outDims, aDims, bDims,
                  DivOp{});
}

void blpa_power(blpa_context *ctx, const float *a, const float *b, float *y,
                int64_t rank, const int64_t *outDims, const int64_t *aDims,
                const int64_t *bDims) {
  broadcastBinary(ctx, "blpa_power", a, b, y, rank, outDims, aDims, bDims,
                  PowerOp{});
}

void blpa_activation(blpa_context *ctx, const float *x, float *y, int64_t numel,
                     int64_t kind, double alpha, double beta) {
  launchActivation<ActivationOp>(ctx, "blpa_activation", x, nullptr, y, numel,
                                 kind, {{float(alpha), float(beta)}});
}

void blpa_activation_grad(blpa_context *ctx, const float *dy,
                          const float *saved, float *dx, int64_t numel,
                          int64_t kind, double alpha, double beta) {
  launchActivation<ActivationGradOp>(ctx, "blpa_activation_grad", dy, saved, dx,
                                     numel, kind,
                                     {{float(alpha), float(beta)}});
}

void blpa_activation_dynamic(blpa_context *ctx, const float *x, float *y,
                             int64_t numel, int64_t kind, double alpha,
                             double beta, const float *alphaAt,
                             const float *betaAt) {
  launchActivation<ActivationOp>(
      ctx, "blpa_activation_dynamic", x, nullptr, y, numel, kind,
      {{float(alpha), float(beta)}, alphaAt, betaAt});
}

void blpa_activation_grad_dynamic(blpa_context *ctx, const float *dy,
                                  const float *saved, float *dx, int64_t numel,
                                  int64_t kind, double alpha, double beta,
                                  const float *alphaAt, const float *betaAt) {
  launchActivation<ActivationGradOp>(
      ctx, "blpa_activation_grad_dynamic", dy, saved, dx, numel, kind,
      {{float(alpha), float(beta)}, alphaAt, betaAt});
}

void blpa_reduce_sum_to(blpa_context *ctx, const float *x, float *y,
                        int64_t rank, const int64_t *inDims,
                        const int64_t *outDims, double scale) {
  CudaRuntime &rt = runtimeOf(ctx);
  for (int64_t i = 0; i < rank; ++i)
    if (outDims[i] != inDims[i] && outDims[i] != 1)
      failf("blpa_reduce_sum_to: output dimension %lld is %lld, expected 1 "
            "or %lld",
            (long long)i, (long long)outDims[i], (long long)inDims[i]);
  const unsigned reducedFlag = 1;
  std::vector<MergedDim> dims =
      blpa::cpu::mergeDims(rank, inDims, [&](int64_t i) {
        return outDims[i] != inDims[i] ? reducedFlag : 0u;
      });
  std::vector<int64_t> strides = blpa::cpu::stridesOf(dims, 0);
  // The innermost run is handled by the kernels themselves.
  Strided<1> kept, reduced;
  for (size_t i = 0; i + 1 < dims.size(); ++i)
    (dims[i].flags & reducedFlag ? reduced : kept)
        .add("blpa_reduce_sum_to", dims[i].size, {strides[i]});
  const MergedDim &innermost = dims.back();
  bool innerReduced = innermost.flags & reducedFlag;
  if (kept.total() * (innerReduced ? 1 : innermost.size) == 0)
    return; // no output elements
  if (innerReduced)
    reduceSlices(rt, x, y, kept, reduced, innermost.size, scale);
  else
    reduceRows(rt, x, y, kept, reduced, innermost.size, scale);
}

void blpa_sgd_update(blpa_context *ctx, float *param, const float *grad,
                     float *momentumBuf, float *gradOut, int64_t numel) {
  CudaRuntime &rt = runtimeOf(ctx);
  if (numel <= 0)
    return;
  sgdKernel<<<gridFor(numel), blockThreads, 0, rt.stream>>>(
      param, grad, momentumBuf, gradOut, numel, rt.hyper);
  checkLaunch("blpa_sgd_update");
}

void blpa_update_running_stats(blpa_context *ctx, float *runningMean,
                               float *runningVar, const float *mean,
                               const float *invStd, int64_t c, int64_t count,
                               double momentum, double epsilon) {
  CudaRuntime &rt = runtimeOf(ctx);
  if (c <= 0)
    return;
  // Unbiased correction; a batch of one has no unbiased variance, keep the
  // biased one rather than divide by zero.
  double correction = count > 1 ? double(count) / double(count - 1) : 1.0;
  runningStatsKernel<<<gridFor(c), blockThreads, 0, rt.stream>>>(
      runningMean, runningVar, mean, invStd, c, momentum, epsilon, correction,
      rt.hyper);
  checkLaunch("blpa_update_running_stats");
}

} // extern "C"
