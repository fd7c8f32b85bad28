//===- CudaKernelTest.cpp - CUDA runtime kernels vs the CPU runtime ------===//
//
// Every kernel of blpa/Runtime/Runtime.h runs on the CUDA runtime and on the
// CPU runtime (itself checked against double references by
// RuntimeKernelTest.cpp) with the same seeded random inputs at awkward shapes
// (odd sizes, packed codes straddling slices, asymmetric pads, stride 2 on
// odd inputs, groups, dilation, broadcasts, in-place calls), and the results
// are compared: floats within 1e-4 of the largest CPU magnitude; packed codes
// exactly, bar a tiny fraction off by one where the two runtimes' float
// inputs to a code differ by rounding (argmax codes and masks exactly).
//
// Both runtimes define the same C symbols: the build links a copy of the CPU
// runtime whose blpa_* symbols are renamed cpuref_blpa_* (see
// CudaKernelTest.cmake), and a table of function pointers (Api) lets one
// call site serve both. Every kernel runs through blpa_runtime_run, as
// generated steps do, so the CUDA runtime's device hyper-parameters and
// error flag are in play.
//
// Every CUDA kernel also runs a second time, then recorded into a CUDA graph
// and replayed (ctx->replay_steps, as the driver runs steps), and must
// reproduce its first run's bits each time. Kernels that Runtime.h promises
// bit for bit equal to others (the batch-norm recompute and encode, the
// argmax pooling) are checked against them on the GPU too. Dropout masks
// must be the CPU's bit for bit (one hash of ctx->seed, ctx->step, the
// stream and the element), also in a replayed graph while the step changes.
//
// Output: one `FAIL name: detail` line per failing check (`--verbose` also
// prints `PASS name` lines), then `N passed, M failed`; exit status 0 iff
// nothing failed. Without a usable CUDA device: one `skipped` line, status
// 0. `--no-graphs` leaves out the graph runs.
//
//===----------------------------------------------------------------------===//

#include "blpa/Runtime/Runtime.h"

#include "WindowCase.h"

#include <cuda_runtime.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <tuple>
#include <vector>

/// Every function of Runtime.h a runtime library defines, in one list: the
/// CPU reference declarations and both function tables come from it, and
/// take their types from Runtime.h's declarations, so they cannot drift.
#define BLPA_RUNTIME_FUNCTIONS(X)                                              \
  X(blpa_runtime_init)                                                         \
  X(blpa_runtime_shutdown)                                                     \
  X(blpa_runtime_target)                                                       \
  X(blpa_runtime_free_bytes)                                                   \
  X(blpa_runtime_alloc)                                                        \
  X(blpa_runtime_release)                                                      \
  X(blpa_runtime_upload)                                                       \
  X(blpa_runtime_download)                                                     \
  X(blpa_runtime_set_workspace)                                                \
  X(blpa_runtime_run)                                                          \
  X(blpa_runtime_last_step_seconds)                                            \
  X(blpa_runtime_fail)                                                         \
  X(blpa_conv)                                                                 \
  X(blpa_batch_norm_train)                                                     \
  X(blpa_batch_norm_infer)                                                     \
  X(blpa_update_running_stats)                                                 \
  X(blpa_relu)                                                                 \
  X(blpa_add)                                                                  \
  X(blpa_mul)                                                                  \
  X(blpa_sub)                                                                  \
  X(blpa_div)                                                                  \
  X(blpa_activation)                                                           \
  X(blpa_activation_grad)                                                      \
  X(blpa_copy_strided)                                                         \
  X(blpa_pad)                                                                  \
  X(blpa_pad_grad)                                                             \
  X(blpa_transpose)                                                            \
  X(blpa_dropout)                                                              \
  X(blpa_dropout_grad)                                                         \
  X(blpa_max_pool)                                                             \
  X(blpa_avg_pool)                                                             \
  X(blpa_global_avg_pool)                                                      \
  X(blpa_gemm)                                                                 \
  X(blpa_batch_matmul)                                                         \
  X(blpa_softmax_cross_entropy)                                                \
  X(blpa_fill)                                                                 \
  X(blpa_copy)                                                                 \
  X(blpa_conv_grad_input)                                                      \
  X(blpa_conv_grad_weight)                                                     \
  X(blpa_batch_norm_grad)                                                      \
  X(blpa_batch_norm_relu_train)                                                \
  X(blpa_batch_norm_relu_grad)                                                 \
  X(blpa_batch_norm_apply)                                                     \
  X(blpa_relu_grad)                                                            \
  X(blpa_reduce_sum_to)                                                        \
  X(blpa_max_pool_grad)                                                        \
  X(blpa_avg_pool_grad)                                                        \
  X(blpa_global_avg_pool_grad)                                                 \
  X(blpa_softmax_cross_entropy_grad)                                           \
  X(blpa_softmax)                                                              \
  X(blpa_log_softmax)                                                          \
  X(blpa_softmax_grad)                                                         \
  X(blpa_log_softmax_grad)                                                     \
  X(blpa_sgd_update)                                                           \
  X(blpa_batch_norm_train_encode)                                              \
  X(blpa_batch_norm_relu_train_encode)                                         \
  X(blpa_batch_norm_grad_decode)                                               \
  X(blpa_batch_norm_relu_grad_decode)                                          \
  X(blpa_bn_decode)                                                            \
  X(blpa_quantize)                                                             \
  X(blpa_dequantize)                                                           \
  X(blpa_max_pool_argmax)                                                      \
  X(blpa_max_pool_grad_argmax)                                                 \
  X(blpa_activation_region)                                                    \
  X(blpa_activation_grad_region)

// The CPU runtime's functions under the names the build gave them.
extern "C" {
#define BLPA_DECLARE_CPU_REFERENCE(name) decltype(::name) cpuref_##name;
BLPA_RUNTIME_FUNCTIONS(BLPA_DECLARE_CPU_REFERENCE)
#undef BLPA_DECLARE_CPU_REFERENCE
}

namespace {

using blpa_test::convGeometries;
using blpa_test::ConvGeometry;
using blpa_test::WindowGeometry;
using Bytes = std::vector<uint8_t>;
using Floats = std::vector<float>;
using Int64s = std::vector<int64_t>;

/// One runtime's functions, called as `api.blpa_conv(...)`.
struct Api {
#define BLPA_API_MEMBER(name) decltype(&::name) name;
  BLPA_RUNTIME_FUNCTIONS(BLPA_API_MEMBER)
#undef BLPA_API_MEMBER
};

#define BLPA_CUDA_ENTRY(name) &::name,
const Api cudaApi = {BLPA_RUNTIME_FUNCTIONS(BLPA_CUDA_ENTRY)};
#undef BLPA_CUDA_ENTRY
#define BLPA_CPU_ENTRY(name) &cpuref_##name,
const Api cpuApi = {BLPA_RUNTIME_FUNCTIONS(BLPA_CPU_ENTRY)};
#undef BLPA_CPU_ENTRY

/// Floats: largest |cuda - cpu| allowed, relative to the largest |cpu|.
constexpr double floatTol = 1e-4;
/// Codes computed from floats that the two runtimes round differently: the
/// fraction of codes that may differ (each by one).
constexpr double codeSlack = 1e-3;
/// Bytes after a code output that a kernel must not touch.
constexpr size_t guardBytes = 16;
/// What outputs hold before a kernel runs: NaN for floats, so that an
/// element a kernel forgets to write cannot pass.
constexpr uint8_t floatJunk = 0xFF;
constexpr uint8_t codeJunk = 0xA5;
constexpr double bnEps = 1e-5;

//===----------------------------------------------------------------------===//
// Reporting
//===----------------------------------------------------------------------===//

int passed = 0, failed = 0;
bool verbose = false, useGraphs = true;
/// The case running now, named if blpa_runtime_fail ends the process.
std::string currentCase = "setup";
bool finished = false;

std::string format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char *fmt, ...) {
  char buffer[512];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(buffer, sizeof(buffer), fmt, args);
  va_end(args);
  return buffer;
}

void report(const std::string &name, bool ok, const std::string &detail) {
  if (ok) {
    ++passed;
    if (verbose)
      std::printf("PASS %s\n", name.c_str());
  } else {
    ++failed;
    std::printf("FAIL %s: %s\n", name.c_str(), detail.c_str());
  }
  std::fflush(stdout);
}

/// A runtime error exits the process through blpa_runtime_fail (status 1);
/// this says in which case.
void reportUnfinished() {
  if (finished)
    return;
  std::printf("blpa-cuda-kernel-test: stopped during %s (%d passed, %d "
              "failed before)\n",
              currentCase.c_str(), passed, failed);
  std::fflush(stdout);
}

//===----------------------------------------------------------------------===//
// Data
//===----------------------------------------------------------------------===//

std::mt19937 rng(20240611);

Floats randomFloats(size_t n, float lo = -1, float hi = 1) {
  std::uniform_real_distribution<float> dist(lo, hi);
  Floats v(n);
  for (float &x : v)
    x = dist(rng);
  return v;
}

/// Small integers, so that pooling windows contain ties.
Floats randomInts(size_t n, int lo, int hi) {
  std::uniform_int_distribution<int> dist(lo, hi);
  Floats v(n);
  for (float &x : v)
    x = float(dist(rng));
  return v;
}

Floats randomNormals(size_t n, float mean, float stddev) {
  std::normal_distribution<float> dist(mean, stddev);
  Floats v(n);
  for (float &x : v)
    x = dist(rng);
  return v;
}

Int64s randomLabels(size_t n, int64_t classes) {
  std::uniform_int_distribution<int64_t> dist(0, classes - 1);
  Int64s v(n);
  for (int64_t &x : v)
    x = dist(rng);
  return v;
}

template <typename T> Bytes bytesOf(const std::vector<T> &v) {
  const auto *p = reinterpret_cast<const uint8_t *>(v.data());
  return Bytes(p, p + v.size() * sizeof(T));
}

Floats floatsOf(const Bytes &b) {
  Floats v(b.size() / sizeof(float));
  std::memcpy(v.data(), b.data(), v.size() * sizeof(float));
  return v;
}

Floats relu(Floats v) {
  for (float &x : v)
    x = std::max(x, 0.0f);
  return v;
}

int64_t product(const Int64s &dims) {
  int64_t p = 1;
  for (int64_t d : dims)
    p *= d;
  return p;
}

size_t packedSize(size_t numel, int bits) { return (numel * bits + 7) / 8; }

int codeAt(const Bytes &packed, size_t i, int bits) {
  return packed[i * bits / 8] >> (i * bits % 8) & ((1 << bits) - 1);
}

