//===- CudaKernelTest.cpp - CUDA runtime kernels vs the CPU runtime ------===//
//
// Every kernel of blpa/Runtime/Runtime.h runs on the CUDA runtime and on the
// CPU runtime (itself checked against double references by
// RuntimeKernelTest.cpp) with the same seeded random inputs: the cases of
// KernelCases.h, through KernelHarness.h, compared as a GPU's arithmetic
// allows: floats within 1e-4 of the largest CPU magnitude (exactly where
// Runtime.h promises it: copies, masks, max pooling, dropout); packed codes
// exactly, bar a tiny fraction off by one where the two runtimes' float
// inputs to a code differ by rounding (argmax codes and masks exactly).
//
// Both runtimes define the same C symbols: the build links a copy of the CPU
// runtime whose blpa_* symbols are renamed cpuref_blpa_* (see
// CudaKernelTest.cmake), and tables of function pointers (Api, Runtime) let
// one call site serve both. Every kernel runs through blpa_runtime_run, as
// generated steps do, so the CUDA runtime's device hyper-parameters and
// error flag are in play.
//
// Every CUDA kernel also runs a second time, then recorded into a CUDA graph
// and replayed (ctx->replay_steps, as the driver runs steps), and must
// reproduce its first run's bits each time. Here only: the runtime's memory
// functions, steps replayed while the hyper-parameters and the dropout step
// change, and out-of-range labels ending the process with the runtime's
// error.
//
// Output: one `FAIL name: detail` line per failing check (`--verbose` also
// prints `PASS name` lines), then `N passed, M failed`; exit status 0 iff
// nothing failed. Without a usable CUDA device: one `skipped` line, status
// 0. `--no-graphs` leaves out the graph runs; `--list` prints the cases and
// their count without running them (no device needed).
//
//===----------------------------------------------------------------------===//

#include "KernelCases.h"

#include <cuda_runtime.h>
#include <sys/wait.h>
#include <unistd.h>

/// The functions of Runtime.h besides the kernels that a runtime library
/// defines.
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
  X(blpa_runtime_fail)

// The CPU runtime's functions under the names the build gave them.
extern "C" {
#define BLPA_DECLARE_CPU_REFERENCE(name) decltype(::name) cpuref_##name;
BLPA_RUNTIME_FUNCTIONS(BLPA_DECLARE_CPU_REFERENCE)
BLPA_KERNELS(BLPA_DECLARE_CPU_REFERENCE)
#undef BLPA_DECLARE_CPU_REFERENCE
}

namespace {

using namespace blpa_test;

/// One runtime's memory and step functions, called as `rt.blpa_runtime_run`.
struct Runtime {
#define BLPA_RUNTIME_MEMBER(name) decltype(&::name) name;
  BLPA_RUNTIME_FUNCTIONS(BLPA_RUNTIME_MEMBER)
#undef BLPA_RUNTIME_MEMBER
};

#define BLPA_CUDA_ENTRY(name) &::name,
const Api cudaApi = {BLPA_KERNELS(BLPA_CUDA_ENTRY)};
const Runtime cudaRuntime = {BLPA_RUNTIME_FUNCTIONS(BLPA_CUDA_ENTRY)};
#undef BLPA_CUDA_ENTRY
#define BLPA_CPU_ENTRY(name) &cpuref_##name,
const Api cpuApi = {BLPA_KERNELS(BLPA_CPU_ENTRY)};
const Runtime cpuRuntime = {BLPA_RUNTIME_FUNCTIONS(BLPA_CPU_ENTRY)};
#undef BLPA_CPU_ENTRY

bool useGraphs = true;
/// The case running now, named if blpa_runtime_fail ends the process.
std::string currentCase = "setup";
bool finished = false;

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
// Running a kernel on a runtime
//===----------------------------------------------------------------------===//

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

/// One runtime library and its context.
struct Side {
  const char *name;
  const Api &api;
  const Runtime &rt;
  blpa_context ctx{};
  void *workspace = nullptr;

  static constexpr int64_t workspaceBytes = int64_t(64) << 20;

  void init() {
    ctx = blpa_context{};
    rt.blpa_runtime_init(&ctx);
    workspace = rt.blpa_runtime_alloc(&ctx, workspaceBytes);
    rt.blpa_runtime_set_workspace(&ctx, workspace, workspaceBytes);
  }

  void shutdown() {
    rt.blpa_runtime_set_workspace(&ctx, nullptr, 0);
    rt.blpa_runtime_release(&ctx, workspace);
    rt.blpa_runtime_shutdown(&ctx);
  }

