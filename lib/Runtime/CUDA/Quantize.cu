//===- Quantize.cu - Generic per-channel activation codes on the GPU ------===//
//
// blpa_quantize / blpa_dequantize of the CPU runtime (lib/Runtime/CPU/
// Quantize.cpp) on device pointers. Each channel (dim 1) gets one (lo, step)
// pair from its range over the batch, reduced per (channel, part) block and
// combined per channel (Packing.cuh); min and max are exact, so the result
// does not depend on the partition. The codes are then written in one
// element pass, the code math being Packing.cuh's copies of the CPU's.
// Also the region codes of piecewise activations (blpa_activation_region)
// and the gradient read from them, element passes over the formulas of
// lib/Runtime/Common/ActivationMath.h that the CPU runtime uses too.
//
//===----------------------------------------------------------------------===//

#include "CudaRuntime.h"
#include "Packing.cuh"

#include "../Common/ActivationMath.h"

using namespace blpa;
using namespace blpa::cuda;

namespace {

// scratchFor slots of this file.
constexpr unsigned rangeSlot = 25; // reduction partials
constexpr unsigned stepSlot = 26;  // ChannelStep per channel

/// Each element's value as its own (min, max).
struct RangeTerms {
  const float *x;
  struct None {};
  __device__ None channel(int64_t) const { return {}; }
  __device__ float2 term(None, int64_t i) const {
    float v = x[i];
    return make_float2(v, v);
  }
};

/// A channel's levels from its range, to params (lo then step) and, with
/// 1 / step, to scratch for the code pass.
template <int Scheme> struct StepFinish {
  float *params;
  ChannelStep *steps;
  int64_t c;
  int32_t maxCode;

  __device__ void operator()(int64_t ch, float2 range) const {
    float lo = Scheme == BLPA_SCHEME_NONNEG ? 0.0f : range.x;
    ChannelStep s = makeChannelStep(lo, range.y, maxCode);
    steps[ch] = s;
    params[ch] = s.lo;
    params[c + ch] = s.step;
  }
};

template <int Scheme> struct ValueCodeBody {
  const float *x;
  const ChannelStep *steps;
  float maxCode;

  __device__ uint32_t operator()(int64_t i, int64_t ch) const {
    if constexpr (Scheme == BLPA_SCHEME_AFFINE)
      return affineCode(x[i], steps[ch], maxCode);
    else
      return nonnegCode(x[i], steps[ch], maxCode);
  }
};

struct MaskCodeBody {
  const float *x;
  __device__ uint32_t operator()(int64_t i, int64_t) const {
    return maskCode(x[i]);
  }
};

template <int Scheme, int Bits> struct ValueBody {
  const uint8_t *packed;
  const float *params;
  int64_t c;
  float *y;

  __device__ uint32_t operator()(int64_t i, int64_t ch) const {
    uint32_t q = codeAt<Bits>(packed, i);
    if constexpr (Scheme == BLPA_SCHEME_AFFINE)
      y[i] = affineValue(q, params[ch], params[c + ch]);
    else
      y[i] = nonnegValue(q, params[c + ch]);
    return 0;
  }
};

struct MaskBody {
  const uint8_t *packed;
  float *y;
  __device__ uint32_t operator()(int64_t i, int64_t) const {
    y[i] = maskValue(codeAt<1>(packed, i));
    return 0;
  }
};

/// Calls f(std::integral_constant<int, scheme>()) for AFFINE and NONNEG,
/// g() for MASK; fails for any other scheme.
template <typename Values, typename Mask>
void withScheme(const char *kernel, int64_t scheme, Values &&f, Mask &&g) {
  switch (scheme) {
  case BLPA_SCHEME_AFFINE:
    return f(std::integral_constant<int, BLPA_SCHEME_AFFINE>());
  case BLPA_SCHEME_NONNEG:
    return f(std::integral_constant<int, BLPA_SCHEME_NONNEG>());
  case BLPA_SCHEME_MASK:
    return g();
  }
  failf("%s: unknown quantization scheme %lld", kernel, (long long)scheme);
}

/// Each element's region code; bounds given at run time are read from
/// device memory by the kernel, so that a replayed graph sees the current
/// ones.
template <int Kind> struct RegionCodeBody {
  const float *x;
  ActivationParams params;
  const float *alphaAt, *betaAt;

  __device__ uint32_t operator()(int64_t i, int64_t) const {
    return activationRegion<Kind>(
        x[i], loadActivationParams(params, alphaAt, betaAt));
  }
};

template <int Kind, int Bits> struct RegionGradBody {
  const float *dy;
  const uint8_t *packed;
  const float *values;
  float *dx;
  ActivationParams params;

  __device__ uint32_t operator()(int64_t i, int64_t) const {
    float v = Kind == BLPA_ACT_HARD_SWISH ? values[i] : 0.0f;
    dx[i] = activationGradInRegion<Kind>(dy[i], codeAt<Bits>(packed, i), v,
                                         params);
    return 0;
  }
};

/// Calls f(kind constant, width constant) for a piecewise activation kind
/// and the width of its region codes; fails for any other kind or width.
template <typename F>
void withRegionKind(const char *kernel, int64_t kind, int64_t bits, F &&f) {
  if (!activationRegionBits(kind))
    failf("%s: activation kind %lld has no region codes", kernel,
          (long long)kind);
  withActivationKind(kind, [&](auto k) {
    constexpr int Kind = decltype(k)::value;
    constexpr unsigned allowed = 1u << activationRegionBits(Kind);
    if constexpr (activationRegionBits(Kind) != 0)
      withCodeBits<allowed>(kernel, bits, [&](auto width) { f(k, width); });
  });
}

} // namespace

