//===- BatchNorm.cpp - Batch normalization kernels -----------------------===//
//
// Per-channel statistics are reduced deterministically: each (n, c) slice is
// summed in double by one thread (LaneSum.h), then a channel's N slice sums
// are added in n order. Neither step depends on the thread count. The
// variance is computed from sums shifted by one sample of the channel, which
// avoids the cancellation of the naive E[x^2] - E[x]^2.
//
// The BLPA kernels keep the forward exact: blpa_batch_norm_train_encode
// shares the statistics and the normalizing expression with
// blpa_batch_norm_train and bins each run of y into its K-bit code while the
// run is in cache; blpa_batch_norm_grad_decode shares the backward with
// blpa_batch_norm_grad, reading the codes in place of x.
//
//===----------------------------------------------------------------------===//

#include "CpuRuntime.h"
#include "LaneSum.h"
#include "Packing.h"

#include <cfloat>
#include <cmath>

using namespace blpa::cpu;

// Defined by the all-reduce library of data-parallel executables; only
// synchronized batch norm calls them (syncsReplicas), and only there are
// they linked.
#pragma weak blpa_comm_allreduce_doubles
#pragma weak blpa_comm_broadcast

namespace {

/// sum0[ch], sum1[ch] = sums over the channel's slices of the two terms
/// sliceSums(ch, sliceOffset, s0, s1) computes for one slice.
template <typename SliceSums>
void channelSums(int64_t n, int64_t c, int64_t spatial,
                 std::vector<double> &sum0, std::vector<double> &sum1,
                 SliceSums &&sliceSums) {
  std::vector<double> partial(2 * n * c);
  parallelFor(n * c, [&](int64_t i) {
    sliceSums(i % c, i * spatial, partial[2 * i], partial[2 * i + 1]);
  });
  sum0.assign(c, 0.0);
  sum1.assign(c, 0.0);
  for (int64_t b = 0; b < n; ++b)
    for (int64_t ch = 0; ch < c; ++ch) {
      sum0[ch] += partial[2 * (b * c + ch)];
      sum1[ch] += partial[2 * (b * c + ch) + 1];
    }
}

// One copy of the machine code for every caller: the fused BN-ReLU kernels
// recompute y in the backward pass (its ReLU mask, or the ReLU output for
// another reader) and must reproduce the forward's bits, whatever FMA
// contraction or cloning would make of an inlined copy.
#if defined(__clang__)
#define BLPA_ONE_COPY __attribute__((noinline))
#else
#define BLPA_ONE_COPY __attribute__((noipa))
#endif

/// out = (in - mu) * a + b over one run of a channel: the one expression of
/// every batch-norm forward, so that the fused encode writes the same bits.
BLPA_ONE_COPY void normalizeRun(const float *in, float *out, int64_t len,
                                float mu, float a, float b) {
  for (int64_t j = 0; j < len; ++j)
    out[j] = (in[j] - mu) * a + b;
}

/// max(v, 0) in place; keeps NaN, as blpa_relu does.
void reluRun(float *v, int64_t len) {
  for (int64_t j = 0; j < len; ++j)
    v[j] = std::max(v[j], 0.0f);
}

/// The per-channel factor scale * invStd from the float invStd the forward
/// stores: the forward and every recomputation take it from here.
std::vector<float> normalizingFactors(const float *scale, const float *invStd,
                                      int64_t c) {
  std::vector<float> factor(c);
  for (int64_t ch = 0; ch < c; ++ch)
    factor[ch] = scale[ch] * invStd[ch];
  return factor;
}

/// y = (x - center[ch]) * factor[ch] + offset[ch] over every (n, c) slice,
/// and max(y, 0) with `relu`, while the slice is in cache.
void normalize(const float *x, float *y, int64_t n, int64_t c, int64_t spatial,
               const float *center, const std::vector<float> &factor,
               const float *offset, bool relu = false) {
  parallelFor(n * c, [&](int64_t i) {
    int64_t ch = i % c;
    normalizeRun(x + i * spatial, y + i * spatial, spatial, center[ch],
                 factor[ch], offset[ch]);
    if (relu)
      reluRun(y + i * spatial, spatial);
  });
}

/// Synchronized batch norm (docs/design.md, "Data parallelism"): whether
/// the statistics are those of every replica's batch together.
bool syncsReplicas(const blpa_context *ctx) {
  return ctx && ctx->comm && ctx->sync_batch_norm;
}

/// Adds two per-channel sums over the replicas, in place (each replica's
/// sums in double, in rank order: every replica gets the same bits).
void sumOverReplicas(blpa_context *ctx, std::vector<double> &a,
                     std::vector<double> &b) {
  std::vector<double> both(a);
  both.insert(both.end(), b.begin(), b.end());
  blpa_comm_allreduce_doubles(ctx->comm, both.data(), int64_t(both.size()));
  std::copy(both.begin(), both.begin() + a.size(), a.begin());
  std::copy(both.begin() + a.size(), both.end(), b.begin());
}

/// The statistics pass of training-mode batch norm: writes mean[C] and
/// invStd[C] and returns the per-channel factor scale * invStd. Synchronized,
/// they are the statistics of every replica's batch.
std::vector<float> trainStatistics(blpa_context *ctx, const char *kernel,
                                   const float *x, const float *scale,
                                   float *mean, float *invStd, int64_t n,
                                   int64_t c, int64_t spatial, double epsilon) {
  int64_t count = n * spatial;
  if (count == 0)
    failf("%s: empty batch", kernel);
  // Sums of x - shift[ch], shift = the channel's first value (of rank 0's
  // batch when synchronized, so that every replica's sums share it).
  std::vector<double> shift(c);
  for (int64_t ch = 0; ch < c; ++ch)
    shift[ch] = x[ch * spatial];
  bool sync = syncsReplicas(ctx);
  std::vector<double> own(shift);
  if (sync)
    blpa_comm_broadcast(ctx->comm, shift.data(), int64_t(c * sizeof(double)),
                        0);
  std::vector<double> sum, sumSq;
  channelSums(n, c, spatial, sum, sumSq,
              [&](int64_t ch, int64_t offset, double &s0, double &s1) {
                const float *in = x + offset;
                double from = own[ch];
                laneSum2(spatial, s0, s1,
                         [&](int64_t j, double &t0, double &t1) {
                           t0 = double(in[j]) - from;
                           t1 = t0 * t0;
                         });
              });
  if (sync) {
    // Re-centre this replica's sums on the shared shift, then add them up.
    for (int64_t ch = 0; ch < c; ++ch) {
      double d = own[ch] - shift[ch];
      sumSq[ch] += 2 * d * sum[ch] + count * d * d;
      sum[ch] += count * d;
    }
    sumOverReplicas(ctx, sum, sumSq);
    count *= ctx->sync_batch_norm;
  }
  for (int64_t ch = 0; ch < c; ++ch) {
    double shiftedMean = sum[ch] / count;
    double var = std::max(0.0, sumSq[ch] / count - shiftedMean * shiftedMean);
    mean[ch] = float(shift[ch] + shiftedMean);
    invStd[ch] = float(1.0 / std::sqrt(var + epsilon));
  }
  return normalizingFactors(scale, invStd, c);
}

/// xhat = value * factor + offset, per channel, for the values a slice
/// view yields.
struct XhatMap {
  double factor, offset;
};

/// Batch-norm backward from per-slice views of the input:
/// slices.slice(ch, offset) returns the view v of the (n, c) slice at
/// `offset`, v(j) (float) and v.wide(j) (double) its j-th value, and
/// slices.xhatMap(ch) maps those values to xhat. The exact kernel views
/// x - mean (factor invStd); the decoding kernel views the codes themselves,
/// since the decoded xhat~ is affine in the code.
///   dbias = sum(dy), dscale = sum(dy * xhat)
///   dx = scale*invStd * (dy - dbias/M - xhat * dscale/M),  M = n*spatial
/// grads.slice(ch, offset) returns the incoming gradient of the slice at
/// `offset` (PlainGrad, or ReluMaskedGrad for a fused ReLU).
///
/// Synchronized, dscale and dbias stay this replica's sums (the gradient
/// all-reduce averages them), while dx subtracts the means over every
/// replica's batch.
template <typename Slices, typename Grads>
void batchNormBackward(blpa_context *ctx, const Slices &slices,
                       const Grads &grads, const float *scale,
                       const float *invStd, float *dx, float *dscale,
                       float *dbias, int64_t n, int64_t c, int64_t spatial) {
  int64_t count = n * spatial;
  std::vector<double> sumDy, sumDyV; // sum(dy), sum(dy * value)
  channelSums(n, c, spatial, sumDy, sumDyV,
              [&](int64_t ch, int64_t offset, double &s0, double &s1) {
                const float *g = grads.slice(ch, offset);
                auto v = slices.slice(ch, offset);
                laneSum2(spatial, s0, s1,
                         [&](int64_t j, double &t0, double &t1) {
                           t0 = g[j];
                           t1 = t0 * v.wide(j);
                         });
              });
  for (int64_t ch = 0; ch < c; ++ch) {
    XhatMap map = slices.xhatMap(ch);
    dbias[ch] = float(sumDy[ch]);
    dscale[ch] = float(sumDyV[ch] * map.factor + map.offset * sumDy[ch]);
  }
  if (syncsReplicas(ctx)) {
    sumOverReplicas(ctx, sumDy, sumDyV);
    count *= ctx->sync_batch_norm;
  }
  // dx = k1 * (dy - k2 - value * k3) per channel.
  std::vector<float> k1(c), k2(c), k3(c);
  for (int64_t ch = 0; ch < c; ++ch) {
    double is = invStd[ch];
    XhatMap map = slices.xhatMap(ch);
    double ds = sumDyV[ch] * map.factor + map.offset * sumDy[ch];
    k1[ch] = float(scale[ch] * is);
    k2[ch] = float((sumDy[ch] + map.offset * ds) / count);
    k3[ch] = float(ds * map.factor / count);
  }
  parallelFor(n * c, [&](int64_t i) {
    int64_t ch = i % c;
    float a = k1[ch], b = k2[ch], d = k3[ch];
    auto v = slices.slice(ch, i * spatial);
    const float *g = grads.slice(ch, i * spatial);
    float *out = dx + i * spatial;
    for (int64_t j = 0; j < spatial; ++j)
      out[j] = a * (g[j] - b - v(j) * d);
  });
}

/// The incoming gradient as it is.
struct PlainGrad {
  const float *dy;
  const float *slice(int64_t, int64_t offset) const { return dy + offset; }
};

/// The gradient of a batch norm whose output went through a ReLU: dy where
/// the recomputed y = (x - mean) * factor + bias is positive, else 0. y comes
/// from the forward's own normalizeRun, so the mask is the forward's.
struct ReluMaskedGrad {
  const float *dy, *x, *mean, *bias;
  const std::vector<float> &factor;
  int64_t spatial;