  /// Runs `kernel` as a step. `tag` joins the bindings so that a recording
  /// of another case at the same addresses is never replayed for this one.
  void run(const Kernel &kernel, const Ptrs &ptrs, const void *tag,
           bool replay) {
    Closure closure = {&api, &ctx, &kernel, &ptrs};
    std::vector<const void *> bindings(ptrs.at.begin(), ptrs.at.end());
    bindings.push_back(tag);
    ctx.replay_steps = replay;
    rt.blpa_runtime_run(&ctx, runClosure, &closure, bindings.data(),
                        int64_t(bindings.size()));
  }
};

Side cpuSide = {"cpu", cpuApi, cpuRuntime};
Side gpuSide = {"cuda", cudaApi, cudaRuntime};

const void *nextTag() {
  static uintptr_t serial = 0;
  return reinterpret_cast<const void *>(++serial);
}

/// A case's buffers in one runtime's memory.
class Placement {
public:
  Placement(Side &side, const std::vector<Buffer> &buffers)
      : side(side), buffers(buffers) {
    // A buffer of its own even when empty.
    for (const Buffer &b : buffers)
      ptrs.at.push_back(side.rt.blpa_runtime_alloc(
          &side.ctx, std::max<int64_t>(1, int64_t(b.initial.size()))));
  }
  ~Placement() {
    for (void *p : ptrs.at)
      side.rt.blpa_runtime_release(&side.ctx, p);
  }
  Placement(const Placement &) = delete;
  Placement &operator=(const Placement &) = delete;

