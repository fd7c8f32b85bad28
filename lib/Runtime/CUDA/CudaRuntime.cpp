//===- CudaRuntime.cpp - Runtime lifetime, memory, steps and errors ------===//
//
// The host side of the CUDA runtime: one stream, one cuDNN and one cuBLAS
// handle bound to it, device memory for everything the plan places, pinned
// staging for copies, and steps recorded as CUDA graphs and replayed.
//
//===----------------------------------------------------------------------===//

#include "CudaRuntime.h"
#include "../Common/Profile.h"

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

using namespace blpa::cuda;

void blpa::cuda::failf(const char *format, ...) {
  char message[1024];
  va_list args;
  va_start(args, format);
  vsnprintf(message, sizeof(message), format, args);
  va_end(args);
  blpa_runtime_fail(message);
  std::abort();
}

void blpa::cuda::check(cudaError_t status, const char *what) {
  if (status != cudaSuccess)
    failf("%s: %s (%s)", what, cudaGetErrorString(status),
          cudaGetErrorName(status));
}

void blpa::cuda::check(cudnnStatus_t status, const char *what) {
  if (status != CUDNN_STATUS_SUCCESS)
    failf("%s: cuDNN %s", what, cudnnGetErrorString(status));
}

void blpa::cuda::check(cublasStatus_t status, const char *what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    failf("%s: cuBLAS %s", what, cublasGetStatusString(status));
}

void blpa::cuda::checkLaunch(const char *kernel) {
  check(cudaGetLastError(), kernel);
}

void *blpa::cuda::scratchFor(CudaRuntime &rt, unsigned slot, size_t bytes) {
  if (slot >= rt.scratch.size())
    rt.scratch.resize(slot + 1, {nullptr, 0});
  auto &[pointer, size] = rt.scratch[slot];
  if (size < bytes) {
    if (pointer)
      check(cudaFree(pointer), "cudaFree"); // synchronizes: no kernel uses it
    size_t rounded = (bytes + 4095) / 4096 * 4096;
    pointer = nullptr;
    check(cudaMalloc(&pointer, rounded), "device scratch");
    size = rounded;
  }
  return pointer;
}

void blpa::cuda::requireDevice() {
  int count = 0;
  cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess || count == 0)
    failf("this executable was compiled with --target cuda but no CUDA GPU "
          "is usable here (%s); run it on a machine with an NVIDIA GPU and "
          "driver, or recompile with --target cpu",
          status != cudaSuccess ? cudaGetErrorString(status) : "no devices");
}

namespace {

/// Grows the pinned staging buffer to at least `bytes`.
void *stagingFor(CudaRuntime &rt, size_t bytes) {
  if (rt.stagingBytes < bytes) {
    if (rt.staging)
      check(cudaFreeHost(rt.staging), "cudaFreeHost");
    rt.staging = nullptr;
    size_t rounded = (bytes + (1 << 20) - 1) >> 20 << 20;
    check(cudaHostAlloc(&rt.staging, rounded, cudaHostAllocDefault),
          "pinned staging buffer");
    rt.stagingBytes = rounded;
  }
  return rt.staging;
}

/// Reports the first error a kernel raised on the device during the step.
void checkDeviceErrors(CudaRuntime &rt) {
  int32_t code = 0;
  check(cudaMemcpyAsync(&code, rt.errorFlag, sizeof(code),
                        cudaMemcpyDeviceToHost, rt.stream),
        "reading the device error flag");
  check(cudaStreamSynchronize(rt.stream), "step");
  if (code == deviceLabelOutOfRange)
    failf("blpa_softmax_cross_entropy: a label is outside [0, classes)");
  if (code == deviceIndexOutOfRange)
    failf("blpa_embedding: a token id is outside the embedding table");
  if (code != deviceOk)
    failf("a kernel raised device error %d", int(code));
}

void destroyRecording(RecordedStep &step) {
  if (step.exec)
    cudaGraphExecDestroy(step.exec);
  step.exec = nullptr;
}

/// Runs the step recorded, recording it first when needed: the first run
/// of a binding set goes straight through (cuDNN chooses its algorithms
/// and nothing is allocated during capture), the second is captured into a
/// graph, every later one replays it.
void runRecorded(CudaRuntime &rt, void (*step)(void *), void *closure,
                 std::vector<const void *> bindings) {
  RecordedStep &recording = rt.recorded[step];
  if (recording.bindings != bindings) {
    destroyRecording(recording);
    recording.bindings = std::move(bindings);
    recording.runs = 0;
  }
  if (recording.runs++ == 0)
    return step(closure);
  if (!recording.exec) {
    check(cudaStreamBeginCapture(rt.stream, cudaStreamCaptureModeThreadLocal),
          "cudaStreamBeginCapture");
    step(closure);
    cudaGraph_t graph = nullptr;
    check(cudaStreamEndCapture(rt.stream, &graph), "recording the step");
    check(cudaGraphInstantiate(&recording.exec, graph, 0),
          "cudaGraphInstantiate");
    check(cudaGraphDestroy(graph), "cudaGraphDestroy");
  }
  check(cudaGraphLaunch(recording.exec, rt.stream), "cudaGraphLaunch");
}

} // namespace