//===----------------------------------------------------------------------===//
// Comparisons
//===----------------------------------------------------------------------===//

bool sameValue(float a, float b) {
  return a == b || (std::isnan(a) && std::isnan(b));
}

/// max |cuda - cpu| <= tol * max |cpu|; with `signs`, also (cuda > 0) ==
/// (cpu > 0) everywhere (ReLU masks).
void compareFloats(const std::string &name, const Floats &gpu,
                   const Floats &cpu, double tol, bool signs) {
  if (gpu.size() != cpu.size())
    return report(name, false, "size mismatch");
  double scale = 0, worst = 0;
  size_t at = 0, nonFinite = 0, signErrors = 0;
  for (float v : cpu)
    if (std::isfinite(v))
      scale = std::max(scale, std::fabs(double(v)));
  for (size_t i = 0; i < cpu.size(); ++i) {
    signErrors += signs && (gpu[i] > 0) != (cpu[i] > 0);
    if (!std::isfinite(gpu[i]) || !std::isfinite(cpu[i])) {
      if (!sameValue(gpu[i], cpu[i]) && nonFinite++ == 0)
        at = i;
      continue;
    }
    double err = std::fabs(double(gpu[i]) - cpu[i]);
    if (err > worst && nonFinite == 0) {
      worst = err;
      at = i;
    }
  }
  bool ok = nonFinite == 0 && signErrors == 0 && worst <= tol * scale;
  std::string detail =
      format("max error %.3g at [%zu] (cuda %.9g, cpu %.9g) exceeds %.1g of "
             "max |cpu| %.4g (%zu elements)",
             worst, at, gpu[at], cpu[at], tol, scale, cpu.size());
  if (nonFinite)
    detail = format("%zu elements differ in non-finite values, first at [%zu] "
                    "(cuda %g, cpu %g)",
                    nonFinite, at, gpu[at], cpu[at]);
  if (signErrors)
    detail += format("; %zu elements differ in sign (ReLU mask)", signErrors);
  report(name, ok, detail);
}

/// Packed codes: at most `slack * numel` codes (at least one when slack is
/// not 0) differ, each by one; unused tail bits and the guard bytes after the
/// codes as the CPU left them.
void compareCodes(const std::string &name, const Bytes &gpu, const Bytes &cpu,
                  size_t numel, int bits, double slack) {
  size_t differ = 0, far = 0, first = 0;
  for (size_t i = 0; i < numel; ++i) {
    int g = codeAt(gpu, i, bits), c = codeAt(cpu, i, bits);
    if (g == c)
      continue;
    if (differ++ == 0)
      first = i;
    far += std::abs(g - c) > 1;
  }
  size_t used = packedSize(numel, bits), tailBits = numel * bits % 8;
  bool tail = tailBits == 0 ||
              ((gpu[used - 1] ^ cpu[used - 1]) & (0xFF << tailBits)) == 0;
  bool guard = std::equal(gpu.begin() + used, gpu.end(), cpu.begin() + used);
  // At least one where rounding may differ at all: a single code on a bin
  // edge is then no failure even in a small tensor.
  size_t allowed =
      slack > 0 ? std::max<size_t>(1, size_t(slack * double(numel))) : 0;
  bool ok = tail && guard && far == 0 && differ <= allowed;
  std::string detail =
      format("%zu of %zu %d-bit codes differ (%zu by more than 1, %zu allowed)",
             differ, numel, bits, far, allowed);
  if (differ)
    detail += format(", first at [%zu]: cuda %d, cpu %d", first,
                     codeAt(gpu, first, bits), codeAt(cpu, first, bits));
  if (!tail)
    detail += "; unused tail bits differ (must be 0)";
  if (!guard)
    detail += "; wrote past the last code byte";
  report(name, ok, detail);
}

/// Two results of the CUDA runtime that Runtime.h says are bit for bit equal.
void expectSameBits(const std::string &name, const Bytes &got,
                    const Bytes &want, const char *what) {
  report(name, got == want, what);
}

//===----------------------------------------------------------------------===//
// Running a kernel on a runtime
//===----------------------------------------------------------------------===//

/// The device (or host) addresses of a case's buffers, by buffer id.
struct Ptrs {
  std::vector<void *> at;

  float *f(int id) const { return static_cast<float *>(at[id]); }
  uint8_t *u8(int id) const { return static_cast<uint8_t *>(at[id]); }
  int64_t *i64(int id) const { return static_cast<int64_t *>(at[id]); }
  void *raw(int id) const { return at[id]; }
};

/// One call of a kernel, written once for both runtimes.
using Kernel = std::function<void(const Api &, blpa_context *, const Ptrs &)>;

struct Closure {
  const Api *api;
  blpa_context *ctx;
  const Kernel *kernel;
  const Ptrs *ptrs;
};

void runClosure(void *opaque) {
  const Closure &c = *static_cast<const Closure *>(opaque);
  (*c.kernel)(*c.api, c.ctx, *c.ptrs);
}

struct Hyper {
  float lr, momentum, weightDecay;
  int32_t skipUpdate;
};
constexpr Hyper defaultHyper = {0.1f, 0.9f, 5e-4f, 0};

/// One runtime library and its context.
struct Side {
  const char *name;
  const Api &api;
  blpa_context ctx{};
  void *workspace = nullptr;

  static constexpr int64_t workspaceBytes = int64_t(64) << 20;

  void init() {
    ctx = blpa_context{};
    api.blpa_runtime_init(&ctx);
    workspace = api.blpa_runtime_alloc(&ctx, workspaceBytes);
    api.blpa_runtime_set_workspace(&ctx, workspace, workspaceBytes);
    setHyper(defaultHyper);
  }

  void shutdown() {
    api.blpa_runtime_set_workspace(&ctx, nullptr, 0);
    api.blpa_runtime_release(&ctx, workspace);
    api.blpa_runtime_shutdown(&ctx);
  }

  void setHyper(const Hyper &h) {
    ctx.lr = h.lr;
    ctx.momentum = h.momentum;
    ctx.weight_decay = h.weightDecay;
    ctx.skip_update = h.skipUpdate;
  }

  /// Runs `kernel` as a step. `tag` joins the bindings so that a recording
  /// of another case at the same addresses is never replayed for this one.
  void run(const Kernel &kernel, const Ptrs &ptrs, const void *tag,
           bool replay) {
    Closure closure = {&api, &ctx, &kernel, &ptrs};
    std::vector<const void *> bindings(ptrs.at.begin(), ptrs.at.end());
    bindings.push_back(tag);
    ctx.replay_steps = replay;
    api.blpa_runtime_run(&ctx, runClosure, &closure, bindings.data(),
                         int64_t(bindings.size()));
  }
};

Side cpuSide = {"cpu", cpuApi};
Side gpuSide = {"cuda", cudaApi};

void setHyper(const Hyper &h) {
  cpuSide.setHyper(h);
  gpuSide.setHyper(h);
}

const void *nextTag() {
  static uintptr_t serial = 0;
  return reinterpret_cast<const void *>(++serial);
}

/// One buffer of a case: what is uploaded before every run and, for
/// outputs, how the CUDA result is compared with the CPU one.
struct Buffer {
  enum Kind { input, floats, codes };
  std::string name; // of an output
  Bytes initial;
  Kind kind = input;
  /// floats: floatTol-style tolerance; codes: codeSlack-style fraction.
  double tolerance = 0;
  bool signs = false;
  int bits = 0;
  size_t numel = 0;
};

/// A case's buffers in one runtime's memory.
class Placement {
public:
  Placement(Side &side, const std::vector<Buffer> &buffers)
      : side(side), buffers(buffers) {
    for (const Buffer &b : buffers)
      ptrs.at.push_back(
          side.api.blpa_runtime_alloc(&side.ctx, int64_t(b.initial.size())));
  }
  ~Placement() {
    for (void *p : ptrs.at)
      side.api.blpa_runtime_release(&side.ctx, p);
  }
  Placement(const Placement &) = delete;
  Placement &operator=(const Placement &) = delete;

  void upload() const {
    for (size_t i = 0; i < buffers.size(); ++i)
      side.api.blpa_runtime_upload(&side.ctx, ptrs.at[i],
                                   buffers[i].initial.data(),
                                   int64_t(buffers[i].initial.size()));
  }

  /// The outputs' contents (empty for inputs).
  std::vector<Bytes> download() const {
    std::vector<Bytes> out(buffers.size());
    for (size_t i = 0; i < buffers.size(); ++i) {
      if (buffers[i].kind == Buffer::input)
        continue;
      out[i].resize(buffers[i].initial.size());
      side.api.blpa_runtime_download(&side.ctx, out[i].data(), ptrs.at[i],
                                     int64_t(out[i].size()));
    }
    return out;
  }

  /// Uploads every buffer, runs `kernel` as a step, downloads the outputs.
  std::vector<Bytes> run(const Kernel &kernel, const void *tag,
                         bool replay) const {
    upload();
    side.run(kernel, ptrs, tag, replay);
    return download();
  }

  Side &side;
  const std::vector<Buffer> &buffers;
  Ptrs ptrs;
};

/// Both runtimes' outputs of a case, by output name.
struct Results {
  std::vector<std::string> names;
  std::vector<Bytes> cpu, gpu;

  const Bytes &cpuBytes(const std::string &name) const {
    return cpu[indexOf(name)];
  }
  const Bytes &gpuBytes(const std::string &name) const {
    return gpu[indexOf(name)];
  }
  Floats cpuFloats(const std::string &name) const {
    return floatsOf(cpuBytes(name));
  }
  Floats gpuFloats(const std::string &name) const {
    return floatsOf(gpuBytes(name));
  }
  size_t indexOf(const std::string &name) const {
    size_t i = std::find(names.begin(), names.end(), name) - names.begin();
    if (i == names.size()) {
      std::printf("blpa-cuda-kernel-test: no output %s\n", name.c_str());
      std::exit(2);
    }
    return i;
  }
};

/// A kernel call and its buffers: `run` calls it on both runtimes with the
/// same inputs, compares the outputs and checks that the CUDA kernel
/// repeats its bits.
class Case {
public:
  explicit Case(std::string name) : name(std::move(name)) {}

  int in(Bytes data) {
    Buffer b;
    b.initial = std::move(data);
    return add(std::move(b));
  }
  int in(const Floats &data) { return in(bytesOf(data)); }
  int in(const Int64s &data) { return in(bytesOf(data)); }

  /// `count` floats the kernel writes; `signs`: a ReLU output, whose zeros
  /// must be the CPU's exactly.
  int out(const std::string &outName, size_t count, double tol = floatTol,
          bool signs = false) {
    return addFloats(outName, Bytes(count * sizeof(float), floatJunk), tol,
                     signs);
  }

