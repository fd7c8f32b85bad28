//===- BatchNorm.cu - Batch normalization kernels on the GPU --------------===//
//
// The CPU runtime's batch norms (lib/Runtime/CPU/BatchNorm.cpp) on device
// pointers. Per-channel statistics go through Packing.cuh's deterministic
// reduction: sums in double of x - shift (shift = the channel's first
// value, as on the CPU, against the cancellation of E[x^2] - E[x]^2), then
// per channel the biased variance, mean and invStd. Every forward output
// comes from normalizeValue with the factor of statsParams, so that
// blpa_batch_norm_apply, the encoding kernels and relu_grad's recomputed
// mask reproduce the training forward bit for bit.
//
// The BLPA kernels: the encoding forwards bin each y into its BN-ReLU code
// in the pass that writes y; the decoding backwards read the codes in place
// of x in both reduction passes (xhat~ is affine in the code), with no
// decoded tensor in between.
//
//===----------------------------------------------------------------------===//

#include "CudaRuntime.h"
#include "Packing.cuh"

using namespace blpa::cuda;

namespace {

// scratchFor slots of this file.
constexpr unsigned partialSlot = 20; // reduction partials
constexpr unsigned bnCodeSlot = 21;  // BnCode per channel
constexpr unsigned dxSlot = 22;      // backward constants per channel
constexpr unsigned factorSlot = 23;  // inference factors per channel

//===----------------------------------------------------------------------===//
// Normalization
//===----------------------------------------------------------------------===//

/// The normalization of a training-mode batch norm from its stored float
/// statistics. The forward and every recomputation take it here, so all
/// of them normalize with the same factor.
__device__ inline NormParams statsParams(const float *mean, const float *scale,
                                         const float *invStd, const float *bias,
                                         int64_t ch) {
  return {mean[ch], normFactor(scale[ch], invStd[ch]), bias[ch]};
}

/// The parameters of a training-mode batch norm.
struct StatsNorm {
  const float *mean, *scale, *invStd, *bias;
  __device__ NormParams params(int64_t ch) const {
    return statsParams(mean, scale, invStd, bias, ch);
  }
};

/// Precomputed factors (inference).
struct FactorNorm {
  const float *mean, *factor, *bias;
  __device__ NormParams params(int64_t ch) const {
    return {mean[ch], factor[ch], bias[ch]};
  }
};

/// y = normalized x (max(y, 0) with Relu); with Bits > 0 returns the
/// BN-ReLU code of the pre-ReLU y (Norm is then StatsNorm and codes holds
/// the channels' BnCode).
template <typename Norm, int Bits, bool Relu> struct NormalizeBody {
  Norm norm;
  const float *x;
  float *y;
  const BnCode *codes;

  __device__ uint32_t operator()(int64_t i, int64_t ch) const {
    NormParams p = norm.params(ch);
    float xi = x[i];
    float v = normalizeValue(xi, p);
    uint32_t q = 0;
    // Before the store to y, which the compiler must assume could alias the
    // channel constants.
    if constexpr (Bits > 0)
      q = bnReluCode(codes[ch], xi, v, p.mu, norm.invStd[ch]);
    y[i] = Relu ? reluValue(v) : v;
    return q;
  }
};

//===----------------------------------------------------------------------===//
// Training statistics
//===----------------------------------------------------------------------===//

/// Terms x - shift and (x - shift)^2, shift = the channel's first value.
struct ShiftedSquares {
  const float *x;
  int64_t spatial;

  __device__ double channel(int64_t ch) const { return x[ch * spatial]; }
  __device__ double2 term(double shift, int64_t i) const {
    double t = double(x[i]) - shift;
    return make_double2(t, mulRn(t, t));
  }
};

/// mean and invStd of a channel from its shifted sums, as the CPU's
/// trainStatistics; with codes, also the channel's BnCode for the element
/// pass that follows.
struct TrainFinish {
  const float *x;
  int64_t spatial, count;
  double epsilon;
  float *mean, *invStd;
  const float *scale, *bias;
  int bits;
  BnCode *codes;