  const float *slice(int64_t ch, int64_t offset) const {
    // One buffer per thread, reused by all the slices the thread visits.
    static thread_local std::vector<float> g;
    g.resize(spatial);
    normalizeRun(x + offset, g.data(), spatial, mean[ch], factor[ch], bias[ch]);
    const float *in = dy + offset;
    // An unconditional load of in[j]: a select, not a branch on a random
    // sign.
    for (int64_t j = 0; j < spatial; ++j) {
      float v = in[j];
      g[j] = g[j] > 0.0f ? v : 0.0f;
    }
    return g.data();
  }
};

/// The exact input: x - mean, and xhat = (x - mean) * invStd.
struct ExactSlices {
  const float *x, *mean, *invStd;

  struct View {
    const float *in;
    float mu;
    float operator()(int64_t j) const { return in[j] - mu; }
    double wide(int64_t j) const { return double(in[j]) - double(mu); }
  };
  View slice(int64_t ch, int64_t offset) const {
    return {x + offset, mean[ch]};
  }
  XhatMap xhatMap(int64_t ch) const { return {invStd[ch], 0.0}; }
};

//===----------------------------------------------------------------------===//
// BN-ReLU codes
//===----------------------------------------------------------------------===//

/// The per-channel constants of the BN-ReLU codes (see
/// blpa_batch_norm_train_encode in Runtime.h). Codes are bins of width w of
/// u = y / |gamma| laid out from u = 0 (bin `shift` starts there), so the
/// ReLU mask is exactly q >= shift. A channel with gamma == 0 stores xhat
/// itself and decodes y as the constant beta.
struct BnCode {
  bool constant; // gamma == 0
  int32_t shift, maxCode;
  float w, halfMinusShift;
  /// Encoding: u / w = y * binScale, or xhat * binScale when gamma == 0.
  float binScale;
  /// Decoding: y~ = u~ * yScale + yOffset; xhat~ = sgn * (u~ - t) is
  /// affine in the code.
  float yScale, yOffset;
  XhatMap xhat;