  /// An operand the kernel overwrites (in-place calls, optimizer state).
  int inOut(const std::string &outName, const Floats &data,
            double tol = floatTol) {
    return addFloats(outName, bytesOf(data), tol, false);
  }

  /// `data` as an operand and where the kernel writes `outName`: over the
  /// operand when `inPlace`.
  std::pair<int, int> operandAndResult(const Floats &data, bool inPlace,
                                       const std::string &outName,
                                       double tol = floatTol) {
    if (!inPlace) {
      int operand = in(data);
      return {operand, out(outName, data.size(), tol)};
    }
    int both = inOut(outName, data, tol);
    return {both, both};
  }

  /// Room for `numel` packed codes and the guard bytes after them.
  int codes(const std::string &outName, size_t numel, int bits, double slack) {
    Buffer b;
    b.name = outName;
    b.kind = Buffer::codes;
    b.tolerance = slack;
    b.bits = bits;
    b.numel = numel;
    b.initial = Bytes(packedSize(numel, bits) + guardBytes, codeJunk);
    return add(std::move(b));
  }

  /// Plain bytes, compared exactly (8-bit codes with no slack).
  int bytesOut(const std::string &outName, size_t bytes) {
    return codes(outName, bytes, 8, 0);
  }

  Results run(const Kernel &kernel) const {
    currentCase = name;
    const void *tag = nextTag();
    Placement cpu(cpuSide, buffers), gpu(gpuSide, buffers);
    Results r;
    for (const Buffer &b : buffers)
      r.names.push_back(b.name);
    r.cpu = cpu.run(kernel, tag, false);
    r.gpu = gpu.run(kernel, tag, false);
    compare(name, r.gpu, r.cpu);
    checkRepeats(gpu, kernel, tag, r.gpu);
    return r;
  }

  /// Reports one check per output of `gpu` against `cpu`.
  void compare(const std::string &prefix, const std::vector<Bytes> &gpu,
               const std::vector<Bytes> &cpu) const {
    for (size_t i = 0; i < buffers.size(); ++i) {
      const Buffer &b = buffers[i];
      std::string check = prefix + "/" + b.name;
      if (b.kind == Buffer::floats)
        compareFloats(check, floatsOf(gpu[i]), floatsOf(cpu[i]), b.tolerance,
                      b.signs);
      else if (b.kind == Buffer::codes)
        compareCodes(check, gpu[i], cpu[i], b.numel, b.bits, b.tolerance);
    }
  }

  std::string name;
  std::vector<Buffer> buffers;

private:
  int addFloats(const std::string &outName, Bytes initial, double tol,
                bool signs) {
    Buffer b;
    b.name = outName;
    b.kind = Buffer::floats;
    b.tolerance = tol;
    b.signs = signs;
    b.initial = std::move(initial);
    return add(std::move(b));
  }

  int add(Buffer b) {
    if (b.initial.empty())
      b.initial.resize(1); // a buffer of its own even when empty
    buffers.push_back(std::move(b));
    return int(buffers.size()) - 1;
  }

  /// Runs the CUDA kernel again: plainly, then (with graphs) recorded into
  /// a CUDA graph and replayed, each time from the same inputs; every run
  /// must reproduce the first one's bits.
  void checkRepeats(const Placement &gpu, const Kernel &kernel, const void *tag,
                    const std::vector<Bytes> &first) const {
    // With replay_steps, the runtime runs a new binding set plainly first,
    // records it the second time and replays it from the third.
    static const char *const runs[] = {"a second run",
                                       "the run recorded into a CUDA graph",
                                       "a replay of the recorded graph"};
    for (int run = 0; run < (useGraphs ? 3 : 1); ++run) {
      std::vector<Bytes> again = gpu.run(kernel, tag, useGraphs);
      for (size_t i = 0; i < buffers.size(); ++i)
        if (again[i] != first[i])
          return report(name + "/repeat", false,
                        std::string(runs[run]) +
                            " differs from the first run in " +
                            buffers[i].name);
    }
    report(name + "/repeat", true, "");
  }
};

//===----------------------------------------------------------------------===//
// Runtime basics
//===----------------------------------------------------------------------===//

void testRuntime() {
  currentCase = "runtime";
  report("runtime/targets",
         std::strcmp(cpuApi.blpa_runtime_target(), "cpu") == 0 &&
             std::strcmp(cudaApi.blpa_runtime_target(), "cuda") == 0,
         "the renamed CPU runtime or the CUDA runtime has the wrong target");
  report("runtime/free_bytes", cudaApi.blpa_runtime_free_bytes() > 0,
         "no free device memory reported");

  const size_t bytes = (size_t(1) << 20) + 3;
  void *p = cudaApi.blpa_runtime_alloc(&gpuSide.ctx, int64_t(bytes));
  Bytes got(bytes, codeJunk);
  cudaApi.blpa_runtime_download(&gpuSide.ctx, got.data(), p, int64_t(bytes));
  report("runtime/alloc_zeroed",
         std::all_of(got.begin(), got.end(), [](uint8_t b) { return b == 0; }),
         "blpa_runtime_alloc memory is not zero-filled");
  Bytes data = bytesOf(randomFloats(bytes / 4 + 1));
  data.resize(bytes);
  cudaApi.blpa_runtime_upload(&gpuSide.ctx, p, data.data(), int64_t(bytes));
  cudaApi.blpa_runtime_download(&gpuSide.ctx, got.data(), p, int64_t(bytes));
  report("runtime/upload_download", got == data,
         "downloaded bytes differ from the uploaded ones");
  cudaApi.blpa_runtime_release(&gpuSide.ctx, p);
}

//===----------------------------------------------------------------------===//
// Convolution
//===----------------------------------------------------------------------===//

/// A shared case (WindowCase.h) with its calls through the API table.
struct ConvCase : ConvGeometry {

  void forward(const Api &rt, blpa_context *ctx, const float *x,
               const float *wt, const float *b, float *y) const {
    rt.blpa_conv(ctx, x, wt, b, y, n, c, k, group, WINDOW_ARGS(win));
  }
  /// blpa_conv_grad_input or blpa_conv_grad_weight: same signature.
  void backward(decltype(&blpa_conv_grad_input) kernel, blpa_context *ctx,
                const float *dy, const float *other, float *out) const {
    kernel(ctx, dy, other, out, n, c, k, group, WINDOW_ARGS(win));
  }
};

/// "conv2d/NAME/" or "conv3d/NAME/".
std::string convPrefix(const ConvCase &cc) {
  return "conv" + std::to_string(cc.win.rank()) + "d/" + cc.name + "/";
}

void testConvGrad(const ConvCase &cc, const std::string &name,
                  decltype(&Api::blpa_conv_grad_input) kernel, const Floats &dy,
                  const Floats &other, size_t outSize) {
  Case k(convPrefix(cc) + name);
  int dyIn = k.in(dy), otherIn = k.in(other), out = k.out("out", outSize);
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    cc.backward(rt.*kernel, ctx, p.f(dyIn), p.f(otherIn), p.f(out));
  });
}

void testConv(const ConvCase &cc) {
  Floats x = randomFloats(cc.xSize()), wt = randomFloats(cc.wSize()),
         b = randomFloats(cc.k), dy = randomFloats(cc.ySize());
  for (bool withBias : {false, true}) {
    Case k(convPrefix(cc) + (withBias ? "forward_bias" : "forward"));
    int xIn = k.in(x), wIn = k.in(wt), bIn = k.in(b),
        y = k.out("y", cc.ySize());
    k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
      cc.forward(rt, ctx, p.f(xIn), p.f(wIn), withBias ? p.f(bIn) : nullptr,
                 p.f(y));
    });
  }
  testConvGrad(cc, "grad_input", &Api::blpa_conv_grad_input, dy, wt,
               cc.xSize());
  testConvGrad(cc, "grad_weight", &Api::blpa_conv_grad_weight, dy, x,
               cc.wSize());
}

//===----------------------------------------------------------------------===//
// Batch norm
//===----------------------------------------------------------------------===//

struct BnShape {
  const char *name;
  int64_t n, c, spatial;
};

const BnShape bnShapes[] = {
    {"4d", 5, 7, 13 * 11},
    {"2d", 33, 6, 1},
    {"wide", 3, 130, 7},
    {"large", 32, 19, 29 * 31},
};

/// A batch norm's input and parameters.
struct BnData {
  int64_t n, c, spatial;
  Floats x, scale, bias;

  size_t numel() const { return n * c * spatial; }
  int64_t channelOf(size_t i) const { return int64_t(i) / spatial % c; }
};

BnData bnData(const BnShape &s) {
  BnData d = {s.n, s.c, s.spatial, {}, {}, {}};
  // An offset mean makes a naive E[x^2] - E[x]^2 lose digits.
  d.x = randomFloats(d.numel(), 2.0f, 4.0f);
  d.scale = randomFloats(s.c, -2.0f, 2.0f);
  d.bias = randomFloats(s.c);
  return d;
}

/// blpa_batch_norm_train or blpa_batch_norm_relu_train.
Results bnTrain(const std::string &name, const BnData &d, bool withRelu) {
  Case k(name);
  int x = k.in(d.x), scale = k.in(d.scale), bias = k.in(d.bias);
  int y = k.out("y", d.numel()), mean = k.out("mean", d.c),
      invStd = k.out("inv_std", d.c);
  return k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    auto kernel =
        withRelu ? rt.blpa_batch_norm_relu_train : rt.blpa_batch_norm_train;
    kernel(ctx, p.f(x), p.f(scale), p.f(bias), p.f(y), p.f(mean), p.f(invStd),
           d.n, d.c, d.spatial, bnEps);
  });
}

/// The statistics' bytes after y's, for bitwise comparisons.
Bytes bnOutputs(const Results &r, const Floats &y) {
  Bytes all = bytesOf(y);
  for (const char *stat : {"mean", "inv_std"}) {
    const Bytes &b = r.gpuBytes(stat);
    all.insert(all.end(), b.begin(), b.end());
  }
  return all;
}

