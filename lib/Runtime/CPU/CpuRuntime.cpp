//===- CpuRuntime.cpp - Runtime lifetime, errors and copies --------------===//

#include "CpuRuntime.h"
#include "ConvPlan.h"
#include "../Common/Profile.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

using namespace blpa::cpu;

void blpa::cpu::failf(const char *format, ...) {
  char message[1024];
  va_list args;
  va_start(args, format);
  vsnprintf(message, sizeof(message), format, args);
  va_end(args);
  blpa_runtime_fail(message);
  // blpa_runtime_fail exits; this keeps [[noreturn]] honest regardless.
  std::abort();
}

void ScratchPool::FreeDeleter::operator()(void *p) const { std::free(p); }

void *ScratchPool::get(unsigned slot, size_t bytes) {
  if (slot >= buffers.size())
    buffers.resize(slot + 1);
  Buffer &buf = buffers[slot];
  if (buf.bytes < bytes) {
    // Round up so that a sequence of slightly growing requests does not
    // reallocate every time.
    size_t rounded = (bytes + 4095) / 4096 * 4096;
    void *p = std::aligned_alloc(64, rounded);
    if (!p)
      failf("out of memory allocating %zu bytes of scratch", rounded);
    buf.data.reset(p);
    buf.bytes = rounded;
  }
  return buf.data.get();
}

int64_t ScratchPool::heldBytes() const {
  int64_t bytes = 0;
  for (const Buffer &buf : buffers)
    bytes += int64_t(buf.bytes);
  return bytes;
}

CpuRuntime::CpuRuntime() : engine(dnnl::engine::kind::cpu, 0), stream(engine) {
  if (const char *bytes = std::getenv("BLPA_CPU_CONV_CHUNK_BYTES"))
    convChunkBytes = std::max<int64_t>(1, std::atoll(bytes));
}

// Defined here, where ConvPlan is complete.
CpuRuntime::~CpuRuntime() = default;

CpuRuntime &blpa::cpu::runtimeOf(blpa_context *ctx) {
  if (!ctx || !ctx->impl)
    failf("kernel called without blpa_runtime_init");
  return *static_cast<CpuRuntime *>(ctx->impl);
}

extern "C" {

void blpa_runtime_init(blpa_context *ctx) {
  if (!ctx)
    failf("blpa_runtime_init: null context");
  // oneDNN is built with OpenMP threading and follows this setting too.
  if (ctx->num_threads > 0)
    omp_set_num_threads(ctx->num_threads);
  guarded("blpa_runtime_init", [&] { ctx->impl = new CpuRuntime(); });
}

void blpa_runtime_shutdown(blpa_context *ctx) {
  if (!ctx)
    return;
  delete static_cast<CpuRuntime *>(ctx->impl);
  ctx->impl = nullptr;
}

const char *blpa_runtime_target(void) { return "cpu"; }

// Host memory: the driver checks MemAvailable and cgroup limits itself.
int64_t blpa_runtime_free_bytes(void) { return -1; }

void *blpa_runtime_alloc(blpa_context *, int64_t bytes) {
  const size_t alignment = 256;
  size_t rounded =
      (size_t(bytes > 0 ? bytes : 1) + alignment - 1) / alignment * alignment;
  void *pointer = std::aligned_alloc(alignment, rounded);
  if (!pointer)
    failf("out of memory allocating %lld bytes", (long long)bytes);
  // Zeroed so that runs are reproducible even if something reads a buffer
  // before writing it.
  std::memset(pointer, 0, rounded);
  return pointer;
}

void blpa_runtime_release(blpa_context *, void *pointer) { std::free(pointer); }

void blpa_runtime_upload(blpa_context *, void *dst, const void *hostSrc,
                         int64_t bytes) {
  if (bytes > 0)
    std::memcpy(dst, hostSrc, static_cast<size_t>(bytes));
}

void blpa_runtime_download(blpa_context *, void *hostDst, const void *src,
                           int64_t bytes) {
  if (bytes > 0)
    std::memcpy(hostDst, src, static_cast<size_t>(bytes));
}

void blpa_runtime_set_workspace(blpa_context *ctx, void *pointer,
                                int64_t bytes) {
  CpuRuntime &rt = runtimeOf(ctx);
  rt.workspace = static_cast<uint8_t *>(pointer);
  rt.workspaceBytes = pointer ? std::max<int64_t>(bytes, 0) : 0;
  // Chunks were chosen for the workspace they had.
  rt.convChunks.clear();
}

int64_t blpa_runtime_outside_bytes(blpa_context *ctx) {
  return runtimeOf(ctx).scratch.heldBytes();
}

void blpa_runtime_run(blpa_context *ctx, void (*step)(void *), void *closure,
                      const void *const *, int64_t) {
  auto start = std::chrono::steady_clock::now();
  step(closure);
  runtimeOf(ctx).lastStepSeconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
}

double blpa_runtime_last_step_seconds(blpa_context *ctx) {
  return runtimeOf(ctx).lastStepSeconds;
}

// Kernels return when their work is done: the host clock times them.
void blpa_profile_begin(blpa_context *ctx, int64_t) {
  if (ctx->profile)
    blpa::profileBegin(ctx->profile);
}

void blpa_profile_end(blpa_context *ctx, int64_t op) {
  if (ctx->profile)
    blpa::profileEnd(ctx->profile, op);
}

void blpa_copy(blpa_context *, void *dst, const void *src, int64_t bytes) {
  if (bytes > 0)
    std::memcpy(dst, src, static_cast<size_t>(bytes));
}

void blpa_runtime_fail(const char *message) {
  std::fprintf(stderr, "blpa runtime error: %s\n", message);
  std::fflush(stderr);
  std::exit(1);
}

} // extern "C"
