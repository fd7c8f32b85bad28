//===- CudaEmulationTest.cpp - Emulated CUDA kernels vs the CPU runtime ---===//
//
// The kernels of the CUDA runtime's Elementwise.cu, Layout.cu, Dropout.cu,
// Loss.cu, Pooling.cu, BatchNorm.cu, Quantize.cu and ProbabilityCodes.cu,
// their own source compiled for the host and run on emulated CUDA threads
// (Emulator.h), against the CPU runtime: the cases of KernelCases.h that
// need no cuDNN or cuBLAS, through KernelHarness.h. No GPU needed, so CI
// runs it;
// blpa-cuda-kernel-test runs the same cases on a real device.
//
// The emulation runs the device's IEEE arithmetic exactly, so the checks
// are tighter than on a GPU: bit for bit wherever the two runtimes compute
// the same operations in the same order, within a few ulps per element
// where they sum in double in different orders (reductions, batch-norm and
// loss statistics), and BN-ReLU codes exactly in every channel whose
// statistics came out bit for bit the CPU's (else off by at most one).
// Every emulated call must write nothing outside its outputs (inputs and
// guard bytes around every buffer are checked), raise no device error
// unless the case expects one, and run a second time, with blocks and
// threads scheduled in reverse, to the same bits. Here only: arguments the
// CPU runtime rejects must be rejected, out-of-range labels raise the
// device error, and the emulation's own semantics are checked first
// (EmulatorCheck.cu).
//
// The CPU runtime is linked under renamed symbols (cpuref_blpa_*, see
// CudaKernelTest.cmake).
//
// Output: one `FAIL name: detail` line per failing check (`--verbose` also
// prints `PASS name` lines and the emulation's totals), then `N passed, M
// failed`; exit status 0 iff nothing failed.
//
//===----------------------------------------------------------------------===//

#include "Emulator.h"

#include "../KernelCases.h"

#include <chrono>

// The CPU runtime's functions under the names the build gave them.
extern "C" {
#define BLPA_DECLARE_CPU_REFERENCE(name) decltype(::name) cpuref_##name;
BLPA_KERNELS(BLPA_DECLARE_CPU_REFERENCE)
BLPA_DECLARE_CPU_REFERENCE(blpa_runtime_init)
BLPA_DECLARE_CPU_REFERENCE(blpa_runtime_shutdown)
#undef BLPA_DECLARE_CPU_REFERENCE
}

namespace {

using namespace blpa_test;

/// The emulated kernels; the library ones (cuDNN, cuBLAS) are not emulated.
#define BLPA_EMULATED_ENTRY(name) &::name,
#define BLPA_NO_ENTRY(name) nullptr,
const Api emuApi = {BLPA_DEVICE_KERNELS(BLPA_EMULATED_ENTRY)
                        BLPA_LIBRARY_KERNELS(BLPA_NO_ENTRY)};
#undef BLPA_NO_ENTRY
#undef BLPA_EMULATED_ENTRY
#define BLPA_CPU_ENTRY(name) &cpuref_##name,
const Api cpuApi = {BLPA_KERNELS(BLPA_CPU_ENTRY)};
#undef BLPA_CPU_ENTRY

/// CudaRuntime.h's deviceLabelOutOfRange.
constexpr int32_t labelOutOfRange = 1;
constexpr int32_t indexOutOfRange = 2;

/// One run of the emulated kernel: its outputs, the device error it
/// raised, or the emulation's error.
struct EmulatedRun {
  std::vector<Bytes> outputs;
  int32_t deviceError = 0;
  std::string error, strayWrites;
};

/// The emulated kernels against the CPU runtime, both on host memory.
class EmulationBackend : public Backend {
public:
  const Api &api() const override { return emuApi; }
  const Api &refApi() const override { return cpuApi; }
  blpa_context *refContext() override { return &cpuCtx; }
  std::vector<blpa_context *> contexts() override { return {&cpuCtx, &emuCtx}; }
  bool exactArithmetic() const override { return true; }

  /// The CPU runtime (unless the case expects a device error: it would
  /// exit), then the emulation, whose memory must be untouched outside the
  /// outputs and whose bits must repeat in reverse order.
  Results run(const Case &c, const Kernel &kernel) override {
    Results r;
    r.names = c.names();
    if (!c.deviceError) {
      HostMemory cpu(c.buffers);
      kernel(cpuApi, &cpuCtx, cpu.ptrs);
      r.ref = cpu.outputs();
    }
    EmulatedRun first = emulate(c, kernel, emu::Order::forward);
    r.got = first.outputs;
    r.ok = first.error.empty() && first.deviceError == c.deviceError;
    if (!r.ok) {
      report(c.name, false,
             first.error.empty() ? format("raised device error %d, expected %d",
                                          first.deviceError, c.deviceError)
                                 : first.error);
      return r;
    }
    report(c.name + "/memory", first.strayWrites.empty(), first.strayWrites);
    EmulatedRun again = emulate(c, kernel, emu::Order::reverse);
    report(c.name + "/repeat", again.error.empty() && again.outputs == r.got,
           again.error.empty() ? "blocks and threads in reverse order give "
                                 "other bits"
                               : again.error);
    return r;
  }