/// blpa_batch_norm_apply, on the CUDA runtime's own statistics: the CUDA
/// recompute must give the CUDA forward's output bit for bit.
void testBnApply(const std::string &base, const BnData &d, const Results &train,
                 const Results &reluTrain) {
  Floats mean = train.gpuFloats("mean"), invStd = train.gpuFloats("inv_std");
  for (int64_t withRelu : {0, 1}) {
    Case k(base + (withRelu ? "/apply_relu" : "/apply"));
    int x = k.in(d.x), scale = k.in(d.scale), bias = k.in(d.bias),
        meanIn = k.in(mean), invStdIn = k.in(invStd), y = k.out("y", d.numel());
    Results r = k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
      rt.blpa_batch_norm_apply(ctx, p.f(x), p.f(scale), p.f(bias), p.f(meanIn),
                               p.f(invStdIn), p.f(y), d.n, d.c, d.spatial,
                               withRelu);
    });
    const Results &forward = withRelu ? reluTrain : train;
    expectSameBits(k.name + "/matches_forward", r.gpuBytes("y"),
                   forward.gpuBytes("y"),
                   "the CUDA recompute differs from the CUDA forward");
  }
}

void testBnInfer(const std::string &base, const BnData &d) {
  Floats mean = randomFloats(d.c, 2.0f, 4.0f),
         var = randomFloats(d.c, 0.1f, 3.0f);
  Case k(base + "/infer");
  int x = k.in(d.x), scale = k.in(d.scale), bias = k.in(d.bias),
      meanIn = k.in(mean), varIn = k.in(var), y = k.out("y", d.numel());
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_batch_norm_infer(ctx, p.f(x), p.f(scale), p.f(bias), p.f(meanIn),
                             p.f(varIn), p.f(y), d.n, d.c, d.spatial, bnEps);
  });
}

/// blpa_batch_norm_grad or blpa_batch_norm_relu_grad, dx over dy when
/// `inPlace`.
void testBnGrad(const std::string &base, const BnData &d, const Results &train,
                const Floats &dy, bool withRelu, bool inPlace) {
  Case k(base + (withRelu ? "/relu_grad" : "/grad") +
         (inPlace ? "_in_place" : ""));
  int dyIn, dx;
  std::tie(dyIn, dx) = k.operandAndResult(dy, inPlace, "dx");
  int x = k.in(d.x), scale = k.in(d.scale), bias = k.in(d.bias),
      mean = k.in(train.cpuFloats("mean")),
      invStd = k.in(train.cpuFloats("inv_std"));
  int dscale = k.out("dscale", d.c), dbias = k.out("dbias", d.c);
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    if (withRelu)
      rt.blpa_batch_norm_relu_grad(
          ctx, p.f(dyIn), p.f(x), p.f(scale), p.f(bias), p.f(mean), p.f(invStd),
          p.f(dx), p.f(dscale), p.f(dbias), d.n, d.c, d.spatial);
    else
      rt.blpa_batch_norm_grad(ctx, p.f(dyIn), p.f(x), p.f(scale), p.f(mean),
                              p.f(invStd), p.f(dx), p.f(dscale), p.f(dbias),
                              d.n, d.c, d.spatial);
  });
}

void testBatchNorm(const BnShape &s) {
  std::string base = std::string("batch_norm/") + s.name;
  BnData d = bnData(s);
  Results train = bnTrain(base + "/train", d, false);
  Results reluTrain = bnTrain(base + "/relu_train", d, true);
  expectSameBits(base + "/relu_train/matches_train",
                 bnOutputs(reluTrain, reluTrain.gpuFloats("y")),
                 bnOutputs(train, relu(train.gpuFloats("y"))),
                 "differs from the CUDA blpa_batch_norm_train and a ReLU");
  testBnApply(base, d, train, reluTrain);
  testBnInfer(base, d);
  Floats dy = randomFloats(d.numel());
  for (bool withRelu : {false, true})
    for (bool inPlace : {false, true})
      testBnGrad(base, d, train, dy, withRelu, inPlace);
}

void testRunningStats(int64_t c, int64_t count, int32_t skip) {
  setHyper({0.1f, 0.9f, 5e-4f, skip});
  Case k("update_running_stats/c" + std::to_string(c) +
         (skip ? "/skip_update" : ""));
  // Skipped updates must leave the statistics exactly as they were.
  double tol = skip ? 0 : floatTol;
  int runMean = k.inOut("running_mean", randomFloats(c), tol),
      runVar = k.inOut("running_var", randomFloats(c, 0.5f, 2.0f), tol),
      mean = k.in(randomFloats(c)), invStd = k.in(randomFloats(c, 0.5f, 3.0f));
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_update_running_stats(ctx, p.f(runMean), p.f(runVar), p.f(mean),
                                 p.f(invStd), c, count, 0.9, 1e-3);
  });
  setHyper(defaultHyper);
}

//===----------------------------------------------------------------------===//
// Element-wise, broadcast, reductions, copies, optimizer
//===----------------------------------------------------------------------===//

void testRelu(size_t numel) {
  Floats x = randomFloats(numel), dy = randomFloats(numel), y = relu(x);
  std::string size = "/" + std::to_string(numel);
  for (bool inPlace : {false, true}) {
    std::string suffix = size + (inPlace ? "/in_place" : "");
    Case k("relu" + suffix);
    int xIn, yOut;
    std::tie(xIn, yOut) = k.operandAndResult(x, inPlace, "y", 0);
    k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
      rt.blpa_relu(ctx, p.f(xIn), p.f(yOut), int64_t(numel));
    });
    Case g("relu_grad" + suffix);
    int dyIn, dx;
    std::tie(dyIn, dx) = g.operandAndResult(dy, inPlace, "dx", 0);
    int yIn = g.in(y);
    g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
      rt.blpa_relu_grad(ctx, p.f(dyIn), p.f(yIn), p.f(dx), int64_t(numel));
    });
  }
}

using BroadcastKernel = decltype(&::blpa_add);

/// Out of place, and in place over each operand that has the output's
/// shape. One float operation per element: exact.
void testBroadcast(const char *op, BroadcastKernel Api::*kernel,
                   const char *name, Int64s outDims, Int64s aDims,
                   Int64s bDims) {
  // Divisors away from 0, so that division is as well conditioned.
  Floats a = randomFloats(product(aDims)),
         b = randomFloats(product(bDims), 0.5f, 2.0f);
  const char *const suffixes[] = {"", "/in_place_lhs", "/in_place_rhs"};
  for (int over : {0, 1, 2}) {
    if ((over == 1 && aDims != outDims) || (over == 2 && bDims != outDims))
      continue;
    Case k(std::string(op) + "/" + name + suffixes[over]);
    int aIn = over == 1 ? k.inOut("y", a, 0) : k.in(a);
    int bIn = over == 2 ? k.inOut("y", b, 0) : k.in(b);
    int y = over == 1   ? aIn
            : over == 2 ? bIn
                        : k.out("y", size_t(product(outDims)), 0);
    k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
      (rt.*kernel)(ctx, p.f(aIn), p.f(bIn), p.f(y), int64_t(outDims.size()),
                   outDims.data(), aDims.data(), bDims.data());
    });
  }
}

void testAdd(const char *name, Int64s outDims, Int64s aDims, Int64s bDims) {
  testBroadcast("add", &Api::blpa_add, name, outDims, aDims, bDims);
  testBroadcast("mul", &Api::blpa_mul, name, outDims, aDims, bDims);
  testBroadcast("sub", &Api::blpa_sub, name, outDims, aDims, bDims);
  testBroadcast("div", &Api::blpa_div, name, outDims, aDims, bDims);
}

/// An activation and its gradient (from the output for sigmoid), on
/// values spread over every branch of the formulas.
void testActivation(const char *name, int64_t kind, double alpha, double beta) {
  const size_t numel = 10007;
  Floats x = randomFloats(numel, -8, 8), dy = randomFloats(numel);
  Case forward(std::string("activation/") + name);
  int xIn = forward.in(x), y = forward.out("y", numel);
  forward.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_activation(ctx, p.f(xIn), p.f(y), int64_t(numel), kind, alpha,
                       beta);
  });
  Floats saved = x;
  if (kind == BLPA_ACT_SIGMOID)
    for (float &v : saved)
      v = 1.0f / (1.0f + std::exp(-v));
  Case backward(std::string("activation_grad/") + name);
  int dyIn = backward.in(dy), savedIn = backward.in(saved),
      dx = backward.out("dx", numel);
  backward.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_activation_grad(ctx, p.f(dyIn), p.f(savedIn), p.f(dx),
                            int64_t(numel), kind, alpha, beta);
  });
}

//===----------------------------------------------------------------------===//
// Region codes of piecewise activations (blpa_activation_region and
// blpa_activation_grad_region), kept in this one block to move with the
// activation tests.
//===----------------------------------------------------------------------===//

/// The region codes, exactly the CPU's, and the gradient from the CPU's
/// codes with values moved by up to half a 4-bit bin, as decoded ones are.
void testActivationRegion(const char *name, int64_t kind, double alpha,
                          double beta) {
  const size_t numel = 10007;
  const int bits = kind == BLPA_ACT_HARD_SWISH ? 2 : 1;
  Floats x = randomFloats(numel, -8, 8), dy = randomFloats(numel), v = x,
         moved = randomFloats(numel, -0.5f, 0.5f);
  for (size_t i = 0; i < numel; ++i)
    v[i] += moved[i];
  Case encode(std::string("activation_region/") + name);
  int xIn = encode.in(x), codes = encode.codes("codes", numel, bits, 0);
  Results r = encode.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_activation_region(ctx, p.f(xIn), p.u8(codes), int64_t(numel), kind,
                              alpha, beta, nullptr, nullptr, bits);
  });
  Case grad(std::string("activation_grad_region/") + name);
  int dyIn = grad.in(dy), codesIn = grad.in(r.cpuBytes("codes")),
      valuesIn = grad.in(v), dx = grad.out("dx", numel);
  grad.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_activation_grad_region(
        ctx, p.f(dyIn), p.u8(codesIn),
        kind == BLPA_ACT_HARD_SWISH ? p.f(valuesIn) : nullptr, p.f(dx),
        int64_t(numel), kind, alpha, beta, bits);
  });
}

void testActivationRegions() {
  testActivationRegion("hard_sigmoid", BLPA_ACT_HARD_SIGMOID, 0.2, 0.5);
  testActivationRegion("hard_swish", BLPA_ACT_HARD_SWISH, 0, 0);
  testActivationRegion("clip", BLPA_ACT_CLIP, 0, 6);
}

/// The elements a strided copy reaches: offset + (rows - 1) * stride +
/// rowElems.
size_t stridedExtent(int64_t rows, int64_t rowElems, int64_t stride,
                     int64_t offset) {
  return size_t(offset + (rows - 1) * stride + rowElems);
}

