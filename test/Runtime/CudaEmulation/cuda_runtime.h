//===- cuda_runtime.h - The CUDA of the kernel emulation --------*- C++ -*-===//
//
// Stands in for the CUDA toolkit's header when blpa-cuda-emulation-test
// compiles the CUDA runtime's kernel files (lib/Runtime/CUDA/*.cu, launches
// rewritten by rewrite_launches.py) with the host compiler. It gives the
// real CudaRuntime.h the types it names and gives kernel code what nvcc
// gives it: the qualifiers, the built-in indices, vector types, barriers,
// warp shuffles and votes, atomics and the explicitly rounded arithmetic,
// on top of the block scheduler of Emulator.cpp; and, of the runtime API's
// functions, the memory copies the kernel files call, on host memory.
//
// The emulation is exact where the device is specified exactly (IEEE
// float and double operations, rounding intrinsics, integer arithmetic) and
// runs the host's libm where the device has its own math library (expf, log
// and so on are within a few ulps of it, not bitwise).
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_CUDA_EMULATION_CUDA_RUNTIME_H
#define BLPA_CUDA_EMULATION_CUDA_RUNTIME_H

#include <math.h> // also puts std::isfinite and friends where device code
                  // finds them, in the global namespace
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

// Code shared between host and device takes its device branch, so that the
// emulation runs what the GPU runs (e.g. Packing.cuh's __fadd_rn).
#define __CUDA_ARCH__ 900

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __constant__
// One copy, which the blocks (run one after the other) take over in turn,
// as consecutive blocks on an SM do: what a block reads before it writes is
// an earlier block's.
#define __shared__ static

//===----------------------------------------------------------------------===//
// Runtime API types (what CudaRuntime.h names)
//===----------------------------------------------------------------------===//

typedef enum cudaError {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorInvalidPitchValue = 12,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorUnknown = 999
} cudaError_t;
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4
};
typedef struct CUstream_st *cudaStream_t;
typedef struct CUevent_st *cudaEvent_t;
typedef struct CUgraph_st *cudaGraph_t;
typedef struct CUgraphExec_st *cudaGraphExec_t;

//===----------------------------------------------------------------------===//
// Built-in and vector types
//===----------------------------------------------------------------------===//

struct uint3 {
  unsigned x, y, z;
};

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x = 1, unsigned y = 1, unsigned z = 1)
      : x(x), y(y), z(z) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};

// The device's alignments: kernels reinterpret 16-byte aligned memory as
// float4.
struct alignas(8) float2 {
  float x, y;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(16) double2 {
  double x, y;
};
struct alignas(8) int2 {
  int x, y;
};

inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) {
  return {x, y, z, w};
}
inline double2 make_double2(double x, double y) { return {x, y}; }
inline int2 make_int2(int x, int y) { return {x, y}; }

/// The running thread's indices and its launch's shape; the scheduler sets
/// them before it resumes a thread.
extern thread_local uint3 threadIdx;
extern thread_local uint3 blockIdx;
extern thread_local dim3 blockDim;
extern thread_local dim3 gridDim;
constexpr int warpSize = 32;

using std::max;
using std::min;

//===----------------------------------------------------------------------===//
// The scheduler (Emulator.cpp)
//===----------------------------------------------------------------------===//

namespace emu {

/// Waits until every thread of the block that has not exited arrives.
void syncThreads();

/// One warp-synchronous round: the calling lane's `value` in, the 32 lanes'
/// values out (indexed by lane), after every lane of the warp arrived with
/// the same full `mask`. The values stay valid until the lane's next round.
const uint64_t *warpExchange(unsigned mask, uint64_t value);

/// The calling thread's lane.
unsigned laneId();

/// Runs `body(closure)` on every thread of `grid` x `block`; returns when
/// all have finished. `kernel` and `site` name the launch in errors.
void launch(const char *kernel, const char *site, dim3 grid, dim3 block,
            size_t dynamicShared, void (*body)(const void *),
            const void *closure);

template <typename T> uint64_t toBits(T value) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value,
                "shuffles move 8 bytes at most");
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  return bits;
}