  __device__ void operator()(int64_t ch, double2 sums) const {
    double shiftedMean = sums.x / double(count);
    double var = subRn(sums.y / double(count), mulRn(shiftedMean, shiftedMean));
    var = 0.0 < var ? var : 0.0; // std::max(0.0, var), NaN to 0
    mean[ch] = float(x[ch * spatial] + shiftedMean);
    invStd[ch] = float(1.0 / sqrt(var + epsilon));
    if (codes)
      codes[ch] = makeBnCode(scale[ch], bias[ch], bits);
  }
};

/// Training-mode batch norm: statistics, then y (max(y, 0) with Relu) and
/// with Bits > 0 the codes, in one element pass.
template <int Bits, bool Relu>
void trainForward(blpa_context *ctx, const char *kernel, const float *x,
                  const float *scale, const float *bias, float *y, float *mean,
                  float *invStd, uint8_t *packed, int64_t n, int64_t c,
                  int64_t spatial, double epsilon) {
  CudaRuntime &rt = runtimeOf(ctx);
  int64_t count = n * spatial;
  if (count == 0)
    failf("%s: empty batch", kernel);
  BnCode *codes = nullptr;
  if constexpr (Bits > 0)
    codes = static_cast<BnCode *>(
        scratchFor(rt, bnCodeSlot, sizeof(BnCode) * size_t(c)));
  reduceChannels<PairSum>(rt, kernel, partialSlot, n, c, spatial,
                          ShiftedSquares{x, spatial},
                          TrainFinish{x, spatial, count, epsilon, mean, invStd,
                                      scale, bias, Bits, codes});
  StatsNorm norm{mean, scale, invStd, bias};
  launchElementPass<Bits>(
      rt, kernel, n, c, spatial,
      NormalizeBody<StatsNorm, Bits, Relu>{norm, x, y, codes}, packed);
}

template <bool Relu>
void trainEncode(blpa_context *ctx, const char *kernel, const float *x,
                 const float *scale, const float *bias, float *y, float *mean,
                 float *invStd, uint8_t *packed, int64_t n, int64_t c,
                 int64_t spatial, double epsilon, int64_t bits) {
  withCodeBits<valueCodeBits>(kernel, bits, [&](auto width) {
    trainForward<decltype(width)::value, Relu>(ctx, kernel, x, scale, bias, y,
                                               mean, invStd, packed, n, c,
                                               spatial, epsilon);
  });
}

//===----------------------------------------------------------------------===//
// Backward
//===----------------------------------------------------------------------===//

/// One element as the backward sees it: the (masked) incoming gradient and
/// the value xhat is affine in, in float (dx) and in double (the sums).
struct Sample {
  float grad, value;
  double wide;
};

/// The exact input: value x - mean, xhat = (x - mean) * invStd. With Relu,
/// dy is masked where the recomputed forward output is not positive.
template <bool Relu> struct ExactInput {
  const float *dy, *x, *mean, *scale, *invStd, *bias;

  using Channel = NormParams;
  __device__ NormParams channel(int64_t ch) const {
    if constexpr (Relu)
      return statsParams(mean, scale, invStd, bias, ch);
    else
      return {mean[ch], 0.0f, 0.0f};
  }
  __device__ Sample sample(const NormParams &p, int64_t i) const {
    float xi = x[i], g = dy[i];
    if constexpr (Relu)
      g = normalizeValue(xi, p) > 0.0f ? g : 0.0f;
    return {g, subRn(xi, p.mu), double(xi) - double(p.mu)};
  }
  __device__ XhatMap xhatMap(int64_t ch) const {
    return {double(invStd[ch]), 0.0};
  }
};

/// The codes of blpa_batch_norm_train_encode: value q, xhat~ affine in it.
/// With Relu, dy is masked where the decoded y~ is not positive
/// (blpa_bn_decode's own mask).
template <int Bits, bool Relu> struct CodeInput {
  const float *dy;
  const uint8_t *packed;
  const BnCode *codes;

  using Channel = BnCode;
  __device__ BnCode channel(int64_t ch) const { return codes[ch]; }
  __device__ Sample sample(const BnCode &code, int64_t i) const {
    uint32_t q = codeAt<Bits>(packed, i);
    float g = dy[i];
    if constexpr (Relu)
      g = code.y(q) > 0.0f ? g : 0.0f;
    return {g, float(q), double(q)};
  }
  __device__ XhatMap xhatMap(int64_t ch) const { return codes[ch].xhat; }
};

/// Terms dy and dy * value of the backward's sums.
template <typename Input> struct BackwardTerms {
  Input input;

  __device__ typename Input::Channel channel(int64_t ch) const {
    return input.channel(ch);
  }
  __device__ double2 term(const typename Input::Channel &chan,
                          int64_t i) const {
    Sample s = input.sample(chan, i);
    double g = s.grad;
    return make_double2(g, mulRn(g, s.wide));
  }
};

/// dx = a * (dy - b - value * d) per channel (in a float4: one load).
using DxConsts = float4;

/// From sum(dy) and sum(dy * value): dbias, dscale and dx's constants, as
/// the CPU's batchNormBackward.
template <typename Input> struct BackwardFinish {
  Input input;
  const float *scale, *invStd;
  float *dscale, *dbias;
  DxConsts *consts;
  int64_t count;

  __device__ void operator()(int64_t ch, double2 sums) const {
    double sumDy = sums.x, sumDyV = sums.y;
    double is = invStd[ch];
    XhatMap map = input.xhatMap(ch);
    double ds = addRn(mulRn(sumDyV, map.factor), mulRn(map.offset, sumDy));
    dbias[ch] = float(sumDy);
    dscale[ch] = float(ds);
    consts[ch] =
        make_float4(float(mulRn(double(scale[ch]), is)),
                    float(addRn(sumDy, mulRn(map.offset, ds)) / double(count)),
                    float(mulRn(ds, map.factor) / double(count)), 0.0f);
  }
};

template <typename Input> struct DxBody {
  Input input;
  const DxConsts *consts;
  float *dx;

  __device__ uint32_t operator()(int64_t i, int64_t ch) const {
    Sample s = input.sample(input.channel(ch), i);
    DxConsts k = consts[ch];
    dx[i] = mulRn(k.x, subRn(subRn(s.grad, k.y), mulRn(s.value, k.z)));
    return 0;
  }
};

/// Batch-norm backward from `input`:
///   dbias = sum(dy), dscale = sum(dy * xhat)
///   dx = scale*invStd * (dy - dbias/M - xhat * dscale/M),  M = n*spatial
/// as two passes: the per-channel sums, then dx.
template <typename Input>
void batchNormBackward(CudaRuntime &rt, const char *kernel, const Input &input,
                       const float *scale, const float *invStd, float *dx,
                       float *dscale, float *dbias, int64_t n, int64_t c,
                       int64_t spatial) {
  auto *consts = static_cast<DxConsts *>(
      scratchFor(rt, dxSlot, sizeof(DxConsts) * size_t(c)));
  reduceChannels<PairSum>(rt, kernel, partialSlot, n, c, spatial,
                          BackwardTerms<Input>{input},
                          BackwardFinish<Input>{input, scale, invStd, dscale,
                                                dbias, consts, n * spatial});
  launchElementPass<0>(rt, kernel, n, c, spatial,
                       DxBody<Input>{input, consts, dx});
}

//===----------------------------------------------------------------------===//
// Codes
//===----------------------------------------------------------------------===//

struct BnCodeSetup {
  const float *scale, *bias;
  int bits;
  BnCode *codes;
  __device__ void operator()(int64_t ch) const {
    codes[ch] = makeBnCode(scale[ch], bias[ch], bits);
  }
};

/// The channels' BnCode for `bits`, in scratch.
const BnCode *bnCodes(CudaRuntime &rt, const char *kernel, const float *scale,
                      const float *bias, int64_t c, int bits) {
  auto *codes = static_cast<BnCode *>(
      scratchFor(rt, bnCodeSlot, sizeof(BnCode) * size_t(c)));
  launchChannelPass(rt, kernel, c, BnCodeSetup{scale, bias, bits, codes});
  return codes;
}

template <bool Relu>
void gradDecode(blpa_context *ctx, const char *kernel, const float *dy,
                const uint8_t *packed, const float *scale, const float *bias,
                const float *invStd, float *dx, float *dscale, float *dbias,
                int64_t n, int64_t c, int64_t spatial, int64_t bits) {
  CudaRuntime &rt = runtimeOf(ctx);
  withCodeBits<valueCodeBits>(kernel, bits, [&](auto width) {
    constexpr int Bits = decltype(width)::value;
    const BnCode *codes = bnCodes(rt, kernel, scale, bias, c, Bits);
    batchNormBackward(rt, kernel, CodeInput<Bits, Relu>{dy, packed, codes},
                      scale, invStd, dx, dscale, dbias, n, c, spatial);
  });
}

/// y = the decoded y~ (with Relu: y~ where positive, else 0).
template <int Bits, bool Relu> struct DecodeBody {
  const uint8_t *packed;
  const BnCode *codes;
  float *y;

  __device__ uint32_t operator()(int64_t i, int64_t ch) const {
    float v = codes[ch].y(codeAt<Bits>(packed, i));
    // q >= shift exactly where y~ > 0 (and for gamma == 0, y~ = beta), so
    // the mask is y~ > 0.
    y[i] = Relu ? (v > 0 ? v : 0.0f) : v;
    return 0;
  }
};

//===----------------------------------------------------------------------===//
// Inference
//===----------------------------------------------------------------------===//

/// factor = scale / sqrt(var + eps), in double as on the CPU.
struct InferFactor {
  const float *scale, *var;
  double epsilon;
  float *factor;
  __device__ void operator()(int64_t ch) const {
    factor[ch] = float(scale[ch] / sqrt(double(var[ch]) + epsilon));
  }
};

} // namespace