  blpa_context cpuCtx{}, emuCtx{};

private:
  EmulatedRun emulate(const Case &c, const Kernel &kernel, emu::Order order) {
    HostMemory memory(c.buffers);
    EmulatedRun run;
    emu::setOrder(order);
    try {
      run.deviceError =
          emu::runStep(&emuCtx, [&] { kernel(emuApi, &emuCtx, memory.ptrs); });
    } catch (const emu::Failure &e) {
      run.error = e.what();
    }
    emu::setOrder(emu::Order::forward);
    run.outputs = memory.outputs();
    run.strayWrites = memory.strayWrites();
    return run;
  }
};

EmulationBackend emulation;

/// The emulated kernel must reject its arguments with an error naming it.
void expectRejected(const std::string &name, const char *kernelName,
                    const std::function<void()> &call) {
  std::string error;
  try {
    emu::runStep(&emulation.emuCtx, call);
  } catch (const emu::Failure &e) {
    error = e.what();
  }
  report("rejects/" + name, error.find(kernelName) != std::string::npos,
         error.empty() ? "accepted"
                       : "error without the kernel's name: " + error);
}

/// A token id outside [-vocab, vocab) raises the device error; the lookup
/// writes zeros at its position and the gradient skips it.
void testBadTokenId(int64_t bad) {
  const int64_t n = 6, vocab = 7, dim = 3;
  Int64s ids = randomLabels(n, vocab);
  ids[4] = bad;
  std::string base = "embedding/id_" + std::to_string(bad);
  Case k(base + "/lookup");
  int table = k.in(randomFloats(vocab * dim)), idsIn = k.in(ids),
      y = k.uncheckedOut("y", n * dim);
  k.expectDeviceError(indexOutOfRange);
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_embedding(ctx, p.f(table), p.i64(idsIn), p.f(y), n, vocab, dim);
  });
  Case g(base + "/grad");
  int dy = g.in(randomFloats(n * dim)), gIds = g.in(ids),
      dtable = g.uncheckedOut("dtable", vocab * dim);
  g.expectDeviceError(indexOutOfRange);
  g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_embedding_grad(ctx, p.f(dy), p.i64(gIds), p.f(dtable), n, vocab,
                           dim);
  });
}

/// A label outside [0, classes) raises the device error and the row adds
/// nothing: the loss and its gradient stay finite.
void testBadLabel(int64_t bad) {
  const int64_t n = 5, classes = 7;
  Floats logits = randomFloats(n * classes);
  Int64s labels = randomLabels(n, classes);
  labels[2] = bad;
  auto finite = [](const Floats &v) {
    return std::all_of(v.begin(), v.end(),
                       [](float x) { return std::isfinite(x); });
  };
  std::string base = "softmax_cross_entropy/label_" + std::to_string(bad);
  Case k(base + "/loss");
  int logitsIn = k.in(logits), labelsIn = k.in(labels),
      loss = k.uncheckedOut("loss", 1);
  k.expectDeviceError(labelOutOfRange);
  Results r = k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_softmax_cross_entropy(ctx, p.f(logitsIn), p.i64(labelsIn),
                                  p.f(loss), n, classes, -100);
  });
  if (r.ok)
    report(base + "/loss_finite", finite(r.floats("loss")), "not finite");
  Case g(base + "/grad");
  int gLogits = g.in(logits), gLabels = g.in(labels),
      dloss = g.in(Floats{1.0f}),
      dlogits = g.uncheckedOut("dlogits", n * classes);
  g.expectDeviceError(labelOutOfRange);
  Results gr = g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_softmax_cross_entropy_grad(ctx, p.f(gLogits), p.i64(gLabels),
                                       p.f(dloss), p.f(dlogits), n, classes,
                                       -100);
  });
  if (gr.ok)
    report(base + "/grad_finite", finite(gr.floats("dlogits")), "not finite");
}