template <typename T> T fromBits(uint64_t bits) {
  T value;
  std::memcpy(&value, &bits, sizeof(T));
  return value;
}

/// The shuffle of `value` where lane l reads lane source(l), or keeps its
/// own value when source(l) is outside its group of `width` lanes.
template <typename T, typename Source>
T shuffle(unsigned mask, T value, int width, Source &&source) {
  const uint64_t *lanes = warpExchange(mask, toBits(value));
  int lane = int(laneId());
  int first = lane / width * width, from = source(lane);
  if (from < first || from >= first + width)
    return value;
  return fromBits<T>(lanes[from]);
}

/// A kernel launch as nvcc runs it: the arguments evaluated once on the
/// host and every thread calling the kernel with its own copy of them.
/// rewrite_launches.py turns `k<<<grid, block, shared, stream>>>(args)`
/// into a call of this.
template <typename Kernel, typename... Args>
void launchKernel(const char *kernel, const char *site, dim3 grid, dim3 block,
                  size_t dynamicShared, cudaStream_t, Kernel call,
                  Args &&...args) {
  std::tuple<std::decay_t<Args>...> params(std::forward<Args>(args)...);
  auto thread = [&] { std::apply(call, params); };
  launch(
      kernel, site, grid, block, dynamicShared,
      [](const void *closure) {
        (*static_cast<const decltype(thread) *>(closure))();
      },
      &thread);
}

} // namespace emu

//===----------------------------------------------------------------------===//
// Synchronization, shuffles and votes
//===----------------------------------------------------------------------===//

inline void __syncthreads() { emu::syncThreads(); }
// Every store is visible to every thread at once: fences order nothing more.
inline void __threadfence() {}
inline void __threadfence_block() {}
template <typename T> T __ldg(const T *address) { return *address; }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  emu::warpExchange(mask, 0);
}

template <typename T>
T __shfl_sync(unsigned mask, T value, int srcLane, int width = warpSize) {
  return emu::shuffle(mask, value, width, [&](int lane) {
    return lane / width * width + (srcLane & (width - 1));
  });
}
template <typename T>
T __shfl_up_sync(unsigned mask, T value, unsigned delta, int width = warpSize) {
  return emu::shuffle(mask, value, width,
                      [&](int lane) { return lane - int(delta); });
}
template <typename T>
T __shfl_down_sync(unsigned mask, T value, unsigned delta,
                   int width = warpSize) {
  return emu::shuffle(mask, value, width,
                      [&](int lane) { return lane + int(delta); });
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T value, int laneMask, int width = warpSize) {
  // Lanes may read earlier groups of `width` but not later ones.
  return emu::shuffle(mask, value, warpSize, [&](int lane) {
    int from = lane ^ laneMask;
    return from >= lane / width * width + width ? lane : from;
  });
}

inline unsigned __ballot_sync(unsigned mask, int predicate) {
  const uint64_t *lanes = emu::warpExchange(mask, predicate != 0);
  unsigned ballot = 0;
  for (int lane = 0; lane < warpSize; ++lane)
    ballot |= unsigned(lanes[lane] != 0) << lane;
  return ballot;
}
inline int __any_sync(unsigned mask, int predicate) {
  return __ballot_sync(mask, predicate) != 0;
}
inline int __all_sync(unsigned mask, int predicate) {
  return __ballot_sync(mask, predicate) == mask;
}

//===----------------------------------------------------------------------===//
// Atomics: threads switch only at barriers and warp operations, so a plain
// read-modify-write is atomic
//===----------------------------------------------------------------------===//

template <typename T> T atomicCAS(T *address, T compare, T value) {
  T old = *address;
  if (old == compare)
    *address = value;
  return old;
}
template <typename T> T atomicExch(T *address, T value) {
  T old = *address;
  *address = value;
  return old;
}
template <typename T> T atomicAdd(T *address, T value) {
  return atomicExch(address, T(*address + value));
}
template <typename T> T atomicMax(T *address, T value) {
  return atomicExch(address, max(*address, value));
}
template <typename T> T atomicMin(T *address, T value) {
  return atomicExch(address, min(*address, value));
}

