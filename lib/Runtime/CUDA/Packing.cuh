//===- Packing.cuh - Packed codes and per-channel passes on the GPU -------===//
//
// What BatchNorm.cu and Quantize.cu share:
//  * the code math (BN-ReLU codes, affine / nonneg / mask codes), written as
//    __host__ __device__ copies of the CPU runtime's formulas so that the
//    host can check them against lib/Runtime/CPU. Every product that feeds
//    a sum goes through mulRn/addRn: nvcc would otherwise contract it into
//    an FMA, and the GPU would round differently from the CPU and, worse,
//    differently between two inlined copies of one expression;
//  * the packed layout of lib/Runtime/CPU/Packing.h (element i's Bits-bit
//    code in byte i*Bits/8 at bit (i*Bits)%8, least significant first);
//  * an element pass (one thread per element, grid-stride) whose warps
//    assemble their codes' bytes with shuffles, so that every byte has one
//    writer and the stores are coalesced;
//  * a deterministic per-channel reduction over [N, C, spatial]: each
//    channel's N*spatial elements are cut into fixed parts, one block per
//    (channel, part) reduces its part in a fixed tree, and a second kernel
//    combines a channel's parts in part order. The partition depends only
//    on the shape, so results are bitwise the same on every run.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_CUDA_PACKING_CUH
#define BLPA_RUNTIME_CUDA_PACKING_CUH

#include "CudaRuntime.h"

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <type_traits>

namespace blpa {
namespace cuda {

//===----------------------------------------------------------------------===//
// Uncontracted arithmetic
//===----------------------------------------------------------------------===//

// The device intrinsics are never fused with a neighbouring operation; the
// host versions are the plain operators the CPU runtime uses.
#ifdef __CUDA_ARCH__
#define BLPA_RN(device, host) device
#else
#define BLPA_RN(device, host) host
#endif

__host__ __device__ inline float addRn(float a, float b) {
  return BLPA_RN(__fadd_rn(a, b), a + b);
}
__host__ __device__ inline float subRn(float a, float b) {
  return BLPA_RN(__fsub_rn(a, b), a - b);
}
__host__ __device__ inline float mulRn(float a, float b) {
  return BLPA_RN(__fmul_rn(a, b), a * b);
}
__host__ __device__ inline double addRn(double a, double b) {
  return BLPA_RN(__dadd_rn(a, b), a + b);
}
__host__ __device__ inline double subRn(double a, double b) {
  return BLPA_RN(__dsub_rn(a, b), a - b);
}
__host__ __device__ inline double mulRn(double a, double b) {
  return BLPA_RN(__dmul_rn(a, b), a * b);
}

#undef BLPA_RN

//===----------------------------------------------------------------------===//
// Batch-norm forward (blpa_batch_norm_train in Runtime.h)
//===----------------------------------------------------------------------===//

/// y = (x - mu) * factor + offset for the elements of one channel.
struct NormParams {
  float mu, factor, offset;
};

/// The one expression of every batch-norm forward. Its operations are
/// uncontracted, so every inlined copy (train, apply, encode, relu_grad's
/// mask) computes the same bits, as the CPU's normalizeRun does when it
/// is not contracted either (no FMA on the baseline x86-64 target).
__host__ __device__ inline float normalizeValue(float x, NormParams p) {
  return addRn(mulRn(subRn(x, p.mu), p.factor), p.offset);
}

/// The per-channel factor of a training-mode batch norm, scale * invStd in
/// float from the stored invStd, as the CPU's normalizingFactors.
__host__ __device__ inline float normFactor(float scale, float invStd) {
  return mulRn(scale, invStd);
}

/// max(v, 0) keeping NaN and -0, as std::max(v, 0.0f) (blpa_relu).
__host__ __device__ inline float reluValue(float v) {
  return v < 0.0f ? 0.0f : v;
}

//===----------------------------------------------------------------------===//
// BN-ReLU codes (blpa_batch_norm_train_encode in Runtime.h)
//===----------------------------------------------------------------------===//

/// xhat = value * factor + offset for the values a backward reads.
struct XhatMap {
  double factor, offset;
};

/// The per-channel constants of the BN-ReLU codes: the CPU runtime's BnCode
/// (BatchNorm.cpp). Codes are bins of width w of u = y / |gamma| laid out
/// from u = 0 (bin `shift` starts there), so the ReLU mask is exactly
/// q >= shift. A channel with gamma == 0 stores xhat and decodes y as beta.
struct BnCode {
  bool constant; // gamma == 0
  int32_t shift, maxCode;
  float w, halfMinusShift;
  /// Encoding: u / w = y * binScale, or xhat * binScale when gamma == 0.
  float binScale;
  /// Decoding: y~ = u~ * yScale + yOffset; xhat~ is affine in the code.
  float yScale, yOffset;
  XhatMap xhat;