/// Arguments the CPU runtime rejects through blpa_runtime_fail (which
/// exits, so only the emulated side runs): the CUDA kernels must reject
/// them too, before any launch.
void testRejections() {
  Floats x(64), y(64);
  Bytes codes(64);
  Int64s labels(4);
  blpa_context *ctx = &emulation.emuCtx;
  expectRejected("quantize_3bit", "blpa_quantize", [&] {
    blpa_quantize(ctx, x.data(), codes.data(), y.data(), 1, 2, 4, 3,
                  BLPA_SCHEME_AFFINE);
  });
  expectRejected("quantize_mask_2bit", "blpa_quantize", [&] {
    blpa_quantize(ctx, x.data(), codes.data(), nullptr, 1, 2, 4, 2,
                  BLPA_SCHEME_MASK);
  });
  expectRejected("dequantize_unknown_scheme", "blpa_dequantize", [&] {
    blpa_dequantize(ctx, codes.data(), x.data(), y.data(), 1, 2, 4, 4, 7);
  });
  for (int64_t bits : {1, 3}) {
    expectRejected(format("probability_encode_%lldbit", (long long)bits),
                   "blpa_probability_encode", [&] {
                     blpa_probability_encode(ctx, x.data(), codes.data(),
                                             y.data(), 2, 4, bits);
                   });
    expectRejected(format("probability_decode_%lldbit", (long long)bits),
                   "blpa_probability_decode", [&] {
                     blpa_probability_decode(ctx, codes.data(), x.data(),
                                             y.data(), 2, 4, bits);
                   });
  }
  expectRejected("bn_encode_1bit", "blpa_batch_norm_train_encode", [&] {
    blpa_batch_norm_train_encode(ctx, x.data(), x.data(), x.data(), y.data(),
                                 y.data(), y.data(), codes.data(), 1, 2, 4,
                                 bnEps, 1);
  });
  expectRejected("bn_train_empty_batch", "blpa_batch_norm_train", [&] {
    blpa_batch_norm_train(ctx, x.data(), x.data(), x.data(), y.data(), y.data(),
                          y.data(), 0, 2, 4, bnEps);
  });
  expectRejected("argmax_window_too_wide", "blpa_max_pool_argmax", [&] {
    WindowGeometry win{{8, 8}, {3, 3}, {2, 2}, {0, 0, 0, 0}};
    blpa_max_pool_argmax(ctx, x.data(), y.data(), codes.data(), 1, 1,
                         WINDOW_ARGS(win), 2);
  });
  expectRejected("pool_negative_pad", "blpa_max_pool", [&] {
    WindowGeometry win{{8, 8}, {2, 2}, {2, 2}, {-1, 0, 0, 0}};
    blpa_max_pool(ctx, x.data(), y.data(), 1, 1, WINDOW_ARGS(win));
  });
  int64_t inDims[2] = {4, 8}, outDims[2] = {2, 1};
  expectRejected("reduce_bad_output", "blpa_reduce_sum_to", [&] {
    blpa_reduce_sum_to(ctx, x.data(), y.data(), 2, inDims, outDims, 1.0);
  });
  expectRejected("add_bad_broadcast", "blpa_add", [&] {
    blpa_add(ctx, x.data(), x.data(), y.data(), 2, inDims, outDims, inDims);
  });
  expectRejected("loss_no_classes", "blpa_softmax_cross_entropy", [&] {
    blpa_softmax_cross_entropy(ctx, x.data(), labels.data(), y.data(), 4, 0,
                               -100);
  });
  expectRejected("embedding_negative_shape", "blpa_embedding", [&] {
    blpa_embedding(ctx, x.data(), labels.data(), y.data(), 2, -1, 2);
  });
  expectRejected("softmax_negative_shape", "blpa_softmax",
                 [&] { blpa_softmax(ctx, x.data(), y.data(), 2, -1, 2); });
  expectRejected(
      "log_softmax_grad_negative_shape", "blpa_log_softmax_grad", [&] {
        blpa_log_softmax_grad(ctx, x.data(), x.data(), y.data(), -2, 1, 2);
      });
  expectRejected("mul_bad_broadcast", "blpa_mul", [&] {
    blpa_mul(ctx, x.data(), x.data(), y.data(), 2, inDims, inDims, outDims);
  });
  expectRejected("sub_bad_broadcast", "blpa_sub", [&] {
    blpa_sub(ctx, x.data(), x.data(), y.data(), 2, inDims, outDims, inDims);
  });
  expectRejected("div_bad_broadcast", "blpa_div", [&] {
    blpa_div(ctx, x.data(), x.data(), y.data(), 2, inDims, inDims, outDims);
  });
  expectRejected("activation_unknown_kind", "blpa_activation",
                 [&] { blpa_activation(ctx, x.data(), y.data(), 4, 99, 0, 0); });
  expectRejected("activation_grad_unknown_kind", "blpa_activation_grad", [&] {
    blpa_activation_grad(ctx, x.data(), x.data(), y.data(), 4, -1, 0, 0);
  });
  expectRejected("pad_rank_0", "blpa_pad", [&] {
    blpa_pad(ctx, x.data(), y.data(), 0, inDims, inDims, inDims,
             BLPA_PAD_CONSTANT, 0.0, nullptr);
  });
  expectRejected("pad_unknown_mode", "blpa_pad", [&] {
    blpa_pad(ctx, x.data(), y.data(), 1, inDims, inDims, inDims, 7, 0.0,
             nullptr);
  });
  expectRejected("pad_grad_rank_0", "blpa_pad_grad", [&] {
    blpa_pad_grad(ctx, x.data(), y.data(), 0, inDims, inDims, inDims,
                  BLPA_PAD_EDGE);
  });
  expectRejected("transpose_rank_0", "blpa_transpose", [&] {
    blpa_transpose(ctx, x.data(), y.data(), 0, inDims, inDims);
  });
  const int64_t repeated[2] = {0, 0};
  expectRejected("transpose_not_a_permutation", "blpa_transpose", [&] {
    blpa_transpose(ctx, x.data(), y.data(), 2, inDims, repeated);
  });
  // Ten dimensions that no merging reduces: more than the kernels take.
  const int64_t tenDims[10] = {2, 2, 2, 2, 2, 2, 2, 2, 2, 2};
  const int64_t reversed[10] = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0};
  std::vector<float> big(1024);
  expectRejected("transpose_rank_10", "blpa_transpose", [&] {
    blpa_transpose(ctx, big.data(), big.data(), 10, tenDims, reversed);
  });
  for (double ratio : {1.0, -0.1, 1.5, std::nan("")}) {
    expectRejected(format("dropout_ratio_%g", ratio), "blpa_dropout",
                   [&] { blpa_dropout(ctx, x.data(), y.data(), 4, ratio, 0); });
    expectRejected(
        format("dropout_grad_ratio_%g", ratio), "blpa_dropout_grad",
        [&] { blpa_dropout_grad(ctx, x.data(), y.data(), 4, ratio, 0); });
  }
}