  void upload() const {
    for (size_t i = 0; i < buffers.size(); ++i)
      side.rt.blpa_runtime_upload(&side.ctx, ptrs.at[i],
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
      side.rt.blpa_runtime_download(&side.ctx, out[i].data(), ptrs.at[i],
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

/// Results of a case from its placements' current contents.
Results downloaded(const Case &c, const Placement &cpu, const Placement &gpu) {
  Results r;
  r.names = c.names();
  r.ref = cpu.download();
  r.got = gpu.download();
  return r;
}

/// The CUDA runtime against the CPU runtime, each through
/// blpa_runtime_run.
class GpuBackend : public Backend {
public:
  const Api &api() const override { return cudaApi; }
  const Api &refApi() const override { return cpuApi; }
  blpa_context *refContext() override { return &cpuSide.ctx; }
  std::vector<blpa_context *> contexts() override {
    return {&cpuSide.ctx, &gpuSide.ctx};
  }
  bool exactArithmetic() const override { return false; }

  Results run(const Case &c, const Kernel &kernel) override {
    currentCase = c.name;
    const void *tag = nextTag();
    Placement cpu(cpuSide, c.buffers), gpu(gpuSide, c.buffers);
    Results r;
    r.names = c.names();
    r.ref = cpu.run(kernel, tag, false);
    r.got = gpu.run(kernel, tag, false);
    checkRepeats(c, gpu, kernel, tag, r.got);
    return r;
  }

private:
  /// Runs the CUDA kernel again: plainly, then (with graphs) recorded into
  /// a CUDA graph and replayed, each time from the same inputs; every run
  /// must reproduce the first one's bits.
  void checkRepeats(const Case &c, const Placement &gpu, const Kernel &kernel,
                    const void *tag, const std::vector<Bytes> &first) const {
    // With replay_steps, the runtime runs a new binding set plainly first,
    // records it the second time and replays it from the third.
    static const char *const runs[] = {"a second run",
                                       "the run recorded into a CUDA graph",
                                       "a replay of the recorded graph"};
    for (int run = 0; run < (useGraphs ? 3 : 1); ++run) {
      std::vector<Bytes> again = gpu.run(kernel, tag, useGraphs);
      for (size_t i = 0; i < c.buffers.size(); ++i)
        if (again[i] != first[i])
          return report(c.name + "/repeat", false,
                        std::string(runs[run]) +
                            " differs from the first run in " +
                            c.buffers[i].name);
    }
    report(c.name + "/repeat", true, "");
  }
};

/// For --list: runs nothing on a device, names every case and hands back
/// the buffers' initial contents (the reference runtime serves the cases
/// that derive inputs from it).
class ListBackend : public Backend {
public:
  const Api &api() const override { return cudaApi; }
  const Api &refApi() const override { return cpuApi; }
  blpa_context *refContext() override { return &cpuSide.ctx; }
  std::vector<blpa_context *> contexts() override { return {&cpuSide.ctx}; }
  bool exactArithmetic() const override { return false; }

  Results run(const Case &c, const Kernel &) override {
    std::printf("%s\n", c.name.c_str());
    ++cases;
    Results r;
    r.names = c.names();
    for (const Buffer &b : c.buffers)
      r.ref.push_back(b.initial);
    r.got = r.ref;
    return r;
  }

  int cases = 0;
};

//===----------------------------------------------------------------------===//
// Runtime basics
//===----------------------------------------------------------------------===//

void testRuntime() {
  currentCase = "runtime";
  report("runtime/targets",
         std::strcmp(cpuRuntime.blpa_runtime_target(), "cpu") == 0 &&
             std::strcmp(cudaRuntime.blpa_runtime_target(), "cuda") == 0,
         "the renamed CPU runtime or the CUDA runtime has the wrong target");
  report("runtime/free_bytes", cudaRuntime.blpa_runtime_free_bytes() > 0,
         "no free device memory reported");

  const size_t bytes = (size_t(1) << 20) + 3;
  void *p = cudaRuntime.blpa_runtime_alloc(&gpuSide.ctx, int64_t(bytes));
  Bytes got(bytes, codeJunk);
  cudaRuntime.blpa_runtime_download(&gpuSide.ctx, got.data(), p,
                                    int64_t(bytes));
  report("runtime/alloc_zeroed",
         std::all_of(got.begin(), got.end(), [](uint8_t b) { return b == 0; }),
         "blpa_runtime_alloc memory is not zero-filled");
  Bytes data = bytesOf(randomFloats(bytes / 4 + 1));
  data.resize(bytes);
  cudaRuntime.blpa_runtime_upload(&gpuSide.ctx, p, data.data(), int64_t(bytes));
  cudaRuntime.blpa_runtime_download(&gpuSide.ctx, got.data(), p,
                                    int64_t(bytes));
  report("runtime/upload_download", got == data,
         "downloaded bytes differ from the uploaded ones");
  cudaRuntime.blpa_runtime_release(&gpuSide.ctx, p);
}

//===----------------------------------------------------------------------===//
// Recorded steps and errors
//===----------------------------------------------------------------------===//

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
      dy = k.in(awayFromZero(randomFloats(numel))),
      y = k.out("y", numel, exactTol), dx = k.out("dx", numel, exactTol);
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
    Results r = downloaded(k, cpu, gpu);
    const std::vector<Bytes> &got = r.got, &want = r.ref;
    k.compare(prefix, r);
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
      gradOut = k.out("grad_out", numel, exactTol),
      runMean = k.inOut("running_mean", randomFloats(c)),
      runVar = k.inOut("running_var", randomFloats(c, 0.5f, 2.0f)),
      mean = k.in(randomFloats(c)), invStd = k.in(randomFloats(c, 0.5f, 3.0f)),
      loss = k.out("filled", 3, exactTol);
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
    k.compare(prefix, downloaded(k, cpu, gpu));
    double seconds = gpuSide.rt.blpa_runtime_last_step_seconds(&gpuSide.ctx);
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
                                  classes, -100);
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

} // namespace

int main(int argc, char **argv) {
  if (argc == 4 && std::strcmp(argv[1], "--bad-label-child") == 0)
    return badLabelChild(std::atoll(argv[2]), std::atoi(argv[3]) != 0);
  bool list = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--verbose") == 0) {
      verbose = true;
    } else if (std::strcmp(argv[i], "--no-graphs") == 0) {
      useGraphs = false;
    } else if (std::strcmp(argv[i], "--list") == 0) {
      list = true;
    } else {
      std::fprintf(stderr, "usage: %s [--verbose] [--no-graphs] [--list]\n",
                   argv[0]);
      return 2;
    }
  }

  if (list) {
    // The reference runtime alone, on the host; what the comparisons of
    // unrun cases would say is not printed.
    ListBackend lister;
    cpuSide.rt.blpa_runtime_init(&cpuSide.ctx);
    backend = &lister;
    quiet = true;
    runKernelCases();
    cpuSide.rt.blpa_runtime_shutdown(&cpuSide.ctx);
    std::printf("%d cases, %d comparisons (on a device, each case also "
                "checks its repeats)\n",
                lister.cases, passed + failed);
    return 0;
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
  GpuBackend gpu;
  backend = &gpu;
  setHyper(defaultHyper);
  testRuntime();
  runKernelCases();
  testReplay();
  testDropoutReplay();
  gpuSide.shutdown();
  cpuSide.shutdown();

  finished = true;
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