  /// The bin centre u~; exact in float (a small half-integer times w).
  __host__ __device__ float centre(uint32_t q) const {
    return mulRn(addRn(float(q), halfMinusShift), w);
  }
  /// The decoded output y~.
  __host__ __device__ float y(uint32_t q) const {
    return addRn(mulRn(centre(q), yScale), yOffset);
  }
};

/// The BnCode of a channel with scale gamma and bias beta.
__host__ __device__ inline BnCode makeBnCode(float gamma, float beta,
                                             int bits) {
  BnCode code;
  code.constant = gamma == 0;
  double a = code.constant ? 1.0 : fabs(double(gamma));
  double sgn = gamma < 0 ? -1.0 : 1.0;
  double t = code.constant ? 0.0 : beta / a;
  code.maxCode = (1 << bits) - 1;
  code.w = float(6.0 / (1 << bits)); // exact: 1.5 * 2^(2 - bits)
  // Clamped in double (t may be huge or NaN) before becoming an int; the
  // cap at maxCode keeps the mask exact even when every value is clipped.
  double level = double(1 << (bits - 1)) - floor(t / code.w);
  code.shift = level >= code.maxCode ? code.maxCode
               : level > 1           ? int32_t(level)
                                     : 1;
  code.halfMinusShift = 0.5f - float(code.shift);
  // std::min(1 / (a w), FLT_MAX): finite even for a denormal gamma, so that
  // s = v * binScale is never NaN for a positive v.
  double inverse = 1.0 / (a * code.w);
  code.binScale = float(double(FLT_MAX) < inverse ? double(FLT_MAX) : inverse);
  code.yScale = code.constant ? 0.0f : float(a);
  code.yOffset = code.constant ? beta : 0.0f;
  code.xhat = {sgn * code.w,
               sgn * subRn(mulRn(0.5 - code.shift, double(code.w)), t)};
  return code;
}

/// The code of v = src - centre with s = v * binScale (the CPU's binCodes):
///   v > 0: shift + floor(s),  else: shift - 1 - floor(-s),
/// clamped to [0, maxCode]. Truncation toward zero is floor(s) on one side
/// and -floor(-s) on the other, and clamping s to [1 - shift, maxCode -
/// shift] first clamps the code; the side comes from v's sign alone, so the
/// ReLU mask survives any rounding of s. NaN takes the lower bound.
__host__ __device__ inline uint32_t binCode(const BnCode &code, float v,
                                            float binScale) {
  const float lo = float(1 - code.shift), hi = float(code.maxCode - code.shift);
  float s = mulRn(v, binScale);
  s = s > lo ? s : lo;
  s = s < hi ? s : hi;
  return uint32_t(int32_t(s) + (v > 0 ? code.shift : code.shift - 1));
}

/// The BN-ReLU code of one element with input x and (pre-ReLU) output y:
/// xhat = (x - mean) * invStd binned when gamma == 0, else y / |gamma| on
/// y's own sign (the CPU bins y - 0.0f, which is y bit for bit).
__host__ __device__ inline uint32_t
bnReluCode(const BnCode &code, float x, float y, float mean, float invStd) {
  if (code.constant)
    return binCode(code, subRn(x, mean), mulRn(code.binScale, invStd));
  return binCode(code, y, code.binScale);
}

//===----------------------------------------------------------------------===//
// Per-channel quantization (blpa_quantize in Runtime.h)
//===----------------------------------------------------------------------===//

/// A channel's levels: lo + q * step (AFFINE) or (q - 0.5) * step for q > 0
/// (NONNEG); inv = 1 / step, or 0 when step is 0.
struct ChannelStep {
  float lo, step, inv;
};

/// The levels of a channel whose values span [lo, hi] (min and max, NaN
/// ignored; lo is 0 for NONNEG), codes up to maxCode.
__host__ __device__ inline ChannelStep makeChannelStep(float lo, float hi,
                                                       int32_t maxCode) {
  if (!(lo < hi)) // constant or empty channel
    hi = lo = isfinite(lo) ? lo : 0.0f;
  // In double: hi - lo may not be representable as a float.
  float step = float((double(hi) - double(lo)) / maxCode);
  return {lo, step, step > 0 ? float(1.0 / step) : 0.0f};
}

/// v rounded to the nearest integer (ties to even), exactly for |v| < 2^22:
/// adding 2^23 leaves no fraction bits. The CPU's formula, kept (rather
/// than rintf) so that both targets agree on every input.
__host__ __device__ inline float nearestInteger(float v) {
  return subRn(addRn(v, 0x1p23f), 0x1p23f);
}

/// q = round((x - lo) / step), clamped to [0, maxCode], NaN to 0.
__host__ __device__ inline uint32_t affineCode(float x, ChannelStep s,
                                               float maxCode) {
  float r = nearestInteger(mulRn(subRn(x, s.lo), s.inv));
  r = r > 0 ? r : 0.0f;
  return uint32_t(int32_t(r < maxCode ? r : maxCode));
}

/// q = x > 0 ? clamp(ceil(x / step), 1, maxCode) : 0.
__host__ __device__ inline uint32_t nonnegCode(float x, ChannelStep s,
                                               float maxCode) {
  float v = mulRn(x, s.inv);
  float r = nearestInteger(v);
  float up = addRn(r, r < v ? 1.0f : 0.0f); // ceil(v)
  up = up > 1 ? up : 1.0f;
  up = up < maxCode ? up : maxCode;
  return uint32_t(int32_t(x > 0 ? up : 0.0f));
}

__host__ __device__ inline uint32_t maskCode(float x) { return x > 0; }

__host__ __device__ inline float affineValue(uint32_t q, float lo, float step) {
  return addRn(lo, mulRn(float(q), step));
}

/// The centre of a positive bin; code 0 is exactly 0.
__host__ __device__ inline float nonnegValue(uint32_t q, float step) {
  float centre = mulRn(subRn(float(q), 0.5f), step);
  return centre > 0 ? centre : 0.0f;
}

__host__ __device__ inline float maskValue(uint32_t q) { return float(q); }

//===----------------------------------------------------------------------===//
// Code widths
//===----------------------------------------------------------------------===//

/// The widths of codes that approximate values (all but the 1-bit masks).
constexpr unsigned valueCodeBits = 1u << 2 | 1u << 4 | 1u << 8;

/// Calls f(std::integral_constant<int, bits>()) so that the code width is a
/// compile-time constant in the kernels; fails for a width outside
/// `Allowed` (a bit set of widths, e.g. 1u << 4), and instantiates f for
/// the allowed widths only.
template <unsigned Allowed, typename F>
void withCodeBits(const char *kernel, int64_t bits, F &&f) {
  if (bits < 1 || bits > 8 || !(Allowed >> bits & 1))
    failf("%s: unsupported code width %lld", kernel, (long long)bits);
  if constexpr ((Allowed >> 1 & 1) != 0)
    if (bits == 1)
      return f(std::integral_constant<int, 1>());
  if constexpr ((Allowed >> 2 & 1) != 0)
    if (bits == 2)
      return f(std::integral_constant<int, 2>());
  if constexpr ((Allowed >> 4 & 1) != 0)
    if (bits == 4)
      return f(std::integral_constant<int, 4>());
  if constexpr ((Allowed >> 8 & 1) != 0)
    if (bits == 8)
      return f(std::integral_constant<int, 8>());
}

/// Calls f(std::bool_constant<flag>()).
template <typename F> void withFlag(bool flag, F &&f) {
  if (flag)
    return f(std::true_type());
  return f(std::false_type());
}

//===----------------------------------------------------------------------===//
// Packed layout
//===----------------------------------------------------------------------===//

/// The code of element i.
template <int Bits>
__host__ __device__ inline uint32_t codeAt(const uint8_t *packed, int64_t i) {
  constexpr int perByte = 8 / Bits;
  return uint32_t(packed[i / perByte]) >> (i % perByte * Bits) &
         ((1u << Bits) - 1);
}

/// Stores code q of element i, for every lane of a warp whose lane l holds
/// element base + l (base a multiple of 32): the lanes of one byte OR their
/// shifted codes together and the byte's first lane writes it, so each byte
/// has one writer. Elements at or past numel hold code 0, which leaves the
/// unused tail bits 0. Every lane of the warp must call this.
template <int Bits>
__device__ inline void storeCode(uint8_t *packed, int64_t i, uint32_t q,
                                 int64_t numel) {
  constexpr int perByte = 8 / Bits;
  const int slot = int(i % perByte);
  uint32_t byte = q << (slot * Bits);
  for (int offset = 1; offset < perByte; offset <<= 1)
    byte |= __shfl_xor_sync(0xffffffffu, byte, offset);
  if (slot == 0 && i < numel)
    packed[i / perByte] = uint8_t(byte);
}

//===----------------------------------------------------------------------===//
// Channel of an element
//===----------------------------------------------------------------------===//

/// Division of an index in [0, 2^63) by a fixed divisor d, as a multiply
/// and a shift (Granlund-Montgomery, Theorem 4.2 with N = 63): with
/// l = ceil(log2 d) and m = ceil(2^(63 + l) / d) < 2^64,
/// n / d = floor(m n / 2^(63 + l)) = mulhi(n, m) >> (l - 1). A 64-bit
/// division per element would dominate the element passes.
struct FastDivider {
  uint64_t divisor = 1, magic = 0;
  unsigned shift = 0;