CudaRuntime::CudaRuntime() {
  requireDevice();
  check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking),
        "cudaStreamCreate");
  check(cudnnCreate(&cudnn), "cudnnCreate");
  check(cudnnSetStream(cudnn, stream), "cudnnSetStream");
  check(cublasCreate(&cublas), "cublasCreate");
  check(cublasSetStream(cublas, stream), "cublasSetStream");
  // Pointer-mode host: alpha/beta come from the call. TF32 stays off unless
  // asked for, so results match the CPU target to float32 rounding.
  check(cublasSetMathMode(cublas, CUBLAS_PEDANTIC_MATH), "cublasSetMathMode");
  check(cudaMalloc(&hyper, sizeof(DeviceHyper)), "cudaMalloc");
  check(cudaHostAlloc(&hyperStaging, sizeof(DeviceHyper), cudaHostAllocDefault),
        "cudaHostAlloc");
  check(cudaMalloc(&errorFlag, sizeof(int32_t)), "cudaMalloc");
  check(cudaMemset(errorFlag, 0, sizeof(int32_t)), "cudaMemset");
  check(cudaEventCreate(&stepStart), "cudaEventCreate");
  check(cudaEventCreate(&stepEnd), "cudaEventCreate");
}

CudaRuntime::~CudaRuntime() {
  // Teardown errors are ignored: the process is ending and every result has
  // been downloaded and checked already.
  for (auto &entry : recorded)
    destroyRecording(entry.second);
  plans.clear();
  for (auto &buffer : scratch)
    cudaFree(buffer.first);
  cudaFree(hyper);
  cudaFreeHost(hyperStaging);
  cudaFree(errorFlag);
  cudaEventDestroy(stepStart);
  cudaEventDestroy(stepEnd);
  if (staging)
    cudaFreeHost(staging);
  cublasDestroy(cublas);
  cudnnDestroy(cudnn);
  cudaStreamDestroy(stream);
}

CudaRuntime &blpa::cuda::runtimeOf(blpa_context *ctx) {
  if (!ctx || !ctx->impl)
    failf("kernel called without blpa_runtime_init");
  return *static_cast<CudaRuntime *>(ctx->impl);
}