//===----------------------------------------------------------------------===//
// Explicitly rounded arithmetic: round to nearest even, never contracted
// (the emulation is compiled with -ffp-contract=off)
//===----------------------------------------------------------------------===//

inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __drcp_rn(double a) { return 1.0 / a; }
inline double __dsqrt_rn(double a) { return std::sqrt(a); }
inline double __fma_rn(double a, double b, double c) {
  return std::fma(a, b, c);
}

//===----------------------------------------------------------------------===//
// Integer intrinsics
//===----------------------------------------------------------------------===//

inline unsigned long long __umul64hi(unsigned long long a,
                                     unsigned long long b) {
  return (unsigned long long)((unsigned __int128)a * b >> 64);
}
inline long long __mul64hi(long long a, long long b) {
  return (long long)((__int128)a * b >> 64);
}
inline unsigned __umulhi(unsigned a, unsigned b) {
  return unsigned((unsigned long long)a * b >> 32);
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x ? __builtin_clz(unsigned(x)) : 32; }
inline int __clzll(long long x) {
  return x ? __builtin_clzll((unsigned long long)x) : 64;
}
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
  x = (x >> 1 & 0x55555555u) | (x & 0x55555555u) << 1;
  x = (x >> 2 & 0x33333333u) | (x & 0x33333333u) << 2;
  x = (x >> 4 & 0x0f0f0f0fu) | (x & 0x0f0f0f0fu) << 4;
  return __builtin_bswap32(x);
}
inline int __float_as_int(float x) {
  return emu::fromBits<int>(emu::toBits(x));
}
inline float __int_as_float(int x) {
  return emu::fromBits<float>(emu::toBits(x));
}
inline long long __double_as_longlong(double x) {
  return emu::fromBits<long long>(emu::toBits(x));
}
inline double __longlong_as_double(long long x) {
  return emu::fromBits<double>(emu::toBits(x));
}

//===----------------------------------------------------------------------===//
// Runtime API memory copies, on host memory. The emulation runs every
// stream's work at once, so the asynchronous copies are done on return.
//===----------------------------------------------------------------------===//

namespace emu {
/// The device's largest pitch of a 2-D copy (cudaDevAttrMaxPitch: 2^31 - 1
/// bytes on the devices the runtime targets).
constexpr size_t maxPitch = 2147483647;
} // namespace emu

/// `height` rows of `width` bytes from src, rows `spitch` bytes apart, to
/// dst, rows `dpitch` bytes apart; refuses what the toolkit's refuses: a
/// pitch narrower than a row or above the device's limit, an unknown kind.
inline cudaError_t cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src,
                                     size_t spitch, size_t width, size_t height,
                                     cudaMemcpyKind kind,
                                     cudaStream_t = nullptr) {
  if (width > dpitch || width > spitch || dpitch > emu::maxPitch ||
      spitch > emu::maxPitch)
    return cudaErrorInvalidPitchValue;
  if (unsigned(kind) > unsigned(cudaMemcpyDefault))
    return cudaErrorInvalidMemcpyDirection;
  if (width && height && (!dst || !src))
    return cudaErrorInvalidValue;
  for (size_t row = 0; row < height; ++row)
    std::memcpy(static_cast<char *>(dst) + row * dpitch,
                static_cast<const char *>(src) + row * spitch, width);
  return cudaSuccess;
}

inline cudaError_t cudaMemsetAsync(void *dst, int value, size_t count,
                                   cudaStream_t = nullptr) {
  if (count && !dst)
    return cudaErrorInvalidValue;
  std::memset(dst, value, count);
  return cudaSuccess;
}

inline cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count,
                                   cudaMemcpyKind kind,
                                   cudaStream_t = nullptr) {
  if (unsigned(kind) > unsigned(cudaMemcpyDefault))
    return cudaErrorInvalidMemcpyDirection;
  if (count && (!dst || !src))
    return cudaErrorInvalidValue;
  std::memcpy(dst, src, count);
  return cudaSuccess;
}

#endif // BLPA_CUDA_EMULATION_CUDA_RUNTIME_H