/// The columns of a concatenation: rows of rowElems between strides, into
/// a dst of random contents (what the copy does not write must stay).
void testCopyStrided(int64_t rows, int64_t rowElems, int64_t srcStride,
                     int64_t dstStride, int64_t srcOffset, int64_t dstOffset) {
  Case k(format("copy_strided/%lldx%lld/strides%lld,%lld", (long long)rows,
                (long long)rowElems, (long long)srcStride,
                (long long)dstStride));
  int src =
      k.in(randomFloats(stridedExtent(rows, rowElems, srcStride, srcOffset)));
  int dst = k.inOut(
      "dst", randomFloats(stridedExtent(rows, rowElems, dstStride, dstOffset)),
      0);
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_copy_strided(ctx, p.f(src), p.f(dst), rows, rowElems, srcStride,
                         dstStride, srcOffset, dstOffset);
  });
}

void testPad(const char *name, Int64s inDims, Int64s begin, Int64s end) {
  Int64s outDims = inDims;
  for (size_t d = 0; d < inDims.size(); ++d)
    outDims[d] += begin[d] + end[d];
  Case k(std::string("pad/") + name);
  int x = k.in(randomFloats(product(inDims)));
  int y = k.out("y", size_t(product(outDims)));
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_pad(ctx, p.f(x), p.f(y), int64_t(inDims.size()), inDims.data(),
                outDims.data(), begin.data(), BLPA_PAD_CONSTANT, 0.5, nullptr);
  });
}

/// Reflect and edge padding and their gradient.
void testPadMode(const char *name, int64_t mode, Int64s inDims, Int64s begin,
                 Int64s end) {
  Int64s outDims = inDims;
  for (size_t d = 0; d < inDims.size(); ++d)
    outDims[d] += begin[d] + end[d];
  std::string base =
      std::string(mode == BLPA_PAD_REFLECT ? "pad_reflect/" : "pad_edge/") +
      name;
  Case k(base);
  int x = k.in(randomFloats(product(inDims)));
  int y = k.out("y", size_t(product(outDims)));
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_pad(ctx, p.f(x), p.f(y), int64_t(inDims.size()), inDims.data(),
                outDims.data(), begin.data(), mode, 0.0, nullptr);
  });
  Case g(base + "/grad");
  int dy = g.in(randomFloats(product(outDims)));
  int dx = g.out("dx", size_t(product(inDims)));
  g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_pad_grad(ctx, p.f(dy), p.f(dx), int64_t(inDims.size()),
                     inDims.data(), outDims.data(), begin.data(), mode);
  });
}

void testTranspose(const char *name, Int64s inDims, Int64s perm) {
  Case k(std::string("transpose/") + name);
  int x = k.in(randomFloats(product(inDims)));
  int y = k.out("y", size_t(product(inDims)));
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_transpose(ctx, p.f(x), p.f(y), int64_t(inDims.size()),
                      inDims.data(), perm.data());
  });
}

/// The dropout masks' seed and step on both runtimes (the CUDA runtime
/// stages them into its device hyper-parameters at every blpa_runtime_run).
void setDropoutStep(uint64_t seed, uint64_t step) {
  for (Side *side : {&cpuSide, &gpuSide}) {
    side->ctx.seed = seed;
    side->ctx.step = step;
  }
}

/// v's magnitudes moved to [0.5, 2], signs kept: no element is 0 before a
/// dropout, so y != 0 is the mask.
Floats awayFromZero(Floats v) {
  for (float &x : v)
    x = std::copysign(0.5f + 1.5f * std::fabs(x), x);
  return v;
}

/// 1 where y kept the element, else 0.
Bytes keptOf(const Floats &y) {
  Bytes kept(y.size());
  for (size_t i = 0; i < y.size(); ++i)
    kept[i] = y[i] != 0;
  return kept;
}

/// blpa_dropout and blpa_dropout_grad, out of place and in place: bit for
/// bit the CPU's (the same hash of seed, step, stream and element), and
/// the gradient's mask the forward's.
void testDropout(double ratio, size_t numel, uint64_t seed, uint64_t step,
                 int64_t stream) {
  setDropoutStep(seed, step);
  std::string base = format("/ratio%g/%zu/step%llu/stream%lld", ratio, numel,
                            (unsigned long long)step, (long long)stream);
  Floats x = awayFromZero(randomFloats(numel)),
         dy = awayFromZero(randomFloats(numel));
  for (bool inPlace : {false, true}) {
    std::string suffix = base + (inPlace ? "/in_place" : "");
    Case k("dropout" + suffix);
    int xIn, y;
    std::tie(xIn, y) = k.operandAndResult(x, inPlace, "y", 0);
    Results forward =
        k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
          rt.blpa_dropout(ctx, p.f(xIn), p.f(y), int64_t(numel), ratio, stream);
        });
    expectSameBits(k.name + "/bits", forward.gpuBytes("y"),
                   forward.cpuBytes("y"), "differs from the CPU's bits");
    Case g("dropout_grad" + suffix);
    int dyIn, dx;
    std::tie(dyIn, dx) = g.operandAndResult(dy, inPlace, "dx", 0);
    Results backward =
        g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
          rt.blpa_dropout_grad(ctx, p.f(dyIn), p.f(dx), int64_t(numel), ratio,
                               stream);
        });
    expectSameBits(g.name + "/bits", backward.gpuBytes("dx"),
                   backward.cpuBytes("dx"), "differs from the CPU's bits");
    expectSameBits(g.name + "/mask", keptOf(backward.gpuFloats("dx")),
                   keptOf(forward.gpuFloats("y")),
                   "blpa_dropout_grad drops other elements than blpa_dropout");
  }
}

/// A step of a dropout and its gradient run with replay_steps on both
/// runtimes while the step (and once the seed) changes between runs: the
/// CUDA runtime runs it plainly, records it, then replays the recording,
/// which must draw each run's mask from the device hyper-parameters, bit
/// for bit the CPU's, and a new one every run.
void testDropoutReplay() {
  const int64_t numel = 10007, stream = 4;
  const double ratio = 0.3;
  Case k("dropout_replay");
  int x = k.in(awayFromZero(randomFloats(numel))),
      dy = k.in(awayFromZero(randomFloats(numel))), y = k.out("y", numel, 0),
      dx = k.out("dx", numel, 0);
  Kernel step = [&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_dropout(ctx, p.f(x), p.f(y), numel, ratio, stream);
    rt.blpa_dropout_grad(ctx, p.f(dy), p.f(dx), numel, ratio, stream);
  };
  currentCase = k.name;
  const void *tag = nextTag();
  Placement cpu(cpuSide, k.buffers), gpu(gpuSide, k.buffers);
  cpu.upload();
  gpu.upload();
  const struct {
    uint64_t seed, step;
  } runs[] = {{20240611, 0}, {20240611, 1}, {20240611, 2},
              {20240611, 3}, {7, 3},        {20240611, uint64_t(1) << 40}};
  Bytes previous;
  for (size_t run = 0; run < sizeof(runs) / sizeof(runs[0]); ++run) {
    setDropoutStep(runs[run].seed, runs[run].step);
    cpuSide.run(step, cpu.ptrs, tag, true);
    gpuSide.run(step, gpu.ptrs, tag, true);
    std::string prefix = k.name + "/run" + std::to_string(run + 1);
    std::vector<Bytes> got = gpu.download(), want = cpu.download();
    k.compare(prefix, got, want);
    report(prefix + "/bits", got[y] == want[y] && got[dx] == want[dx],
           "differs from the CPU's bits");
    Bytes kept = keptOf(floatsOf(got[y]));
    expectSameBits(prefix + "/mask", keptOf(floatsOf(got[dx])), kept,
                   "blpa_dropout_grad drops other elements than blpa_dropout");
    if (!previous.empty())
      report(prefix + "/new_mask", kept != previous,
             "the mask did not change with the step or seed");
    previous = kept;
  }
  setDropoutStep(0, 0);
}

void testDropouts() {
  for (size_t numel : {size_t(1), size_t(7), size_t(100003)})
    testDropout(0.3, numel, 20240611, 0, 0);
  testDropout(0.3, 10007, 20240611, 1, 0);
  testDropout(0.1, 10007, 7, 12, 5);
  testDropout(0.5, 10007, 7, 12, -5);
  testDropout(0.9, 10007, 0x9e3779b97f4a7c15ull, (uint64_t(1) << 40) + 7,
              int64_t(1) << 35);
  testDropout(0.0, 1001, 3, 4, 2);
  testDropoutReplay();
}

void testReduceSumTo(const char *name, Int64s inDims, Int64s outDims,
                     double scale) {
  Case k(std::string("reduce_sum_to/") + name);
  int x = k.in(randomFloats(product(inDims))),
      y = k.out("y", size_t(product(outDims)));
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_reduce_sum_to(ctx, p.f(x), p.f(y), int64_t(inDims.size()),
                          inDims.data(), outDims.data(), scale);
  });
}

void testCopy(size_t bytes) {
  Bytes src = bytesOf(randomFloats(bytes / 4 + 1));
  src.resize(bytes);
  Case k("copy/" + std::to_string(bytes));
  int in = k.in(src), out = k.bytesOut("dst", bytes);
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_copy(ctx, p.raw(out), p.raw(in), int64_t(bytes));
  });
}

void testFill(size_t numel, double value) {
  Case k("fill/" + std::to_string(numel));
  int y = k.out("y", numel, 0);
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_fill(ctx, p.f(y), int64_t(numel), value);
  });
}

void testSgd(size_t numel, const Hyper &h) {
  setHyper(h);
  Case k("sgd_update/" + std::to_string(numel) +
         (h.skipUpdate ? "/skip_update" : ""));
  double tol = h.skipUpdate ? 0 : floatTol;
  int param = k.inOut("param", randomFloats(numel), tol),
      grad = k.in(randomFloats(numel)),
      mom = k.inOut("momentum", randomFloats(numel), tol),
      gradOut = k.out("grad_out", numel, 0);
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_sgd_update(ctx, p.f(param), p.f(grad), p.f(mom), p.f(gradOut),
                       int64_t(numel));
  });
  setHyper(defaultHyper);
}

//===----------------------------------------------------------------------===//
// Pooling
//===----------------------------------------------------------------------===//

using PoolCase = blpa_test::PoolGeometry;

/// Max pooling only: a window entirely in the padding, no planes at all,
/// and dilated windows.
std::vector<PoolCase> maxOnlyPoolCases() {
  std::vector<PoolCase> cases = {
      blpa_test::allPaddingPool,
      {"empty_batch", 0, 3, {{5, 5}, {2, 2}, {2, 2}, {0, 0, 0, 0}}}};
  for (const PoolCase &pc : blpa_test::dilatedPoolGeometries())
    cases.push_back(pc);
  return cases;
}