  FastDivider() = default;
  explicit FastDivider(int64_t d) : divisor(d > 1 ? uint64_t(d) : 1) {
    if (divisor == 1)
      return;
    unsigned l = 64 - unsigned(__builtin_clzll(divisor - 1));
    unsigned __int128 one = 1;
    magic = uint64_t(((one << (63 + l)) + divisor - 1) / divisor);
    shift = l - 1;
  }

  __host__ __device__ uint64_t divide(uint64_t n) const {
#ifdef __CUDA_ARCH__
    uint64_t high = __umul64hi(n, magic);
#else
    uint64_t high = uint64_t((unsigned __int128)n * magic >> 64);
#endif
    return divisor == 1 ? n : high >> shift;
  }
};

/// The channel (i / spatial) % c of element i of an [n, c, spatial] tensor.
struct ChannelIndex {
  FastDivider spatial, channels;
  int64_t c;

  ChannelIndex(int64_t c, int64_t spatial)
      : spatial(spatial), channels(c), c(c) {}
  __host__ __device__ int64_t operator()(int64_t i) const {
    uint64_t slice = spatial.divide(uint64_t(i));
    return int64_t(slice - channels.divide(slice) * uint64_t(c));
  }
};

//===----------------------------------------------------------------------===//
// Element passes
//===----------------------------------------------------------------------===//

/// For every element i: q = body(i, channel of i), and with Bits > 0 the
/// packed code q of i. The loop condition is uniform over a warp (its base
/// index is lane 0's), so whole warps reach storeCode's shuffles; the grid
/// stride is a multiple of 32, so bases stay multiples of 32.
template <int Bits, typename Body>
__global__ void __launch_bounds__(blockThreads)
    elementPass(int64_t numel, ChannelIndex channelOf, Body body,
                uint8_t *packed) {
  static_assert(blockThreads % 32 == 0, "warps must be whole");
  const int lane = threadIdx.x % 32;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
       i - lane < numel; i += stride) {
    uint32_t q = 0;
    if (i < numel)
      q = body(i, channelOf(i));
    if constexpr (Bits > 0)
      storeCode<Bits>(packed, i, q, numel);
  }
}

/// Runs body over the n * c * spatial elements (and writes their codes to
/// `packed` with Bits > 0).
template <int Bits, typename Body>
void launchElementPass(CudaRuntime &rt, const char *kernel, int64_t n,
                       int64_t c, int64_t spatial, const Body &body,
                       uint8_t *packed = nullptr) {
  int64_t numel = n * c * spatial;
  if (numel <= 0)
    return;
  elementPass<Bits><<<gridFor(numel), blockThreads, 0, rt.stream>>>(
      numel, ChannelIndex(c, spatial), body, packed);
  checkLaunch(kernel);
}

template <typename F>
__global__ void __launch_bounds__(blockThreads) channelPass(int64_t c, F f) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t ch = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; ch < c;
       ch += stride)
    f(ch);
}