  BnCode(float gamma, float beta, int bits) {
    constant = gamma == 0;
    double a = constant ? 1.0 : std::fabs(double(gamma));
    double sgn = gamma < 0 ? -1.0 : 1.0;
    double t = constant ? 0.0 : beta / a;
    maxCode = (1 << bits) - 1;
    w = float(6.0 / (1 << bits)); // exact: 1.5 * 2^(2 - bits)
    // Clamped in double (t may be huge or NaN) before becoming an int; the
    // cap at maxCode keeps the mask exact even when every value is clipped.
    double level = double(1 << (bits - 1)) - std::floor(t / w);
    shift = level >= maxCode ? maxCode : level > 1 ? int32_t(level) : 1;
    halfMinusShift = 0.5f - float(shift);
    // Finite even for a denormal gamma: binCodes relies on s = v * binScale
    // never being NaN for a positive v.
    binScale = float(std::min(1.0 / (a * w), double(FLT_MAX)));
    yScale = constant ? 0.0f : float(a);
    yOffset = constant ? beta : 0.0f;
    xhat = {sgn * w, sgn * ((0.5 - shift) * w - t)};
  }

  /// The bin centre u~; exact in float (a small half-integer times w).
  float centre(uint8_t q) const { return (float(q) + halfMinusShift) * w; }
  float y(uint8_t q) const { return centre(q) * yScale + yOffset; }
};

std::vector<BnCode> bnCodes(const float *scale, const float *bias, int64_t c,
                            int bits) {
  std::vector<BnCode> codes;
  codes.reserve(c);
  for (int64_t ch = 0; ch < c; ++ch)
    codes.emplace_back(scale[ch], bias[ch], bits);
  return codes;
}

/// q[j] = the code of v = src[j] - centre with s = v * binScale:
///   v > 0: shift + floor(s),  else: shift - 1 - floor(-s),
/// clamped to [0, maxCode]. Truncation toward zero is floor(s) on one side
/// and -floor(-s) on the other, so one conversion serves both, and clamping
/// s to [1 - shift, maxCode - shift] first clamps the code. The side comes
/// from v's sign alone, so the ReLU mask survives any rounding of s.
void binCodes(const float *src, int64_t len, float centre, float binScale,
              const BnCode &code, uint8_t *q) {
  const float lo = float(1 - code.shift), hi = float(code.maxCode - code.shift);
  const int32_t up = code.shift, down = code.shift - 1;
  for (int64_t j = 0; j < len; ++j) {
    float v = src[j] - centre;
    float s = v * binScale;
    // NaN (only from a NaN v, which is not positive) takes the lower bound;
    // the conversion below is then always defined.
    s = s > lo ? s : lo;
    s = s < hi ? s : hi;
    q[j] = uint8_t(int32_t(s) + (v > 0 ? up : down));
  }
}

/// The input of blpa_batch_norm_grad_decode: the codes, xhat~ affine in
/// them.
template <int Bits> struct DecodedSlices {
  const uint8_t *codes;
  const std::vector<BnCode> &bn;
  int64_t spatial;

  struct View {
    const uint8_t *q;
    float operator()(int64_t j) const { return float(q[j]); }
    double wide(int64_t j) const { return double(q[j]); }
  };
  View slice(int64_t, int64_t offset) const {
    // One buffer per thread, reused by all the slices the thread visits.
    static thread_local std::vector<uint8_t> q;
    q.resize(spatial);
    unpackCodes<Bits>(codes, offset, spatial, q.data());
    return {q.data()};
  }
  XhatMap xhatMap(int64_t ch) const { return bn[ch].xhat; }
};

/// The gradient of a batch norm whose codes' decoded output went through a
/// ReLU: dy where the decoded y~ is positive (blpa_bn_decode's own ReLU
/// mask, so the same as its relu_grad), else 0.
template <int Bits> struct CodeMaskedGrad {
  const float *dy;
  const uint8_t *codes;
  const std::vector<BnCode> &bn;
  int64_t spatial;

  const float *slice(int64_t ch, int64_t offset) const {
    static thread_local std::vector<uint8_t> q;
    static thread_local std::vector<float> g;
    q.resize(spatial);
    g.resize(spatial);
    unpackCodes<Bits>(codes, offset, spatial, q.data());
    const BnCode &code = bn[ch];
    const float *in = dy + offset;
    for (int64_t j = 0; j < spatial; ++j) {
      float v = in[j]; // unconditional: a select, not a branch
      g[j] = code.y(q[j]) > 0 ? v : 0.0f;
    }
    return g.data();
  }
};

/// Training-mode batch norm that writes the codes of y (binned before a
/// ReLU, when `relu`, clips the run it has binned).
void trainEncode(blpa_context *ctx, const char *kernel, bool relu,
                 const float *x, const float *scale, const float *bias,
                 float *y, float *mean, float *invStd, uint8_t *codes,
                 int64_t n, int64_t c, int64_t spatial, double epsilon,
                 int64_t bits) {
  withCodeBits(kernel, bits, valueCodeBits, [&](auto width) {
    constexpr int Bits = decltype(width)::value;
    std::vector<float> factor = trainStatistics(ctx, kernel, x, scale, mean,
                                                invStd, n, c, spatial, epsilon);
    std::vector<BnCode> bn = bnCodes(scale, bias, c, Bits);
    // Each run is normalized and then binned while its y is still in L1:
    // one pass over memory, in blocks that start on byte boundaries.
    encodeSlices<Bits>(n * c * spatial, spatial, codes,
                       [&](int64_t slice, int64_t b, int64_t e, uint8_t *q) {
                         int64_t ch = slice % c;
                         normalizeRun(x + b, y + b, e - b, mean[ch], factor[ch],
                                      bias[ch]);
                         const BnCode &code = bn[ch];
                         if (code.constant) // bin xhat = (x - mean) * invStd
                           binCodes(x + b, e - b, mean[ch],
                                    code.binScale * invStd[ch], code, q);
                         else // bin y / |gamma|, on y's own sign
                           binCodes(y + b, e - b, 0.0f, code.binScale, code, q);
                         if (relu)
                           reluRun(y + b, e - b);
                       });
  });
}

/// The backward from the codes, of the batch norm itself or (relu) of a
/// ReLU of its decoded output.
void gradDecode(blpa_context *ctx, const char *kernel, bool relu,
                const float *dy, const uint8_t *codes, const float *scale,
                const float *bias, const float *invStd, float *dx,
                float *dscale, float *dbias, int64_t n, int64_t c,
                int64_t spatial, int64_t bits) {
  withCodeBits(kernel, bits, valueCodeBits, [&](auto width) {
    constexpr int Bits = decltype(width)::value;
    std::vector<BnCode> bn = bnCodes(scale, bias, c, Bits);
    DecodedSlices<Bits> slices{codes, bn, spatial};
    if (relu)
      batchNormBackward(ctx, slices,
                        CodeMaskedGrad<Bits>{dy, codes, bn, spatial}, scale,
                        invStd, dx, dscale, dbias, n, c, spatial);
    else
      batchNormBackward(ctx, slices, PlainGrad{dy}, scale, invStd, dx, dscale,
                        dbias, n, c, spatial);
  });
}

} // namespace

