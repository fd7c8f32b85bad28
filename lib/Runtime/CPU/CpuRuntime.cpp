//===- CpuRuntime.cpp - Runtime lifetime, errors and copies --------------===//

#include "CpuRuntime.h"
#include "ConvPlan.h"

#include <omp.h>

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

CpuRuntime::CpuRuntime() : engine(dnnl::engine::kind::cpu, 0), stream(engine) {}

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