extern "C" {

void blpa_batch_norm_train(blpa_context *ctx, const float *x,
                           const float *scale, const float *bias, float *y,
                           float *mean, float *invStd, int64_t n, int64_t c,
                           int64_t spatial, double epsilon) {
  trainForward<0, false>(ctx, "blpa_batch_norm_train", x, scale, bias, y, mean,
                         invStd, nullptr, n, c, spatial, epsilon);
}

void blpa_batch_norm_infer(blpa_context *ctx, const float *x,
                           const float *scale, const float *bias,
                           const float *mean, const float *var, float *y,
                           int64_t n, int64_t c, int64_t spatial,
                           double epsilon) {
  const char *kernel = "blpa_batch_norm_infer";
  CudaRuntime &rt = runtimeOf(ctx);
  auto *factor = static_cast<float *>(
      scratchFor(rt, factorSlot, sizeof(float) * size_t(c)));
  launchChannelPass(rt, kernel, c, InferFactor{scale, var, epsilon, factor});
  launchElementPass<0>(
      rt, kernel, n, c, spatial,
      NormalizeBody<FactorNorm, 0, false>{{mean, factor, bias}, x, y, nullptr});
}

void blpa_batch_norm_grad(blpa_context *ctx, const float *dy, const float *x,
                          const float *scale, const float *mean,
                          const float *invStd, float *dx, float *dscale,
                          float *dbias, int64_t n, int64_t c, int64_t spatial) {
  batchNormBackward(runtimeOf(ctx), "blpa_batch_norm_grad",
                    ExactInput<false>{dy, x, mean, scale, invStd, nullptr},
                    scale, invStd, dx, dscale, dbias, n, c, spatial);
}

void blpa_batch_norm_relu_train(blpa_context *ctx, const float *x,
                                const float *scale, const float *bias, float *y,
                                float *mean, float *invStd, int64_t n,
                                int64_t c, int64_t spatial, double epsilon) {
  trainForward<0, true>(ctx, "blpa_batch_norm_relu_train", x, scale, bias, y,
                        mean, invStd, nullptr, n, c, spatial, epsilon);
}

void blpa_batch_norm_relu_grad(blpa_context *ctx, const float *dy,
                               const float *x, const float *scale,
                               const float *bias, const float *mean,
                               const float *invStd, float *dx, float *dscale,
                               float *dbias, int64_t n, int64_t c,
                               int64_t spatial) {
  batchNormBackward(runtimeOf(ctx), "blpa_batch_norm_relu_grad",
                    ExactInput<true>{dy, x, mean, scale, invStd, bias}, scale,
                    invStd, dx, dscale, dbias, n, c, spatial);
}

void blpa_batch_norm_apply(blpa_context *ctx, const float *x,
                           const float *scale, const float *bias,
                           const float *mean, const float *invStd, float *y,
                           int64_t n, int64_t c, int64_t spatial,
                           int64_t relu) {
  CudaRuntime &rt = runtimeOf(ctx);
  withFlag(relu != 0, [&](auto withRelu) {
    constexpr bool Relu = decltype(withRelu)::value;
    launchElementPass<0>(rt, "blpa_batch_norm_apply", n, c, spatial,
                         NormalizeBody<StatsNorm, 0, Relu>{
                             {mean, scale, invStd, bias}, x, y, nullptr});
  });
}

void blpa_batch_norm_train_encode(blpa_context *ctx, const float *x,
                                  const float *scale, const float *bias,
                                  float *y, float *mean, float *invStd,
                                  uint8_t *codes, int64_t n, int64_t c,
                                  int64_t spatial, double epsilon,
                                  int64_t bits) {
  trainEncode<false>(ctx, "blpa_batch_norm_train_encode", x, scale, bias, y,
                     mean, invStd, codes, n, c, spatial, epsilon, bits);
}

void blpa_batch_norm_relu_train_encode(blpa_context *ctx, const float *x,
                                       const float *scale, const float *bias,
                                       float *y, float *mean, float *invStd,
                                       uint8_t *codes, int64_t n, int64_t c,
                                       int64_t spatial, double epsilon,
                                       int64_t bits) {
  trainEncode<true>(ctx, "blpa_batch_norm_relu_train_encode", x, scale, bias, y,
                    mean, invStd, codes, n, c, spatial, epsilon, bits);
}

void blpa_batch_norm_grad_decode(blpa_context *ctx, const float *dy,
                                 const uint8_t *codes, const float *scale,
                                 const float *bias, const float *invStd,
                                 float *dx, float *dscale, float *dbias,
                                 int64_t n, int64_t c, int64_t spatial,
                                 int64_t bits) {
  gradDecode<false>(ctx, "blpa_batch_norm_grad_decode", dy, codes, scale, bias,
                    invStd, dx, dscale, dbias, n, c, spatial, bits);
}

void blpa_batch_norm_relu_grad_decode(blpa_context *ctx, const float *dy,
                                      const uint8_t *codes, const float *scale,
                                      const float *bias, const float *invStd,
                                      float *dx, float *dscale, float *dbias,
                                      int64_t n, int64_t c, int64_t spatial,
                                      int64_t bits) {
  gradDecode<true>(ctx, "blpa_batch_norm_relu_grad_decode", dy, codes, scale,
                   bias, invStd, dx, dscale, dbias, n, c, spatial, bits);
}

void blpa_bn_decode(blpa_context *ctx, const uint8_t *codes, const float *scale,
                    const float *bias, float *y, int64_t n, int64_t c,
                    int64_t spatial, int64_t bits, int64_t relu) {
  const char *kernel = "blpa_bn_decode";
  CudaRuntime &rt = runtimeOf(ctx);
  withCodeBits<valueCodeBits>(kernel, bits, [&](auto width) {
    constexpr int Bits = decltype(width)::value;
    const BnCode *channelCodes = bnCodes(rt, kernel, scale, bias, c, Bits);
    withFlag(relu != 0, [&](auto withRelu) {
      constexpr bool Relu = decltype(withRelu)::value;
      launchElementPass<0>(rt, kernel, n, c, spatial,
                           DecodeBody<Bits, Relu>{codes, channelCodes, y});
    });
  });
}

} // extern "C"