extern "C" {

void blpa_activation_region(blpa_context *ctx, const float *x, uint8_t *codes,
                            int64_t numel, int64_t kind, double alpha,
                            double beta, const float *alphaAt,
                            const float *betaAt, int64_t bits) {
  const char *kernel = "blpa_activation_region";
  CudaRuntime &rt = runtimeOf(ctx);
  ActivationParams p{float(alpha), float(beta)};
  withRegionKind(kernel, kind, bits, [&](auto k, auto width) {
    constexpr int Kind = decltype(k)::value;
    launchElementPass<decltype(width)::value>(
        rt, kernel, 1, 1, numel, RegionCodeBody<Kind>{x, p, alphaAt, betaAt},
        codes);
  });
}

void blpa_activation_grad_region(blpa_context *ctx, const float *dy,
                                 const uint8_t *codes, const float *values,
                                 float *dx, int64_t numel, int64_t kind,
                                 double alpha, double beta, int64_t bits) {
  const char *kernel = "blpa_activation_grad_region";
  if (kind == BLPA_ACT_HARD_SWISH && !values)
    failf("%s: hard swish reads the values of its middle piece", kernel);
  CudaRuntime &rt = runtimeOf(ctx);
  ActivationParams p{float(alpha), float(beta)};
  withRegionKind(kernel, kind, bits, [&](auto k, auto width) {
    constexpr int Kind = decltype(k)::value;
    constexpr int Bits = decltype(width)::value;
    launchElementPass<0>(rt, kernel, 1, 1, numel,
                         RegionGradBody<Kind, Bits>{dy, codes, values, dx, p});
  });
}

void blpa_quantize(blpa_context *ctx, const float *x, uint8_t *codes,
                   float *params, int64_t n, int64_t c, int64_t spatial,
                   int64_t bits, int64_t scheme) {
  const char *kernel = "blpa_quantize";
  CudaRuntime &rt = runtimeOf(ctx);
  auto values = [&](auto schemeConstant) {
    constexpr int Scheme = decltype(schemeConstant)::value;
    withCodeBits<valueCodeBits>(kernel, bits, [&](auto width) {
      constexpr int Bits = decltype(width)::value;
      constexpr int32_t maxCode = (1 << Bits) - 1;
      auto *steps = static_cast<ChannelStep *>(
          scratchFor(rt, stepSlot, sizeof(ChannelStep) * size_t(c)));
      reduceChannels<FloatRange>(rt, kernel, rangeSlot, n, c, spatial,
                                 RangeTerms{x},
                                 StepFinish<Scheme>{params, steps, c, maxCode});
      launchElementPass<Bits>(rt, kernel, n, c, spatial,
                              ValueCodeBody<Scheme>{x, steps, float(maxCode)},
                              codes);
    });
  };
  auto mask = [&] {
    withCodeBits<1u << 1>(kernel, bits, [&](auto) {
      launchElementPass<1>(rt, kernel, n, c, spatial, MaskCodeBody{x}, codes);
    });
  };
  withScheme(kernel, scheme, values, mask);
}

void blpa_dequantize(blpa_context *ctx, const uint8_t *codes,
                     const float *params, float *y, int64_t n, int64_t c,
                     int64_t spatial, int64_t bits, int64_t scheme) {
  const char *kernel = "blpa_dequantize";
  CudaRuntime &rt = runtimeOf(ctx);
  auto values = [&](auto schemeConstant) {
    constexpr int Scheme = decltype(schemeConstant)::value;
    withCodeBits<valueCodeBits>(kernel, bits, [&](auto width) {
      constexpr int Bits = decltype(width)::value;
      launchElementPass<0>(rt, kernel, n, c, spatial,
                           ValueBody<Scheme, Bits>{codes, params, c, y});
    });
  };
  auto mask = [&] {
    withCodeBits<1u << 1>(kernel, bits, [&](auto) {
      launchElementPass<0>(rt, kernel, n, c, spatial, MaskBody{codes, y});
    });
  };
  withScheme(kernel, scheme, values, mask);
}

} // extern "C"