/// The smallest code width of Runtime.h that holds every window position.
int argmaxBits(int64_t positions) {
  for (int bits : {1, 2, 4, 8})
    if (positions <= (1 << bits))
      return bits;
  return 0;
}

/// blpa_max_pool_argmax at `bits` against the CPU, its y against the CUDA
/// blpa_max_pool's, and blpa_max_pool_grad_argmax against the CUDA
/// blpa_max_pool_grad (Runtime.h: bitwise the same).
void testMaxPoolArgmax(const std::string &base, const PoolCase &pc, int bits,
                       const Floats &x, const Floats &dy, const Results &fwd,
                       const Results &grad) {
  std::string name = base + "/argmax_" + std::to_string(bits) + "bit";
  Case k(name);
  int xIn = k.in(x), y = k.out("y", pc.ySize(), 0),
      codes = k.codes("codes", pc.ySize(), bits, 0);
  Results r = k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_max_pool_argmax(ctx, p.f(xIn), p.f(y), p.u8(codes), pc.n, pc.c,
                            WINDOW_ARGS(pc.win), bits);
  });
  expectSameBits(name + "/matches_max_pool", r.gpuBytes("y"), fwd.gpuBytes("y"),
                 "y differs from the CUDA blpa_max_pool's");

  Case g(base + "/grad_argmax_" + std::to_string(bits) + "bit");
  int dyIn = g.in(dy), codesIn = g.in(r.cpuBytes("codes")),
      dx = g.out("dx", pc.xSize());
  Results gr = g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_max_pool_grad_argmax(ctx, p.f(dyIn), p.u8(codesIn), p.f(dx), pc.n,
                                 pc.c, WINDOW_ARGS(pc.win), bits);
  });
  expectSameBits(g.name + "/matches_max_pool_grad", gr.gpuBytes("dx"),
                 grad.gpuBytes("dx"),
                 "dx differs from the CUDA blpa_max_pool_grad's");
}

/// `ties`: small integers, many equal values per window, where the first
/// maximum in row-major window order must win on both runtimes.
void testMaxPool(const PoolCase &pc, bool ties) {
  std::string base =
      std::string("max_pool/") + pc.name + (ties ? "/ties" : "/distinct");
  Floats x = ties ? randomInts(pc.xSize(), -3, -1) : randomFloats(pc.xSize()),
         dy = randomFloats(pc.ySize());
  Case k(base + "/forward");
  int xIn = k.in(x), y = k.out("y", pc.ySize(), 0);
  Results fwd = k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_max_pool(ctx, p.f(xIn), p.f(y), pc.n, pc.c, WINDOW_ARGS(pc.win));
  });
  Case g(base + "/grad");
  int dyIn = g.in(dy), xGradIn = g.in(x), dx = g.out("dx", pc.xSize());
  Results grad = g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_max_pool_grad(ctx, p.f(dyIn), p.f(xGradIn), p.f(dx), pc.n, pc.c,
                          WINDOW_ARGS(pc.win));
  });
  // The narrowest width that fits the window, and the widest.
  int minBits = argmaxBits(pc.win.kernelSize());
  testMaxPoolArgmax(base, pc, minBits, x, dy, fwd, grad);
  if (minBits != 8)
    testMaxPoolArgmax(base, pc, 8, x, dy, fwd, grad);
}

void testAvgPool(const PoolCase &pc, int64_t countIncludePad) {
  std::string base = std::string("avg_pool/") + pc.name +
                     (countIncludePad ? "/include_pad" : "/exclude_pad");
  Case k(base + "/forward");
  int x = k.in(randomFloats(pc.xSize())), y = k.out("y", pc.ySize());
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_avg_pool(ctx, p.f(x), p.f(y), pc.n, pc.c, WINDOW_ARGS(pc.win),
                     countIncludePad);
  });
  Case g(base + "/grad");
  int dy = g.in(randomFloats(pc.ySize())), dx = g.out("dx", pc.xSize());
  g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_avg_pool_grad(ctx, p.f(dy), p.f(dx), pc.n, pc.c,
                          WINDOW_ARGS(pc.win), countIncludePad);
  });
}

void testGlobalAvgPool(int64_t n, int64_t c, int64_t spatial) {
  std::string base = "global_avg_pool/" + std::to_string(n) + "x" +
                     std::to_string(c) + "x" + std::to_string(spatial);
  Case k(base + "/forward");
  int x = k.in(randomFloats(n * c * spatial)), y = k.out("y", n * c);
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_global_avg_pool(ctx, p.f(x), p.f(y), n, c, spatial);
  });
  Case g(base + "/grad");
  int dy = g.in(randomFloats(n * c)), dx = g.out("dx", n * c * spatial);
  g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_global_avg_pool_grad(ctx, p.f(dy), p.f(dx), n, c, spatial);
  });
}

//===----------------------------------------------------------------------===//
// Gemm and loss
//===----------------------------------------------------------------------===//

void testGemm(int64_t m, int64_t n, int64_t k, bool transA, bool transB,
              double alpha, double beta, int64_t cRows, int64_t cCols) {
  Case g(format("gemm/%lldx%lldx%lld_t%d%d_c%lldx%lld", (long long)m,
                (long long)n, (long long)k, transA, transB, (long long)cRows,
                (long long)cCols));
  int a = g.in(randomFloats(m * k)), b = g.in(randomFloats(k * n)),
      c = g.in(randomFloats(std::max<int64_t>(cRows * cCols, 1))),
      y = g.out("y", m * n);
  g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_gemm(ctx, p.f(a), p.f(b), cRows ? p.f(c) : nullptr, p.f(y), m, n, k,
                 transA, transB, alpha, beta, cRows, cCols);
  });
}

/// aBatch and bBatch (1 or batch) say which operand is broadcast.
void testBatchMatMul(int64_t batch, int64_t m, int64_t n, int64_t k,
                     bool transA, bool transB, int64_t aBatch, int64_t bBatch) {
  Case g(format("batch_matmul/%lldx%lldx%lldx%lld_t%d%d_a%lld_b%lld",
                (long long)batch, (long long)m, (long long)n, (long long)k,
                transA, transB, (long long)aBatch, (long long)bBatch));
  int a = g.in(randomFloats(aBatch * m * k)),
      b = g.in(randomFloats(bBatch * k * n)), y = g.out("y", batch * m * n);
  g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_batch_matmul(ctx, p.f(a), p.f(b), p.f(y), batch, m, n, k, transA,
                         transB, aBatch, bBatch);
  });
}

void testSoftmaxCrossEntropy(int64_t n, int64_t classes, float spread) {
  std::string base = "softmax_cross_entropy/" + std::to_string(n) + "x" +
                     std::to_string(classes);
  // A wide spread of logits overflows a naive exp.
  Floats logits = randomFloats(n * classes, -spread, spread);
  Int64s labels = randomLabels(n, classes);
  Case k(base + "/loss");
  int logitsIn = k.in(logits), labelsIn = k.in(labels), loss = k.out("loss", 1);
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_softmax_cross_entropy(ctx, p.f(logitsIn), p.i64(labelsIn),
                                  p.f(loss), n, classes);
  });
  Case g(base + "/grad");
  int gLogits = g.in(logits), gLabels = g.in(labels),
      dloss = g.in(Floats{0.7f}), dlogits = g.out("dlogits", n * classes);
  g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_softmax_cross_entropy_grad(ctx, p.f(gLogits), p.i64(gLabels),
                                       p.f(dloss), p.f(dlogits), n, classes);
  });
}

/// Softmax and log-softmax along the middle axis of [outer, length, inner]
/// and their gradients (from outputs in the forward's range), out of place
/// and in place.
void testSoftmax(const char *name, int64_t outer, int64_t length, int64_t inner,
                 float spread) {
  size_t numel = size_t(outer * length * inner);
  Floats x = randomFloats(numel, -spread, spread), dy = randomFloats(numel);
  for (bool log : {false, true}) {
    auto forward = log ? &Api::blpa_log_softmax : &Api::blpa_softmax;
    auto backward = log ? &Api::blpa_log_softmax_grad : &Api::blpa_softmax_grad;
    std::string base = std::string(log ? "log_softmax/" : "softmax/") + name;
    Floats y = log ? randomFloats(numel, -8, 0) : randomFloats(numel, 0, 1);
    for (bool inPlace : {false, true}) {
      std::string suffix = inPlace ? "/in_place" : "";
      Case f(base + "/forward" + suffix);
      auto [fx, fy] = f.operandAndResult(x, inPlace, "y");
      f.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
        (rt.*forward)(ctx, p.f(fx), p.f(fy), outer, length, inner);
      });
      Case g(base + "/grad" + suffix);
      int gy = g.in(y);
      auto [gdy, gdx] = g.operandAndResult(dy, inPlace, "dx");
      g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
        (rt.*backward)(ctx, p.f(gdy), p.f(gy), p.f(gdx), outer, length, inner);
      });
    }
  }
}

//===----------------------------------------------------------------------===//
// Activation codes
//===----------------------------------------------------------------------===//

/// Odd spatial sizes, so that code bytes straddle (n, c) slices.
const BnShape codeShapes[] = {
    {"4d", 3, 3, 7 * 5},
    {"2d", 37, 16, 1},
    {"large_odd_planes", 4, 5, 43 * 41},
    {"many_blocks", 16, 19, 27 * 29},
};

/// Gammas of every sign with betas of both signs, including |beta/gamma|
/// large enough to clip every value and clamp the shift (as
/// RuntimeKernelTest).
const float bnGammas[16] = {1.3f,  -0.7f, 0.0f,  0.05f, -0.03f, 2.5f,
                            -1.9f, 0.8f,  0.0f,  -1.1f, 0.6f,   1.0f,
                            -0.4f, 3.0f,  -2.2f, 0.02f};
const float bnBetas[16] = {-0.5f, 2.2f,  1.5f,  0.4f, -3.0f, 0.0f,
                           -0.3f, 1.0f,  -2.0f, 0.7f, -1.2f, 0.1f,
                           2.5f,  -0.8f, 0.3f,  -1.0f};

BnData bnCodeData(const BnShape &s) {
  BnData d = {s.n, s.c, s.spatial, {}, {}, {}};
  d.x = randomNormals(d.numel(), 1.5f, 2.0f);
  // Channel 5 (beta 0) is constant, so y is exactly 0 there: on the ReLU
  // edge, which must encode as negative on both runtimes.
  for (size_t i = 0; i < d.numel(); ++i)
    if (d.channelOf(i) == 5)
      d.x[i] = 0.25f;
  for (int64_t ch = 0; ch < d.c; ++ch) {
    d.scale.push_back(bnGammas[ch % 16]);
    d.bias.push_back(bnBetas[ch % 16]);
  }
  return d;
}

