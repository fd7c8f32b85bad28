//===- Warp.cuh - Warp-level reductions and rows by warp ---------*- CUDA
//-*-===//
//
// Shared by the kernels that give each row of a matrix one warp (the loss,
// softmax, layer norm): butterfly reductions whose every lane gets the same
// bits, and the grid-stride loop over rows by warp.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_CUDA_WARP_CUH
#define BLPA_RUNTIME_CUDA_WARP_CUH

#include <cstdint>

namespace blpa {
namespace cuda {

constexpr int warpLanes = 32;

/// Reductions over a warp whose every lane gets the same bits: at each level
/// of the butterfly a lane and its partner combine the same two values, and
/// addition and fmaxf are commutative.
__device__ inline double warpSum(double v) {
  for (int mask = warpLanes / 2; mask > 0; mask /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, mask);
  return v;
}

__device__ inline float warpMax(float v) {
  for (int mask = warpLanes / 2; mask > 0; mask /= 2)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, mask));
  return v;
}

/// Calls body(row, lane) for every row, one warp per row; the loop is
/// uniform over each warp, as the warp reductions need.
template <typename Body>
__device__ void forEachRowByWarp(int64_t n, Body &&body) {
  int lane = threadIdx.x % warpLanes;
  int64_t warp = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / warpLanes;
  int64_t warps = int64_t(gridDim.x) * blockDim.x / warpLanes;
  for (int64_t i = warp; i < n; i += warps)
    body(i, lane);
}

} // namespace cuda
} // namespace blpa

#endif // BLPA_RUNTIME_CUDA_WARP_CUH