extern "C" {

const char *blpa_runtime_target(void) { return "cuda"; }

int64_t blpa_runtime_free_bytes(void) {
  requireDevice();
  size_t freeBytes = 0, totalBytes = 0;
  check(cudaMemGetInfo(&freeBytes, &totalBytes), "cudaMemGetInfo");
  return int64_t(freeBytes);
}

void blpa_runtime_init(blpa_context *ctx) {
  if (!ctx)
    failf("blpa_runtime_init: null context");
  ctx->impl = new CudaRuntime();
}

void blpa_runtime_shutdown(blpa_context *ctx) {
  if (!ctx)
    return;
  delete static_cast<CudaRuntime *>(ctx->impl);
  ctx->impl = nullptr;
}

void *blpa_runtime_alloc(blpa_context *ctx, int64_t bytes) {
  CudaRuntime &rt = runtimeOf(ctx);
  // cudaMalloc aligns to at least 256 bytes.
  size_t rounded = size_t(bytes > 0 ? bytes : 1);
  void *pointer = nullptr;
  cudaError_t status = cudaMalloc(&pointer, rounded);
  if (status != cudaSuccess)
    failf("out of GPU memory allocating %lld bytes (%s)", (long long)bytes,
          cudaGetErrorString(status));
  check(cudaMemsetAsync(pointer, 0, rounded, rt.stream), "cudaMemset");
  return pointer;
}

void blpa_runtime_release(blpa_context *, void *pointer) {
  if (pointer)
    cudaFree(pointer);
}

void blpa_runtime_upload(blpa_context *ctx, void *dst, const void *hostSrc,
                         int64_t bytes) {
  if (bytes <= 0)
    return;
  CudaRuntime &rt = runtimeOf(ctx);
  void *pinned = stagingFor(rt, size_t(bytes));
  // The previous upload finished before it returned, so staging is free.
  std::memcpy(pinned, hostSrc, size_t(bytes));
  check(cudaMemcpyAsync(dst, pinned, size_t(bytes), cudaMemcpyHostToDevice,
                        rt.stream),
        "upload");
  check(cudaStreamSynchronize(rt.stream), "upload");
}

void blpa_runtime_download(blpa_context *ctx, void *hostDst, const void *src,
                           int64_t bytes) {
  if (bytes <= 0)
    return;
  CudaRuntime &rt = runtimeOf(ctx);
  void *pinned = stagingFor(rt, size_t(bytes));
  check(cudaMemcpyAsync(pinned, src, size_t(bytes), cudaMemcpyDeviceToHost,
                        rt.stream),
        "download");
  check(cudaStreamSynchronize(rt.stream), "download");
  std::memcpy(hostDst, pinned, size_t(bytes));
}

void blpa_runtime_set_workspace(blpa_context *ctx, void *pointer,
                                int64_t bytes) {
  CudaRuntime &rt = runtimeOf(ctx);
  rt.workspace = pointer;
  rt.workspaceBytes = size_t(bytes);
  // cuBLAS shares it: kernels run one at a time on the one stream, and a
  // workspace of its own keeps cuBLAS from allocating during graph capture.
  if (bytes > 0)
    check(cublasSetWorkspace(rt.cublas, pointer, size_t(bytes)),
          "cublasSetWorkspace");
}

int64_t blpa_runtime_outside_bytes(blpa_context *ctx) {
  int64_t bytes = 0;
  for (const auto &slot : runtimeOf(ctx).scratch)
    bytes += int64_t(slot.second);
  return bytes;
}

void blpa_runtime_run(blpa_context *ctx, void (*step)(void *), void *closure,
                      const void *const *bindings, int64_t numBindings) {
  CudaRuntime &rt = runtimeOf(ctx);
  *rt.hyperStaging = {ctx->lr,          ctx->momentum, ctx->weight_decay,
                      ctx->skip_update, ctx->seed,     ctx->step};
  check(cudaMemcpyAsync(rt.hyper, rt.hyperStaging, sizeof(DeviceHyper),
                        cudaMemcpyHostToDevice, rt.stream),
        "hyper-parameters");
  check(cudaEventRecord(rt.stepStart, rt.stream), "cudaEventRecord");
  // A replayed graph runs no host code: the profiling hooks need the calls.
  if (ctx->replay_steps && !ctx->profile)
    runRecorded(rt, step, closure,
                std::vector<const void *>(bindings, bindings + numBindings));
  else
    step(closure);
  check(cudaEventRecord(rt.stepEnd, rt.stream), "cudaEventRecord");
  checkDeviceErrors(rt);
}

// The op's kernels run asynchronously on the stream: wait for them (and
// for everything before the op, at the start) so that the host clock
// measures the op alone.
void blpa_profile_begin(blpa_context *ctx, int64_t) {
  if (!ctx->profile)
    return;
  check(cudaStreamSynchronize(runtimeOf(ctx).stream), "blpa_profile_begin");
  blpa::profileBegin(ctx->profile);
}

void blpa_profile_end(blpa_context *ctx, int64_t op) {
  if (!ctx->profile)
    return;
  check(cudaStreamSynchronize(runtimeOf(ctx).stream), "blpa_profile_end");
  blpa::profileEnd(ctx->profile, op);
}

double blpa_runtime_last_step_seconds(blpa_context *ctx) {
  CudaRuntime &rt = runtimeOf(ctx);
  float ms = 0;
  check(cudaEventElapsedTime(&ms, rt.stepStart, rt.stepEnd),
        "cudaEventElapsedTime");
  return ms / 1000.0;
}

void blpa_copy(blpa_context *ctx, void *dst, const void *src, int64_t bytes) {
  if (bytes > 0)
    check(cudaMemcpyAsync(dst, src, size_t(bytes), cudaMemcpyDeviceToDevice,
                          runtimeOf(ctx).stream),
          "blpa_copy");
}

void blpa_runtime_fail(const char *message) {
  std::fprintf(stderr, "blpa runtime error: %s\n", message);
  std::fflush(stderr);
  std::exit(1);
}

} // extern "C"