/// Calls f(ch) for every channel, for per-channel constants.
template <typename F>
void launchChannelPass(CudaRuntime &rt, const char *kernel, int64_t c,
                       const F &f) {
  if (c <= 0)
    return;
  channelPass<<<gridFor(c), blockThreads, 0, rt.stream>>>(c, f);
  checkLaunch(kernel);
}

//===----------------------------------------------------------------------===//
// Per-channel reductions
//===----------------------------------------------------------------------===//

/// Threads per block of the partial reductions.
constexpr int reduceThreads = 256;

/// How a channel's count = n * spatial elements (k = b * spatial + j, at
/// flat index (b * c + ch) * spatial + j) are cut into `parts` parts of
/// partLen, and how a thread steps through its part: reduceThreads values
/// of k at a time, i.e. stepIdx in the flat index, plus wrapIdx when j
/// wraps past the end of a slice.
struct ReducePlan {
  int64_t c, spatial, count, partLen;
  int64_t stepJ, stepIdx, wrapIdx;
  unsigned parts;
};

inline ReducePlan makeReducePlan(const char *kernel, int64_t n, int64_t c,
                                 int64_t spatial) {
  // About two waves of blocks on a 132-SM device, at least 8 values a thread.
  constexpr int64_t targetBlocks = 2048, minPartLen = 8 * reduceThreads;
  ReducePlan plan{};
  plan.c = c;
  plan.spatial = spatial;
  plan.count = n * spatial;
  int64_t parts = (targetBlocks + c - 1) / c;
  int64_t useful = (plan.count + minPartLen - 1) / minPartLen;
  parts = parts < useful ? parts : useful;
  parts = parts > 1 ? parts : 1;
  plan.partLen = (plan.count + parts - 1) / parts;
  // No empty part: recount with the rounded-up length.
  parts = plan.partLen > 0 ? (plan.count + plan.partLen - 1) / plan.partLen : 1;
  if (c * parts > INT32_MAX)
    failf("%s: %lld channels are more than one grid can reduce", kernel,
          (long long)c);
  plan.parts = unsigned(parts);
  if (spatial > 0) {
    plan.stepJ = reduceThreads % spatial;
    plan.stepIdx = reduceThreads / spatial * c * spatial + plan.stepJ;
    plan.wrapIdx = (c - 1) * spatial;
  }
  return plan;
}

