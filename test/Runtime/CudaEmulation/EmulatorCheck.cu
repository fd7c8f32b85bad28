//===- EmulatorCheck.cu - The emulation's own semantics -------------------===//
//
// Kernels whose results follow from the CUDA programming guide, for what
// the runtime's kernels use of CUDA and what they may come to use: every
// shuffle at full and partial widths, votes, shared memory behind
// barriers, atomics, the built-in indices of 3-D launches; and kernels the
// emulation must refuse (divergent barriers, a shuffle whose lanes have
// exited, launches the device rejects). Built like the runtime's kernel
// files: launches rewritten by rewrite_launches.py, CUDA from this
// folder's cuda_runtime.h.
//
//===----------------------------------------------------------------------===//

#include "Emulator.h"

#include <cuda_runtime.h>

#include <string>
#include <vector>

namespace {

constexpr int checkThreads = 64;

/// Each thread's shuffles of v = 100 + threadIdx.x within groups of `width`.
__global__ void shuffleKernel(int *out, int width) {
  int v = 100 + int(threadIdx.x), *o = out + 4 * threadIdx.x;
  o[0] = __shfl_sync(0xffffffffu, v, 3, width);
  o[1] = __shfl_up_sync(0xffffffffu, v, 2, width);
  o[2] = __shfl_down_sync(0xffffffffu, v, 2, width);
  o[3] = __shfl_xor_sync(0xffffffffu, v, 5, width);
}

/// The guide's definitions, lane by lane, of shuffleKernel's results.
std::vector<int> expectedShuffles(int width) {
  std::vector<int> out;
  for (int t = 0; t < checkThreads; ++t) {
    int warp = t / 32 * 32, lane = t % 32, group = lane / width * width;
    auto v = [&](int l) { return 100 + warp + l; };
    out.push_back(v(group + 3 % width));
    out.push_back(lane - group >= 2 ? v(lane - 2) : v(lane));
    out.push_back(lane - group + 2 < width ? v(lane + 2) : v(lane));
    out.push_back((lane ^ 5) < group + width ? v(lane ^ 5) : v(lane));
  }
  return out;
}

__global__ void voteKernel(unsigned *out) {
  unsigned lane = threadIdx.x % 32;
  __syncwarp();
  out[3 * threadIdx.x] = __ballot_sync(0xffffffffu, lane % 3 == 0);
  out[3 * threadIdx.x + 1] = __any_sync(0xffffffffu, lane == 31);
  out[3 * threadIdx.x + 2] = __all_sync(0xffffffffu, lane < 31);
}

/// A tree sum of the block's thread indices in shared memory.
__global__ void sharedSumKernel(int *out) {
  __shared__ int partial[checkThreads];
  partial[threadIdx.x] = int(threadIdx.x);
  __syncthreads();
  for (int half = checkThreads / 2; half > 0; half /= 2) {
    if (int(threadIdx.x) < half)
      partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0)
    out[blockIdx.x] = partial[0];
}

__global__ void atomicKernel(int *counter, int *first, float *sum,
                             unsigned *largest) {
  atomicAdd(counter, 1);
  atomicCAS(first, -1, int(blockIdx.x * blockDim.x + threadIdx.x));
  atomicAdd(sum, 0.5f);
  atomicMax(largest, threadIdx.x * 7 % 60);
}

/// Every thread's flat index from the built-ins of a 3-D launch.
__global__ void indexKernel(int *out) {
  int block =
      int((blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x);
  int thread =
      int((threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x);
  int threads = int(blockDim.x * blockDim.y * blockDim.z);
  out[block * threads + thread] = block * threads + thread;
}

__global__ void divergentBarrierKernel() {
  if (threadIdx.x % 32 == 0)
    __syncthreads();
  else
    __syncwarp();
}

__global__ void exitedLanesKernel(int *out) {
  if (threadIdx.x % 32 >= 16)
    return;
  out[threadIdx.x] = __shfl_down_sync(0xffffffffu, int(threadIdx.x), 1);
}

__global__ void emptyKernel() {}

using Checks = std::vector<std::pair<std::string, std::string>>;

/// "" when got == want, else what differs.
template <typename T>
std::string compare(const std::vector<T> &got, const std::vector<T> &want) {
  for (size_t i = 0; i < want.size(); ++i)
    if (got[i] != want[i])
      return "element " + std::to_string(i) + " is " + std::to_string(got[i]) +
             ", expected " + std::to_string(want[i]);
  return "";
}

/// "" when `launch` throws an emu::Failure that mentions `what`.
template <typename F> std::string refuses(const char *what, F &&launch) {
  try {
    launch();
  } catch (const emu::Failure &e) {
    std::string message = e.what();
    return message.find(what) != std::string::npos
               ? ""
               : "refused for another reason: " + message;
  }
  return std::string("not refused (expected: ") + what + ")";
}

void checkShuffles(Checks &checks) {
  for (int width : {32, 8, 2}) {
    std::vector<int> out(4 * checkThreads);
    shuffleKernel<<<1, checkThreads>>>(out.data(), width);
    checks.push_back({"shuffles_width_" + std::to_string(width),
                      compare(out, expectedShuffles(width))});
  }
}

void checkVotes(Checks &checks) {
  std::vector<unsigned> out(3 * checkThreads), want;
  voteKernel<<<1, checkThreads>>>(out.data());
  for (int t = 0; t < checkThreads; ++t)
    want.insert(want.end(), {0x49249249u, 1u, 0u});
  checks.push_back({"votes", compare(out, want)});
}

void checkSharedMemory(Checks &checks) {
  std::vector<int> out(3);
  sharedSumKernel<<<3, checkThreads>>>(out.data());
  int sum = checkThreads * (checkThreads - 1) / 2;
  checks.push_back({"shared_memory_sum", compare(out, {sum, sum, sum})});
}

void checkAtomics(Checks &checks) {
  int counter = 0, first = -1;
  float sum = 0;
  unsigned largest = 0;
  atomicKernel<<<4, checkThreads>>>(&counter, &first, &sum, &largest);
  std::string error =
      compare<int>({counter, first >= 0, int(sum), int(largest)},
                   {4 * checkThreads, 1, 2 * checkThreads, 59});
  checks.push_back({"atomics", error});
}

void checkIndices(Checks &checks) {
  dim3 grid(3, 2, 2), block(4, 2, 3);
  std::vector<int> out(12 * 24, -1), want(out.size());
  for (size_t i = 0; i < want.size(); ++i)
    want[i] = int(i);
  indexKernel<<<grid, block>>>(out.data());
  checks.push_back({"indices_3d", compare(out, want)});
}

void checkRefusals(Checks &checks) {
  std::vector<int> out(checkThreads);
  checks.push_back({"refuses_divergent_barriers", refuses("deadlock", [] {
                      divergentBarrierKernel<<<1, checkThreads>>>();
                    })});
  checks.push_back({"refuses_shuffle_of_exited_lanes", refuses("exited", [&] {
                      exitedLanesKernel<<<1, checkThreads>>>(out.data());
                    })});
  checks.push_back({"refuses_empty_grid", refuses("invalid launch", [] {
                      emptyKernel<<<0, checkThreads>>>();
                    })});
  checks.push_back({"refuses_oversized_block", refuses("invalid launch", [] {
                      emptyKernel<<<1, 2048>>>();
                    })});
}

} // namespace

namespace emu {

std::vector<std::pair<std::string, std::string>> selfCheck() {
  Checks checks;
  for (Order order : {Order::forward, Order::reverse}) {
    setOrder(order);
    Checks run;
    checkShuffles(run);
    checkVotes(run);
    checkSharedMemory(run);
    checkAtomics(run);
    checkIndices(run);
    checkRefusals(run);
    for (auto &[name, error] : run)
      checks.push_back(
          {name + (order == Order::forward ? "" : "/reverse"), error});
  }
  setOrder(Order::forward);
  return checks;
}

} // namespace emu
