//===- ProbabilityCodes.cu - Log-domain codes of probabilities on the GPU -===//
//
// blpa_probability_encode / blpa_probability_decode of the CPU runtime
// (lib/Runtime/CPU/ProbabilityCodes.cpp) on device pointers, with the row
// math of lib/Runtime/Common/ProbabilityCodes.h. One block per row (grid-
// stride over rows):
//  * the block reduces the row's maximum, smallest positive element and sum
//    (in double) in Packing.cuh's fixed tree;
//  * thread 0 builds the row's level and bound tables in shared memory with
//    the Common functions, so they are the CPU's tables bit for bit (float
//    products only: nothing for nvcc to contract);
//  * every thread then writes whole bytes of the row's codes (rows start on
//    byte boundaries, so each byte has one writer and the unused tail bits
//    are written as 0) and sums the levels of its codes, reduced in the
//    fixed tree again for the row's scale.
// Maximum and minimum are exact, so the codes and the step are the CPU's
// bit for bit; the sums only differ in their order, so the scale may differ
// in its last bit. Every sum runs in one fixed order, so the results do not
// depend on how the device schedules the threads.
//
//===----------------------------------------------------------------------===//

#include "CudaRuntime.h"
#include "Packing.cuh"

#include "../Common/ProbabilityCodes.h"

using namespace blpa;
using namespace blpa::cuda;

namespace {

/// What a row's codes need of the row: thread 0's totals of its block.
struct RowTotals {
  float max, minPositive;
  double sum;
};

/// The maximum, the smallest positive element (both 0 for a row without a
/// positive element) and the sum of the positive elements of the block's
/// row, in thread 0. As on the CPU, only elements > 0 count (NaN and zeros
/// do not).
__device__ RowTotals rowTotals(const float *row, int64_t length) {
  float2 range = FloatRange::identity(); // (min positive, max)
  double sum = 0;
  for (int64_t j = threadIdx.x; j < length; j += blockDim.x) {
    float v = row[j];
    if (v > 0) {
      range = FloatRange::combine(range, make_float2(v, v));
      sum += double(v);
    }
  }
  // Two accumulators, two shared arrays: the reductions do not overlap.
  range = blockReduce<FloatRange>(range);
  sum = blockReduce<PairSum>(make_double2(sum, 0.0)).x;
  bool any = range.y > 0;
  return {any ? range.y : 0.0f, any ? range.x : 0.0f, sum};
}

/// Packs the codes of the row's elements [b * perByte, (b + 1) * perByte)
/// (those before `length`) into byte b and adds their levels to levelSum.
template <int Bits>
__device__ uint8_t encodeByte(const float *row, int64_t length, int64_t b,
                              const float *level, const float *bound,
                              double &levelSum) {
  constexpr int perByte = 8 / Bits;
  uint32_t byte = 0;
  for (int k = 0; k < perByte; ++k) {
    int64_t j = b * perByte + k;
    if (j < length) {
      uint32_t q = probabilityCode<Bits>(row[j], bound);
      byte |= q << (k * Bits);
      levelSum += double(level[q]);
    }
  }
  return uint8_t(byte);
}

/// One row per block and iteration; params[2r] = scale, params[2r + 1] =
/// step. blockReduce needs reduceThreads threads.
template <int Bits>
__global__ void __launch_bounds__(reduceThreads)
    probabilityEncodeKernel(const float *x, uint8_t *codes, float *params,
                            int64_t rows, int64_t length) {
  constexpr int levels = (1 << Bits) - 1;
  __shared__ float level[levels + 1], bound[levels + 1];
  const int64_t rowBytes = probabilityRowBytes(length, Bits);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float *row = x + r * length;
    RowTotals totals = rowTotals(row, length);
    float step = 0.0f;
    if (threadIdx.x == 0) {
      step = probabilityStep(totals.max, totals.minPositive, Bits);
      probabilityLevelTable(step, Bits, level);
      probabilityBoundTable(totals.max, step, Bits, level, bound);
    }
    __syncthreads();
    double levelSum = 0;
    uint8_t *out = codes + r * rowBytes;
    for (int64_t b = threadIdx.x; b < rowBytes; b += blockDim.x)
      out[b] = encodeByte<Bits>(row, length, b, level, bound, levelSum);
    levelSum = blockReduce<PairSum>(make_double2(levelSum, 0.0)).x;
    if (threadIdx.x == 0) {
      params[2 * r] = probabilityScale(totals.sum, levelSum);
      params[2 * r + 1] = step;
    }
    // The next row's thread 0 rewrites the tables, and its reductions the
    // shared totals warp 0 may still be reading.
    __syncthreads();
  }
}

/// One row per block and iteration: thread 0 scales the row's level table
/// (the CPU's products, in its order), then every thread looks its
/// elements' codes up.
template <int Bits>
__global__ void __launch_bounds__(blockThreads)
    probabilityDecodeKernel(const uint8_t *codes, const float *params, float *y,
                            int64_t rows, int64_t length) {
  constexpr int levels = (1 << Bits) - 1;
  __shared__ float value[levels + 1];
  const int64_t rowBytes = probabilityRowBytes(length, Bits);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    if (threadIdx.x == 0)
      probabilityValueTable(params + 2 * r, Bits, value);
    __syncthreads();
    const uint8_t *in = codes + r * rowBytes;
    float *out = y + r * length;
    for (int64_t j = threadIdx.x; j < length; j += blockDim.x)
      out[j] = value[codeAt<Bits>(in, j)];
    // The next row's thread 0 rewrites the table.
    __syncthreads();
  }
}

} // namespace

extern "C" {

void blpa_probability_encode(blpa_context *ctx, const float *x, uint8_t *codes,
                             float *params, int64_t rows, int64_t length,
                             int64_t bits) {
  const char *kernel = "blpa_probability_encode";
  CudaRuntime &rt = runtimeOf(ctx);
  withCodeBits<valueCodeBits>(kernel, bits, [&](auto width) {
    if (rows <= 0)
      return;
    // decltype, not a constexpr local: the emulation build's rewritten
    // launch names the width inside a lambda of its own.
    probabilityEncodeKernel<decltype(width)::value>
        <<<gridFor(rows, 1), reduceThreads, 0, rt.stream>>>(x, codes, params,
                                                            rows, length);
    checkLaunch(kernel);
  });
}

void blpa_probability_decode(blpa_context *ctx, const uint8_t *codes,
                             const float *params, float *y, int64_t rows,
                             int64_t length, int64_t bits) {
  const char *kernel = "blpa_probability_decode";
  CudaRuntime &rt = runtimeOf(ctx);
  withCodeBits<valueCodeBits>(kernel, bits, [&](auto width) {
    if (rows <= 0 || length <= 0)
      return;
    probabilityDecodeKernel<decltype(width)::value>
        <<<gridFor(rows, 1), blockThreads, 0, rt.stream>>>(codes, params, y,
                                                           rows, length);
    checkLaunch(kernel);
  });
}

} // extern "C"