/// Calls f(flat index) for the elements thread `thread` (of reduceThreads)
/// takes in part `part` of channel ch: k = first + thread, then every
/// reduceThreads-th k, stepping the flat index without a division.
template <typename F>
__host__ __device__ void forPartElements(const ReducePlan &plan, int64_t ch,
                                         unsigned part, unsigned thread,
                                         F &&f) {
  int64_t k = int64_t(part) * plan.partLen + thread;
  int64_t end = (int64_t(part) + 1) * plan.partLen;
  end = end < plan.count ? end : plan.count;
  if (k >= end)
    return;
  int64_t b = k / plan.spatial, j = k - b * plan.spatial;
  int64_t idx = (b * plan.c + ch) * plan.spatial + j;
  for (; k < end; k += reduceThreads) {
    f(idx);
    idx += plan.stepIdx;
    j += plan.stepJ;
    if (j >= plan.spatial) {
      j -= plan.spatial;
      idx += plan.wrapIdx;
    }
  }
}

/// Accumulators: Value, identity() and combine(a, b) (the accumulated
/// value first).
struct PairSum {
  using Value = double2;
  __device__ static Value identity() { return make_double2(0.0, 0.0); }
  __device__ static Value combine(Value a, Value b) {
    return make_double2(a.x + b.x, a.y + b.y);
  }
};