/// blpa_batch_norm_train_encode or blpa_batch_norm_relu_train_encode.
Results bnEncode(const std::string &name, const BnData &d, int bits,
                 bool withRelu) {
  Case k(name);
  int x = k.in(d.x), scale = k.in(d.scale), bias = k.in(d.bias);
  int y = k.out("y", d.numel()), mean = k.out("mean", d.c),
      invStd = k.out("inv_std", d.c),
      codes = k.codes("codes", d.numel(), bits, codeSlack);
  return k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    auto kernel = withRelu ? rt.blpa_batch_norm_relu_train_encode
                           : rt.blpa_batch_norm_train_encode;
    kernel(ctx, p.f(x), p.f(scale), p.f(bias), p.f(y), p.f(mean), p.f(invStd),
           p.u8(codes), d.n, d.c, d.spatial, bnEps, bits);
  });
}

void testBnDecode(const std::string &base, const BnData &d, const Bytes &codes,
                  int bits) {
  for (int64_t withRelu : {0, 1}) {
    Case k(base + (withRelu ? "/decode_relu" : "/decode"));
    int codesIn = k.in(codes), scale = k.in(d.scale), bias = k.in(d.bias),
        y = k.out("y", d.numel(), floatTol, withRelu);
    k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
      rt.blpa_bn_decode(ctx, p.u8(codesIn), p.f(scale), p.f(bias), p.f(y), d.n,
                        d.c, d.spatial, bits, withRelu);
    });
  }
}

/// blpa_batch_norm_grad_decode or its ReLU form, dx over dy when `inPlace`.
void testBnGradDecode(const std::string &base, const BnData &d,
                      const Results &enc, const Floats &dy, int bits,
                      bool withRelu, bool inPlace) {
  Case k(base + (withRelu ? "/relu_grad_decode" : "/grad_decode") +
         (inPlace ? "_in_place" : ""));
  int dyIn, dx;
  std::tie(dyIn, dx) = k.operandAndResult(dy, inPlace, "dx");
  int codes = k.in(enc.cpuBytes("codes")), scale = k.in(d.scale),
      bias = k.in(d.bias), invStd = k.in(enc.cpuFloats("inv_std"));
  int dscale = k.out("dscale", d.c), dbias = k.out("dbias", d.c);
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    auto kernel = withRelu ? rt.blpa_batch_norm_relu_grad_decode
                           : rt.blpa_batch_norm_grad_decode;
    kernel(ctx, p.f(dyIn), p.u8(codes), p.f(scale), p.f(bias), p.f(invStd),
           p.f(dx), p.f(dscale), p.f(dbias), d.n, d.c, d.spatial, bits);
  });
}

void testBnCodes(const BnShape &s, int bits) {
  std::string base =
      std::string("bn_codes/") + s.name + "/" + std::to_string(bits) + "bit";
  BnData d = bnCodeData(s);
  Results train = bnTrain(base + "/train", d, false);
  Results enc = bnEncode(base + "/encode", d, bits, false);
  expectSameBits(base + "/encode/matches_train",
                 bnOutputs(enc, enc.gpuFloats("y")),
                 bnOutputs(train, train.gpuFloats("y")),
                 "y, mean or inv_std differ from the CUDA "
                 "blpa_batch_norm_train's");
  Results reluEnc = bnEncode(base + "/relu_encode", d, bits, true);
  Bytes reluCodesAndStats = bnOutputs(reluEnc, reluEnc.gpuFloats("y")),
        encCodesAndStats = bnOutputs(enc, relu(enc.gpuFloats("y")));
  const Bytes &reluCodes = reluEnc.gpuBytes("codes");
  const Bytes &encCodes = enc.gpuBytes("codes");
  reluCodesAndStats.insert(reluCodesAndStats.end(), reluCodes.begin(),
                           reluCodes.end());
  encCodesAndStats.insert(encCodesAndStats.end(), encCodes.begin(),
                          encCodes.end());
  expectSameBits(base + "/relu_encode/matches_encode", reluCodesAndStats,
                 encCodesAndStats,
                 "differs from the CUDA blpa_batch_norm_train_encode and a "
                 "ReLU");

  testBnDecode(base, d, enc.cpuBytes("codes"), bits);
  Floats dy = randomFloats(d.numel());
  for (bool withRelu : {false, true})
    for (bool inPlace : {false, true})
      testBnGradDecode(base, d, enc, dy, bits, withRelu, inPlace);
}

/// Test data per scheme: AFFINE gets a constant channel and one far from 0,
/// NONNEG (ReLU outputs, many exact zeros) an all-zero channel.
Floats quantizeInput(int64_t n, int64_t c, int64_t spatial, int64_t scheme) {
  Floats x = randomFloats(n * c * spatial, -2.0f, 3.0f);
  for (size_t i = 0; i < x.size(); ++i) {
    int64_t ch = int64_t(i) / spatial % c;
    if (scheme == BLPA_SCHEME_AFFINE && ch == 1)
      x[i] = 0.75f;
    if (scheme == BLPA_SCHEME_AFFINE && ch == 2)
      x[i] += 1000.0f;
    if (scheme == BLPA_SCHEME_NONNEG)
      x[i] = ch == 1 ? 0.0f : std::max(x[i], 0.0f);
    if (scheme == BLPA_SCHEME_MASK && i % 7 == 0)
      x[i] = 0.0f;
  }
  return x;
}

/// blpa_quantize, then blpa_dequantize of the CPU's codes and parameters.
void testQuantize(const BnShape &s, int64_t scheme, int bits) {
  const char *const schemes[] = {"affine", "nonneg", "mask"};
  std::string base = std::string("quantize/") + schemes[scheme] + "/" + s.name +
                     "/" + std::to_string(bits) + "bit";
  bool mask = scheme == BLPA_SCHEME_MASK;
  size_t numel = s.n * s.c * s.spatial;
  Case k(base + "/encode");
  int x = k.in(quantizeInput(s.n, s.c, s.spatial, scheme));
  int codes = k.codes("codes", numel, bits, mask ? 0 : codeSlack);
  int params = mask ? -1 : k.out("params", 2 * s.c);
  Results r = k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_quantize(ctx, p.f(x), p.u8(codes), mask ? nullptr : p.f(params),
                     s.n, s.c, s.spatial, bits, scheme);
  });

  Case dq(base + "/decode");
  int codesIn = dq.in(r.cpuBytes("codes"));
  int paramsIn = mask ? -1 : dq.in(r.cpuFloats("params"));
  int y = dq.out("y", numel);
  dq.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_dequantize(ctx, p.u8(codesIn), mask ? nullptr : p.f(paramsIn),
                       p.f(y), s.n, s.c, s.spatial, bits, scheme);
  });
}

//===----------------------------------------------------------------------===//
// Recorded steps and errors
//===----------------------------------------------------------------------===//

/// A step of several kernels that read the hyper-parameters, run four times
/// with replay_steps on both runtimes, changing them between runs: the CUDA
/// runtime runs it plainly, records it, then replays the recording, which
/// must use each run's values. Each run's step time must be plausible.
void testReplay() {
  const Hyper hypers[] = {{0.1f, 0.9f, 5e-4f, 0},
                          {0.05f, 0.8f, 1e-3f, 0},
                          {0.2f, 0.9f, 0.0f, 1},
                          {0.01f, 0.5f, 5e-4f, 0}};
  const int64_t numel = 10007, c = 9, count = 37;
  Case k("replay");
  int param = k.inOut("param", randomFloats(numel)),
      grad = k.in(randomFloats(numel)),
      mom = k.inOut("momentum", randomFloats(numel)),
      gradOut = k.out("grad_out", numel, 0),
      runMean = k.inOut("running_mean", randomFloats(c)),
      runVar = k.inOut("running_var", randomFloats(c, 0.5f, 2.0f)),
      mean = k.in(randomFloats(c)), invStd = k.in(randomFloats(c, 0.5f, 3.0f)),
      loss = k.out("filled", 3, 0);
  Kernel step = [&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_fill(ctx, p.f(loss), 3, 1.0);
    rt.blpa_sgd_update(ctx, p.f(param), p.f(grad), p.f(mom), p.f(gradOut),
                       numel);
    rt.blpa_update_running_stats(ctx, p.f(runMean), p.f(runVar), p.f(mean),
                                 p.f(invStd), c, count, 0.9, 1e-3);
  };
  currentCase = k.name;
  const void *tag = nextTag();
  Placement cpu(cpuSide, k.buffers), gpu(gpuSide, k.buffers);
  cpu.upload();
  gpu.upload();
  for (int run = 0; run < 4; ++run) {
    setHyper(hypers[run]);
    cpuSide.run(step, cpu.ptrs, tag, true);
    gpuSide.run(step, gpu.ptrs, tag, true);
    std::string prefix = k.name + "/run" + std::to_string(run + 1);
    k.compare(prefix, gpu.download(), cpu.download());
    double seconds = gpuSide.api.blpa_runtime_last_step_seconds(&gpuSide.ctx);
    report(prefix + "/last_step_seconds", seconds >= 0 && seconds < 60,
           format("blpa_runtime_last_step_seconds gave %g", seconds));
  }
  setHyper(defaultHyper);
}

/// The child process of testBadLabels: a loss over an out-of-range label,
/// which must end the process through blpa_runtime_fail. With `replay`, the
/// step is recorded with valid labels and the bad one comes in a replay.
int badLabelChild(int64_t bad, bool replay) {
  gpuSide.init();
  const int64_t n = 3, classes = 5;
  Case k("bad_label");
  int logits = k.in(randomFloats(n * classes)), labels = k.in(Int64s{0, 1, 2}),
      loss = k.out("loss", 1);
  Kernel kernel = [&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_softmax_cross_entropy(ctx, p.f(logits), p.i64(labels), p.f(loss), n,
                                  classes);
  };
  Placement gpu(gpuSide, k.buffers);
  const void *tag = nextTag();
  for (int run = 0; replay && run < 2; ++run)
    gpu.run(kernel, tag, true);
  k.buffers[labels].initial = bytesOf(Int64s{0, bad, 2});
  gpu.run(kernel, tag, replay);
  return 0; // not failing is the error the parent reports
}