extern "C" {

void blpa_batch_norm_train(blpa_context *ctx, const float *x,
                           const float *scale, const float *bias, float *y,
                           float *mean, float *invStd, int64_t n, int64_t c,
                           int64_t spatial, double epsilon) {
  std::vector<float> factor =
      trainStatistics(ctx, "blpa_batch_norm_train", x, scale, mean, invStd, n,
                      c, spatial, epsilon);
  normalize(x, y, n, c, spatial, mean, factor, bias);
}

void blpa_batch_norm_infer(blpa_context *, const float *x, const float *scale,
                           const float *bias, const float *mean,
                           const float *var, float *y, int64_t n, int64_t c,
                           int64_t spatial, double epsilon) {
  std::vector<float> factor(c);
  for (int64_t ch = 0; ch < c; ++ch)
    factor[ch] = float(scale[ch] / std::sqrt(double(var[ch]) + epsilon));
  normalize(x, y, n, c, spatial, mean, factor, bias);
}

void blpa_update_running_stats(blpa_context *ctx, float *runningMean,
                               float *runningVar, const float *mean,
                               const float *invStd, int64_t c, int64_t count,
                               double momentum, double epsilon) {
  if (ctx && ctx->skip_update)
    return;
  // Synchronized, the statistics are those of every replica's batch.
  if (syncsReplicas(ctx))
    count *= ctx->sync_batch_norm;
  // Unbiased correction; a batch of one has no unbiased variance, keep the
  // biased one rather than divide by zero.
  double correction = count > 1 ? double(count) / double(count - 1) : 1.0;
  for (int64_t ch = 0; ch < c; ++ch) {
    double is = invStd[ch];
    double var = (1.0 / (is * is) - epsilon) * correction;
    runningMean[ch] =
        float(runningMean[ch] * momentum + mean[ch] * (1.0 - momentum));
    runningVar[ch] = float(runningVar[ch] * momentum + var * (1.0 - momentum));
  }
}

void blpa_batch_norm_grad(blpa_context *ctx, const float *dy, const float *x,
                          const float *scale, const float *mean,
                          const float *invStd, float *dx, float *dscale,
                          float *dbias, int64_t n, int64_t c, int64_t spatial) {
  batchNormBackward(ctx, ExactSlices{x, mean, invStd}, PlainGrad{dy}, scale,
                    invStd, dx, dscale, dbias, n, c, spatial);
}

void blpa_batch_norm_relu_train(blpa_context *ctx, const float *x,
                                const float *scale, const float *bias, float *y,
                                float *mean, float *invStd, int64_t n,
                                int64_t c, int64_t spatial, double epsilon) {
  std::vector<float> factor =
      trainStatistics(ctx, "blpa_batch_norm_relu_train", x, scale, mean, invStd,
                      n, c, spatial, epsilon);
  normalize(x, y, n, c, spatial, mean, factor, bias, /*relu=*/true);
}

void blpa_batch_norm_relu_grad(blpa_context *ctx, const float *dy,
                               const float *x, const float *scale,
                               const float *bias, const float *mean,
                               const float *invStd, float *dx, float *dscale,
                               float *dbias, int64_t n, int64_t c,
                               int64_t spatial) {
  std::vector<float> factor = normalizingFactors(scale, invStd, c);
  batchNormBackward(ctx, ExactSlices{x, mean, invStd},
                    ReluMaskedGrad{dy, x, mean, bias, factor, spatial}, scale,
                    invStd, dx, dscale, dbias, n, c, spatial);
}

void blpa_batch_norm_apply(blpa_context *, const float *x, const float *scale,
                           const float *bias, const float *mean,
                           const float *invStd, float *y, int64_t n, int64_t c,
                           int64_t spatial, int64_t relu) {
  normalize(x, y, n, c, spatial, mean, normalizingFactors(scale, invStd, c),
            bias, relu != 0);
}

void blpa_batch_norm_train_encode(blpa_context *ctx, const float *x,
                                  const float *scale, const float *bias,
                                  float *y, float *mean, float *invStd,
                                  uint8_t *codes, int64_t n, int64_t c,
                                  int64_t spatial, double epsilon,
                                  int64_t bits) {
  trainEncode(ctx, "blpa_batch_norm_train_encode", /*relu=*/false, x, scale,
              bias, y, mean, invStd, codes, n, c, spatial, epsilon, bits);
}

void blpa_batch_norm_relu_train_encode(blpa_context *ctx, const float *x,
                                       const float *scale, const float *bias,
                                       float *y, float *mean, float *invStd,
                                       uint8_t *codes, int64_t n, int64_t c,
                                       int64_t spatial, double epsilon,
                                       int64_t bits) {
  trainEncode(ctx, "blpa_batch_norm_relu_train_encode", /*relu=*/true, x, scale,
              bias, y, mean, invStd, codes, n, c, spatial, epsilon, bits);
}

void blpa_batch_norm_grad_decode(blpa_context *ctx, const float *dy,
                                 const uint8_t *codes, const float *scale,
                                 const float *bias, const float *invStd,
                                 float *dx, float *dscale, float *dbias,
                                 int64_t n, int64_t c, int64_t spatial,
                                 int64_t bits) {
  gradDecode(ctx, "blpa_batch_norm_grad_decode", /*relu=*/false, dy, codes,
             scale, bias, invStd, dx, dscale, dbias, n, c, spatial, bits);
}

void blpa_batch_norm_relu_grad_decode(blpa_context *ctx, const float *dy,
                                      const uint8_t *codes, const float *scale,
                                      const float *bias, const float *invStd,
                                      float *dx, float *dscale, float *dbias,
                                      int64_t n, int64_t c, int64_t spatial,
                                      int64_t bits) {
  gradDecode(ctx, "blpa_batch_norm_relu_grad_decode", /*relu=*/true, dy, codes,
             scale, bias, invStd, dx, dscale, dbias, n, c, spatial, bits);
}

void blpa_bn_decode(blpa_context *, const uint8_t *codes, const float *scale,
                    const float *bias, float *y, int64_t n, int64_t c,
                    int64_t spatial, int64_t bits, int64_t relu) {
  withCodeBits("blpa_bn_decode", bits, valueCodeBits, [&](auto width) {
    constexpr int Bits = decltype(width)::value;
    std::vector<BnCode> bn = bnCodes(scale, bias, c, Bits);
    decodeSlices<Bits>(
        n * c * spatial, spatial, codes,
        [&](int64_t slice, int64_t b, int64_t e, const uint8_t *q) {
          BnCode code = bn[slice % c];
          float *out = y + b;
          // q >= shift exactly where y~ > 0 (and for
          // gamma == 0, y~ = beta), so the mask is y~ > 0.
          if (relu)
            for (int64_t j = 0; j < e - b; ++j) {
              float v = code.y(q[j]);
              out[j] = v > 0 ? v : 0.0f;
            }
          else
            for (int64_t j = 0; j < e - b; ++j)
              out[j] = code.y(q[j]);
        });
  });
}

} // extern "C"