/// (min, max) that skip NaN, as std::min(lo, v), std::max(hi, v) do.
struct FloatRange {
  using Value = float2;
  __device__ static Value identity() {
    return make_float2(INFINITY, -INFINITY);
  }
  __device__ static Value combine(Value a, Value b) {
    return make_float2(b.x < a.x ? b.x : a.x, a.y < b.y ? b.y : a.y);
  }
};

__device__ inline double2 shuffleDown(double2 v, int offset) {
  return make_double2(__shfl_down_sync(0xffffffffu, v.x, offset),
                      __shfl_down_sync(0xffffffffu, v.y, offset));
}
__device__ inline float2 shuffleDown(float2 v, int offset) {
  return make_float2(__shfl_down_sync(0xffffffffu, v.x, offset),
                     __shfl_down_sync(0xffffffffu, v.y, offset));
}

/// A fixed tree over the warp; the total is lane 0's.
template <typename Acc>
__device__ typename Acc::Value warpReduce(typename Acc::Value v) {
  for (int offset = 16; offset > 0; offset >>= 1)
    v = Acc::combine(v, shuffleDown(v, offset));
  return v;
}

/// A fixed tree over the block; the total is thread 0's.
template <typename Acc>
__device__ typename Acc::Value blockReduce(typename Acc::Value v) {
  constexpr int warps = reduceThreads / 32;
  __shared__ typename Acc::Value warpTotals[warps];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  v = warpReduce<Acc>(v);
  if (lane == 0)
    warpTotals[warp] = v;
  __syncthreads();
  if (warp == 0)
    v = warpReduce<Acc>(lane < warps ? warpTotals[lane] : Acc::identity());
  return v;
}

/// partial[ch * parts + part] = the Acc-reduction of terms.term(state, idx)
/// over the part's elements, state = terms.channel(ch) (what a channel's
/// terms share, loaded once per thread).
template <typename Acc, typename Terms>
__global__ void __launch_bounds__(reduceThreads)
    channelPartials(ReducePlan plan, Terms terms,
                    typename Acc::Value *partial) {
  const unsigned ch = blockIdx.x / plan.parts, part = blockIdx.x % plan.parts;
  const auto state = terms.channel(ch);
  typename Acc::Value acc = Acc::identity();
  forPartElements(plan, ch, part, threadIdx.x, [&](int64_t idx) {
    acc = Acc::combine(acc, terms.term(state, idx));
  });
  acc = blockReduce<Acc>(acc);
  if (threadIdx.x == 0)
    partial[blockIdx.x] = acc;
}

/// finish(ch, total) with a channel's parts combined in part order.
template <typename Acc, typename Finish>
__global__ void __launch_bounds__(blockThreads)
    combineChannels(int64_t c, unsigned parts,
                    const typename Acc::Value *partial, Finish finish) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t ch = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; ch < c;
       ch += stride) {
    typename Acc::Value acc = Acc::identity();
    for (unsigned p = 0; p < parts; ++p)
      acc = Acc::combine(acc, partial[ch * parts + p]);
    finish(ch, acc);
  }
}

/// finish(ch, the Acc-reduction of terms over channel ch) for every channel
/// of an [n, c, spatial] tensor; the partial results go to scratch `slot`.
template <typename Acc, typename Terms, typename Finish>
void reduceChannels(CudaRuntime &rt, const char *kernel, unsigned slot,
                    int64_t n, int64_t c, int64_t spatial, const Terms &terms,
                    const Finish &finish) {
  using Value = typename Acc::Value;
  if (c <= 0)
    return;
  ReducePlan plan = makeReducePlan(kernel, n, c, spatial);
  int64_t blocks = c * plan.parts;
  auto *partial =
      static_cast<Value *>(scratchFor(rt, slot, sizeof(Value) * blocks));
  channelPartials<Acc>
      <<<unsigned(blocks), reduceThreads, 0, rt.stream>>>(plan, terms, partial);
  checkLaunch(kernel);
  combineChannels<Acc><<<gridFor(c), blockThreads, 0, rt.stream>>>(
      c, plan.parts, partial, finish);
  checkLaunch(kernel);
}

} // namespace cuda
} // namespace blpa

#endif // BLPA_RUNTIME_CUDA_PACKING_CUH