/// The region codes' arguments the CPU runtime rejects (kinds without
/// pieces, the wrong width, hard swish without its values), as
/// testRejections.
void testActivationRegionRejections() {
  Floats x(64), y(64);
  Bytes codes(64);
  blpa_context *ctx = &emulation.emuCtx;
  expectRejected("activation_region_sigmoid", "blpa_activation_region", [&] {
    blpa_activation_region(ctx, x.data(), codes.data(), 64, BLPA_ACT_SIGMOID, 0,
                           0, nullptr, nullptr, 1);
  });
  expectRejected(
      "activation_region_hard_swish_1bit", "blpa_activation_region", [&] {
        blpa_activation_region(ctx, x.data(), codes.data(), 64,
                               BLPA_ACT_HARD_SWISH, 0, 0, nullptr, nullptr, 1);
      });
  expectRejected(
      "activation_grad_region_clip_2bit", "blpa_activation_grad_region", [&] {
        blpa_activation_grad_region(ctx, x.data(), codes.data(), nullptr,
                                    y.data(), 64, BLPA_ACT_CLIP, 0, 6, 2);
      });
  expectRejected("activation_grad_region_hard_swish_no_values",
                 "blpa_activation_grad_region", [&] {
                   blpa_activation_grad_region(ctx, x.data(), codes.data(),
                                               nullptr, y.data(), 64,
                                               BLPA_ACT_HARD_SWISH, 0, 0, 2);
                 });
}

} // namespace

int main(int argc, char **argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--verbose") == 0) {
      verbose = true;
    } else {
      std::fprintf(stderr, "usage: %s [--verbose]\n", argv[0]);
      return 2;
    }
  }
  auto start = std::chrono::steady_clock::now();
  // One CPU thread (the CPU runtime's results do not depend on the count):
  // idle OpenMP workers would spin on the cores the emulation runs on.
  emulation.cpuCtx.num_threads = 1;
  cpuref_blpa_runtime_init(&emulation.cpuCtx);
  emu::initContext(&emulation.emuCtx);
  backend = &emulation;

  for (const auto &[name, error] : emu::selfCheck())
    report("emulator/" + name, error.empty(), error);
  runKernelCases();
  testBadLabel(7);
  testBadLabel(-1);
  testBadTokenId(7);
  testBadTokenId(-8);
  testRejections();
  testActivationRegionRejections();

  emu::shutdownContext(&emulation.emuCtx);
  cpuref_blpa_runtime_shutdown(&emulation.cpuCtx);
  if (verbose) {
    emu::Stats s = emu::stats();
    std::printf(
        "emulated %lld launches, %lld blocks, %lld threads in %.1f s\n",
        (long long)s.launches, (long long)s.blocks, (long long)s.threads,
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count());
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