/// Runs this executable as a badLabelChild and expects exit status 1 with
/// the runtime error naming the loss kernel and the label on stderr.
void expectBadLabelFails(const char *self, int64_t bad, bool replay) {
  std::string name = "softmax_cross_entropy/label_" + std::to_string(bad) +
                     (replay ? "/replayed" : "");
  currentCase = name;
  std::string badArg = std::to_string(bad), replayArg = replay ? "1" : "0";
  char *const args[] = {const_cast<char *>(self),
                        const_cast<char *>("--bad-label-child"),
                        const_cast<char *>(badArg.c_str()),
                        const_cast<char *>(replayArg.c_str()), nullptr};
  int fds[2];
  if (pipe(fds) != 0)
    return report(name, false, "pipe failed");
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return report(name, false, "fork failed");
  }
  if (pid == 0) {
    // Only exec here: the parent's CUDA and OpenMP state is not usable in a
    // forked child, a fresh process is.
    dup2(fds[1], 2);
    close(fds[0]);
    close(fds[1]);
    execv("/proc/self/exe", args);
    _exit(127);
  }
  close(fds[1]);
  std::string err;
  char buf[256];
  for (ssize_t got; (got = read(fds[0], buf, sizeof(buf))) > 0;)
    err.append(buf, size_t(got));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  bool exitedWith1 = WIFEXITED(status) && WEXITSTATUS(status) == 1;
  bool message = err.find("blpa runtime error: blpa_softmax_cross_entropy") !=
                     std::string::npos &&
                 err.find("label") != std::string::npos;
  report(name, exitedWith1 && message,
         "expected exit status 1 and \"blpa runtime error: "
         "blpa_softmax_cross_entropy...label...\" on stderr, got status " +
             std::to_string(status) + " and \"" + err + "\"");
}

void testBadLabels(const char *self) {
  expectBadLabelFails(self, 5, false);
  expectBadLabelFails(self, -1, false);
  expectBadLabelFails(self, 5, true);
}

//===----------------------------------------------------------------------===//
// All tests
//===----------------------------------------------------------------------===//

void testKernels() {
  for (const ConvGeometry &geometry : convGeometries())
    testConv(ConvCase{geometry});

  for (const BnShape &s : bnShapes)
    testBatchNorm(s);
  for (int32_t skip : {0, 1}) {
    testRunningStats(9, 37, skip);
    testRunningStats(300, 2, skip);
  }

  for (size_t numel : {size_t(1), size_t(7), size_t(50001)})
    testRelu(numel);
  testAdd("channel_bias", {2, 3, 5, 7}, {2, 3, 5, 7}, {1, 3, 1, 1});
  testAdd("outer_product", {4, 5, 6}, {4, 1, 6}, {1, 5, 1});
  testAdd("scalar_plus_matrix", {3, 4}, {1, 1}, {3, 4});
  testAdd("row_bias", {9, 17}, {9, 17}, {1, 17});
  testAdd("column_bias", {9, 17}, {9, 1}, {9, 17});
  testAdd("same_shape_large", {3, 7, 1001}, {3, 7, 1001}, {3, 7, 1001});
  testAdd("rank5", {2, 3, 1, 4, 5}, {2, 1, 1, 4, 1}, {1, 3, 1, 1, 5});
  testActivation("sigmoid", BLPA_ACT_SIGMOID, 0, 0);
  testActivation("hard_sigmoid", BLPA_ACT_HARD_SIGMOID, 0.2, 0.5);
  testActivation("hard_swish", BLPA_ACT_HARD_SWISH, 0, 0);
  testActivation("clip", BLPA_ACT_CLIP, 0, 6);
  testActivationRegions();
  testCopyStrided(6, 35, 35, 91, 0, 14);
  testCopyStrided(1, 100003, 100003, 100003, 0, 0);
  testCopyStrided(4, 7, 21, 7, 5, 0);
  // An axis-0 concatenation or slice of a tensor over 2 GiB: one row whose
  // stride is past the largest pitch of cudaMemcpy2DAsync (2^31 - 1 bytes).
  testCopyStrided(1, 1000, (int64_t(1) << 29) + 7, 1000, 3, 0);
  testCopyStrided(1, 777, 777, int64_t(1) << 30, 0, 5);
  testPad("nchw_spatial", {2, 3, 5, 7}, {0, 0, 1, 2}, {0, 0, 2, 0});
  testPad("crop", {2, 3, 9, 8}, {0, 0, -1, -2}, {0, 0, -3, 0});
  testPad("channels", {3, 4, 5}, {0, 2, 0}, {0, 1, 0});
  for (int64_t mode : {BLPA_PAD_REFLECT, BLPA_PAD_EDGE}) {
    testPadMode("rank2_asymmetric", mode, {5, 9}, {1, 4}, {3, 2});
    testPadMode("nchw_spatial", mode, {2, 3, 5, 7}, {0, 0, 1, 2}, {0, 0, 2, 0});
  }
  testTranspose("matrix", {37, 53}, {1, 0});
  testTranspose("channel_shuffle", {4, 3, 8, 7, 9}, {0, 2, 1, 3, 4});
  testTranspose("nchw_to_nhwc", {8, 64, 28, 28}, {0, 2, 3, 1});
  testTranspose("pixel_shuffle", {2, 3, 2, 2, 5, 6}, {0, 1, 4, 2, 5, 3});
  testTranspose("reverse", {3, 17, 5, 40}, {3, 2, 1, 0});
  testTranspose("reverse_tiled", {40, 3, 5, 33}, {3, 2, 1, 0});
  testReduceSumTo("nchw_to_c", {5, 7, 9, 11}, {1, 7, 1, 1}, 1.0);
  testReduceSumTo("rows_to_row", {37, 1100}, {1, 1100}, 0.5);
  testReduceSumTo("middle", {6, 5, 7}, {6, 1, 7}, 1.0);
  testReduceSumTo("outer_and_inner", {4, 3, 5, 2}, {1, 3, 1, 2}, -2.0);
  testReduceSumTo("all", {3, 5, 7}, {1, 1, 1}, 1.0);
  testReduceSumTo("none", {3, 5}, {3, 5}, 3.0);
  testReduceSumTo("large_to_c", {32, 64, 28, 28}, {1, 64, 1, 1}, 1.0);
  testReduceSumTo("large_all", {257, 1031}, {1, 1}, 1.0);
  for (size_t bytes : {size_t(1), size_t(4003), (size_t(1) << 20) + 1})
    testCopy(bytes);
  testFill(1, -3.5);
  testFill(70001, 1.25);
  for (size_t numel : {size_t(5), size_t(40003)}) {
    testSgd(numel, defaultHyper);
    testSgd(numel, {0.01f, 0.0f, 0.0f, 0});
    testSgd(numel, {0.1f, 0.9f, 5e-4f, 1});
  }

  for (const PoolCase &pc : blpa_test::poolGeometries()) {
    for (bool ties : {false, true})
      testMaxPool(pc, ties);
    for (int64_t includePad : {0, 1})
      testAvgPool(pc, includePad);
  }
  for (const PoolCase &pc : maxOnlyPoolCases())
    testMaxPool(pc, false);
  testGlobalAvgPool(5, 7, 13 * 11);
  testGlobalAvgPool(32, 512, 7 * 7);
  testGlobalAvgPool(3, 5, 1);

  testGemm(17, 13, 29, false, false, 1.0, 0.0, 0, 0);
  testGemm(17, 13, 29, true, false, 0.5, 1.0, 1, 13);
  testGemm(17, 13, 29, false, true, 1.0, 2.0, 17, 1);
  testGemm(17, 13, 29, true, true, -1.5, 0.5, 17, 13);
  testGemm(17, 13, 29, false, true, 1.0, 1.0, 1, 1);
  testGemm(64, 100, 300, false, true, 1.0, 1.0, 1, 100);
  testGemm(1, 10, 512, false, true, 1.0, 1.0, 1, 10);
  testGemm(128, 256, 512, false, false, 1.0, 1.0, 128, 256);
  testGemm(512, 384, 128, true, false, 1.0, 0.0, 0, 0);
  testBatchMatMul(3, 17, 13, 29, false, false, 3, 3);
  testBatchMatMul(3, 17, 13, 29, true, true, 3, 3);
  testBatchMatMul(5, 7, 9, 11, false, true, 1, 5);
  testBatchMatMul(5, 7, 9, 11, true, false, 5, 1);
  testBatchMatMul(32, 64, 64, 16, false, true, 32, 32);
  testBatchMatMul(2, 3, 4, 0, false, false, 2, 2);
  testSoftmaxCrossEntropy(9, 11, 50.0f);
  testSoftmaxCrossEntropy(64, 1000, 5.0f);
  testSoftmaxCrossEntropy(1, 2, 1.0f);
  testSoftmaxCrossEntropy(33, 10, 30.0f);
  testSoftmax("last_axis_9x11", 9, 11, 1, 50.0f);
  testSoftmax("classifier_256x1000", 256, 1000, 1, 10.0f);
  testSoftmax("channels_8x64x784", 8, 64, 28 * 28, 5.0f);
  testSoftmax("first_axis_6x35", 1, 6, 35, 5.0f);
  testSoftmax("coerced_4x75", 4, 3 * 5 * 5, 1, 5.0f);

  for (const BnShape &s : codeShapes) {
    for (int bits : {2, 4, 8}) {
      testBnCodes(s, bits);
      testQuantize(s, BLPA_SCHEME_AFFINE, bits);
      testQuantize(s, BLPA_SCHEME_NONNEG, bits);
    }
    testQuantize(s, BLPA_SCHEME_MASK, 1);
  }

  testReplay();
  testDropouts();
}

} // namespace

int main(int argc, char **argv) {
  if (argc == 4 && std::strcmp(argv[1], "--bad-label-child") == 0)
    return badLabelChild(std::atoll(argv[2]), std::atoi(argv[3]) != 0);
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--verbose") == 0) {
      verbose = true;
    } else if (std::strcmp(argv[i], "--no-graphs") == 0) {
      useGraphs = false;
    } else {
      std::fprintf(stderr, "usage: %s [--verbose] [--no-graphs]\n", argv[0]);
      return 2;
    }
  }

  int devices = 0;
  cudaError_t status = cudaGetDeviceCount(&devices);
  if (status != cudaSuccess || devices == 0) {
    std::printf("blpa-cuda-kernel-test: skipped: no CUDA device (%s)\n",
                status != cudaSuccess ? cudaGetErrorString(status)
                                      : "no devices");
    return 0;
  }
  std::atexit(reportUnfinished);

  testBadLabels(argv[0]);
  cpuSide.init();
  gpuSide.init();
  testRuntime();
  testKernels();
  gpuSide.shutdown();
  cpuSide.shutdown();

  finished = true;
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
