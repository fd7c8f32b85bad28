//===- CudaEmulationTest.cpp - Emulated CUDA kernels vs the CPU runtime ---===//
//
// The kernels of the CUDA runtime's Elementwise.cu, Layout.cu, Dropout.cu,
// Loss.cu, Pooling.cu, BatchNorm.cu and Quantize.cu, their own source
// compiled for the host and run on emulated CUDA threads (Emulator.h),
// against the CPU runtime on the same seeded random inputs at awkward
// shapes: odd sizes, packed codes that straddle (n, c) slices and warp
// tails, every code width, misaligned pointers, in-place calls, ties,
// windows in the padding, activations' branch bounds, dropout masks at
// several seeds, steps and streams. No GPU needed, so CI runs it;
// blpa-cuda-kernel-test does the same on a real device.
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
// threads scheduled in reverse, to the same bits; the results Runtime.h
// promises equal across kernels are compared bit for bit. Arguments the
// CPU runtime rejects must be rejected, and the emulation's own semantics
// are checked first (EmulatorCheck.cu).
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

#include "blpa/Runtime/Runtime.h"

#include "../WindowCase.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <vector>

/// The kernels the emulated files define, in one list: the CPU reference
/// declarations and both function tables come from it, with the types of
/// Runtime.h's declarations.
#define BLPA_EMULATED_KERNELS(X)                                               \
  X(blpa_fill)                                                                 \
  X(blpa_relu)                                                                 \
  X(blpa_relu_grad)                                                            \
  X(blpa_add)                                                                  \
  X(blpa_mul)                                                                  \
  X(blpa_sub)                                                                  \
  X(blpa_div)                                                                  \
  X(blpa_activation)                                                           \
  X(blpa_activation_grad)                                                      \
  X(blpa_activation_dynamic)                                                   \
  X(blpa_activation_grad_dynamic)                                              \
  X(blpa_copy_strided)                                                         \
  X(blpa_pad)                                                                  \
  X(blpa_pad_grad)                                                             \
  X(blpa_transpose)                                                            \
  X(blpa_dropout)                                                              \
  X(blpa_dropout_grad)                                                         \
  X(blpa_reduce_sum_to)                                                        \
  X(blpa_sgd_update)                                                           \
  X(blpa_update_running_stats)                                                 \
  X(blpa_softmax_cross_entropy)                                                \
  X(blpa_softmax_cross_entropy_grad)                                           \
  X(blpa_softmax)                                                              \
  X(blpa_log_softmax)                                                          \
  X(blpa_softmax_grad)                                                         \
  X(blpa_log_softmax_grad)                                                     \
  X(blpa_max_pool)                                                             \
  X(blpa_max_pool_grad)                                                        \
  X(blpa_max_pool_argmax)                                                      \
  X(blpa_max_pool_grad_argmax)                                                 \
  X(blpa_avg_pool)                                                             \
  X(blpa_avg_pool_grad)                                                        \
  X(blpa_global_avg_pool)                                                      \
  X(blpa_global_avg_pool_grad)                                                 \
  X(blpa_batch_norm_train)                                                     \
  X(blpa_batch_norm_infer)                                                     \
  X(blpa_batch_norm_grad)                                                      \
  X(blpa_batch_norm_relu_train)                                                \
  X(blpa_batch_norm_relu_grad)                                                 \
  X(blpa_batch_norm_apply)                                                     \
  X(blpa_batch_norm_train_encode)                                              \
  X(blpa_batch_norm_relu_train_encode)                                         \
  X(blpa_batch_norm_grad_decode)                                               \
  X(blpa_batch_norm_relu_grad_decode)                                          \
  X(blpa_bn_decode)                                                            \
  X(blpa_quantize)                                                             \
  X(blpa_dequantize)                                                           \
  X(blpa_activation_region)                                                    \
  X(blpa_activation_grad_region)

// The CPU runtime's functions under the names the build gave them.
extern "C" {
#define BLPA_DECLARE_CPU_REFERENCE(name) decltype(::name) cpuref_##name;
BLPA_EMULATED_KERNELS(BLPA_DECLARE_CPU_REFERENCE)
BLPA_DECLARE_CPU_REFERENCE(blpa_runtime_init)
BLPA_DECLARE_CPU_REFERENCE(blpa_runtime_shutdown)
#undef BLPA_DECLARE_CPU_REFERENCE
}

namespace {

using blpa_test::WindowGeometry;
using Bytes = std::vector<uint8_t>;
using Floats = std::vector<float>;
using Int64s = std::vector<int64_t>;

/// One runtime's kernels, called as `api.blpa_relu(...)`.
struct Api {
#define BLPA_API_MEMBER(name) decltype(&::name) name;
  BLPA_EMULATED_KERNELS(BLPA_API_MEMBER)
#undef BLPA_API_MEMBER
};

#define BLPA_EMULATED_ENTRY(name) &::name,
const Api emuApi = {BLPA_EMULATED_KERNELS(BLPA_EMULATED_ENTRY)};
#undef BLPA_EMULATED_ENTRY
#define BLPA_CPU_ENTRY(name) &cpuref_##name,
const Api cpuApi = {BLPA_EMULATED_KERNELS(BLPA_CPU_ENTRY)};
#undef BLPA_CPU_ENTRY

/// Per-element ulps allowed where the runtimes sum in double in different
/// orders: a float rounded from two slightly different doubles.
constexpr int sumUlps = 2;
/// Bytes after packed codes that a kernel must not touch.
constexpr size_t guardBytes = 16;
/// What outputs hold before a kernel runs: NaN for floats, so that an
/// element a kernel forgets to write cannot pass.
constexpr uint8_t floatJunk = 0xFF;
constexpr uint8_t codeJunk = 0xA5;
constexpr double bnEps = 1e-5;
/// CudaRuntime.h's deviceLabelOutOfRange.
constexpr int32_t labelOutOfRange = 1;

//===----------------------------------------------------------------------===//
// Reporting
//===----------------------------------------------------------------------===//

int passed = 0, failed = 0;
bool verbose = false;

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

/// Values a ReLU treats specially, spread over v.
Floats withSpecials(Floats v) {
  const float specials[] = {0.0f,
                            -0.0f,
                            std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::denorm_min(),
                            -std::numeric_limits<float>::denorm_min()};
  for (size_t i = 0; i < v.size(); i += 5)
    v[i] = specials[i / 5 % 7];
  return v;
}

template <typename T> Bytes bytesOf(const std::vector<T> &v) {
  const auto *p = reinterpret_cast<const uint8_t *>(v.data());
  return Bytes(p, p + v.size() * sizeof(T));
}

Floats floatsOf(const Bytes &b) {
  Floats v(b.size() / sizeof(float));
  if (!v.empty())
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

Bytes concat(std::initializer_list<Bytes> parts) {
  Bytes all;
  for (const Bytes &p : parts)
    all.insert(all.end(), p.begin(), p.end());
  return all;
}

//===----------------------------------------------------------------------===//
// Comparisons
//===----------------------------------------------------------------------===//

bool sameFloat(float a, float b) {
  return std::memcmp(&a, &b, sizeof(float)) == 0 ||
         (std::isnan(a) && std::isnan(b));
}

/// Distance in representable floats (0 for equal bits, huge across signs).
int64_t ulpDistance(float a, float b) {
  auto ordered = [](float v) {
    int32_t i;
    std::memcpy(&i, &v, sizeof(i));
    return i < 0 ? int64_t(INT32_MIN) - i : int64_t(i);
  };
  return std::llabs(ordered(a) - ordered(b));
}

/// Every element within `ulps` of the CPU's (bit for bit for 0; NaN only
/// where the CPU has NaN).
void compareFloats(const std::string &name, const Floats &emu,
                   const Floats &cpu, int ulps) {
  size_t differ = 0, first = 0;
  int64_t worst = 0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    if (sameFloat(emu[i], cpu[i]))
      continue;
    int64_t d = std::isnan(emu[i]) || std::isnan(cpu[i])
                    ? std::numeric_limits<int64_t>::max()
                    : ulpDistance(emu[i], cpu[i]);
    worst = std::max(worst, d);
    if (d > ulps && differ++ == 0)
      first = i;
  }
  std::string detail = format("%zu of %zu elements differ by more than %d ulps",
                              differ, cpu.size(), ulps);
  if (differ)
    detail += format(", first at [%zu]: emulated %.9g, cpu %.9g", first,
                     emu[first], cpu[first]);
  report(name, differ == 0, detail);
}

/// Packed codes: code i may differ by one where slack(i) allows it, else
/// not at all; the unused tail bits and the guard bytes after the codes
/// bit for bit the CPU's.
void compareCodes(const std::string &name, const Bytes &emu, const Bytes &cpu,
                  size_t numel, int bits,
                  const std::function<bool(size_t)> &slack = nullptr) {
  size_t differ = 0, first = 0;
  for (size_t i = 0; i < numel; ++i) {
    int e = codeAt(emu, i, bits), c = codeAt(cpu, i, bits);
    if (e != c && !(slack && slack(i) && std::abs(e - c) == 1) && differ++ == 0)
      first = i;
  }
  size_t used = packedSize(numel, bits), tailBits = numel * bits % 8;
  bool tail = tailBits == 0 ||
              ((emu[used - 1] ^ cpu[used - 1]) & (0xFF << tailBits)) == 0;
  bool guard = std::equal(emu.begin() + used, emu.end(), cpu.begin() + used);
  std::string detail =
      format("%zu of %zu %d-bit codes differ", differ, numel, bits);
  if (differ)
    detail += format(", first at [%zu]: emulated %d, cpu %d", first,
                     codeAt(emu, first, bits), codeAt(cpu, first, bits));
  if (!tail)
    detail += "; unused tail bits differ (must be 0)";
  if (!guard)
    detail += "; wrote past the last code byte";
  report(name, differ == 0 && tail && guard, detail);
}

/// Two results that Runtime.h promises bit for bit equal.
void expectSameBits(const std::string &name, const Bytes &got,
                    const Bytes &want, const char *what) {
  report(name, got == want, what);
}

//===----------------------------------------------------------------------===//
// Cases: one kernel call on both runtimes
//===----------------------------------------------------------------------===//

/// The addresses of a case's buffers, by buffer id.
struct Ptrs {
  std::vector<void *> at;

  float *f(int id) const { return static_cast<float *>(at[id]); }
  uint8_t *u8(int id) const { return static_cast<uint8_t *>(at[id]); }
  int64_t *i64(int id) const { return static_cast<int64_t *>(at[id]); }
};

/// One call of a kernel, written once for both runtimes.
using Kernel = std::function<void(const Api &, blpa_context *, const Ptrs &)>;

blpa_context cpuCtx{}, emuCtx{};

void setHyper(float lr, float momentum, float weightDecay, int32_t skip) {
  for (blpa_context *ctx : {&cpuCtx, &emuCtx}) {
    ctx->lr = lr;
    ctx->momentum = momentum;
    ctx->weight_decay = weightDecay;
    ctx->skip_update = skip;
  }
}
void setDefaultHyper() { setHyper(0.1f, 0.9f, 5e-4f, 0); }

/// One buffer of a case: its contents before every run and, for an output,
/// how the emulated result is checked against the CPU's.
struct Buffer {
  enum Kind { input, floats, codes, unchecked };
  std::string name; // of an output
  Bytes initial;
  Kind kind = input;
  int ulps = 0; // floats
  int bits = 0; // codes
  size_t numel = 0;
  /// 4 bytes past a 64-byte boundary, off the float4 paths.
  bool misaligned = false;
};

/// A case's buffers in host memory, filled with their initial contents,
/// each between guard bytes.
class Memory {
public:
  static constexpr size_t guard = 64;
  static constexpr uint8_t guardByte = 0xCD;

  explicit Memory(const std::vector<Buffer> &buffers) : buffers(buffers) {
    for (const Buffer &b : buffers) {
      storage.emplace_back(b.initial.size() + 3 * guard, guardByte);
      uint8_t *start = storage.back().data() + guard;
      uint8_t *p =
          start + (guard - reinterpret_cast<uintptr_t>(start) % guard) % guard +
          (b.misaligned ? 4 : 0);
      std::copy(b.initial.begin(), b.initial.end(), p);
      ptrs.at.push_back(p);
    }
  }

  /// The outputs' contents (empty for inputs).
  std::vector<Bytes> outputs() const {
    std::vector<Bytes> out(buffers.size());
    for (size_t i = 0; i < buffers.size(); ++i)
      if (buffers[i].kind != Buffer::input)
        out[i].assign(begin(i), begin(i) + buffers[i].initial.size());
    return out;
  }

  /// What the kernel wrote where it must not (an input, a guard byte), or
  /// "" when nothing.
  std::string strayWrites() const {
    for (size_t i = 0; i < buffers.size(); ++i) {
      const Bytes &all = storage[i];
      size_t first = begin(i) - all.data(),
             end = first + buffers[i].initial.size();
      for (size_t j = 0; j < all.size(); ++j)
        if ((j < first || j >= end) && all[j] != guardByte)
          return format("wrote outside buffer %zu (%s), at byte %lld", i,
                        buffers[i].name.c_str(),
                        (long long)j - (long long)first);
      if (buffers[i].kind == Buffer::input &&
          !std::equal(all.begin() + first, all.begin() + end,
                      buffers[i].initial.begin()))
        return format("wrote into input buffer %zu", i);
    }
    return "";
  }

  const std::vector<Buffer> &buffers;
  std::vector<Bytes> storage;
  Ptrs ptrs;

private:
  const uint8_t *begin(size_t i) const {
    return static_cast<const uint8_t *>(ptrs.at[i]);
  }
};

/// One run of the emulated kernel: its outputs, the device error it
/// raised, or the emulation's error.
struct EmulatedRun {
  std::vector<Bytes> outputs;
  int32_t deviceError = 0;
  std::string error, strayWrites;
};

/// Both runtimes' outputs of a case, by output name.
struct Results {
  std::vector<std::string> names;
  std::vector<Bytes> cpu, emu;
  bool ok = false; // the emulation ran

  const Bytes &cpuBytes(const std::string &name) const {
    return cpu[indexOf(name)];
  }
  const Bytes &emuBytes(const std::string &name) const {
    return emu[indexOf(name)];
  }
  Floats cpuFloats(const std::string &name) const {
    return floatsOf(cpuBytes(name));
  }
  Floats emuFloats(const std::string &name) const {
    return floatsOf(emuBytes(name));
  }
  size_t indexOf(const std::string &name) const {
    size_t i = std::find(names.begin(), names.end(), name) - names.begin();
    if (i == names.size()) {
      std::printf("blpa-cuda-emulation-test: no output %s\n", name.c_str());
      std::exit(2);
    }
    return i;
  }
};

class Case {
public:
  explicit Case(std::string name) : name(std::move(name)) {}

  int in(Bytes data, bool misaligned = false) {
    Buffer b;
    b.initial = std::move(data);
    b.misaligned = misaligned;
    return add(std::move(b));
  }
  int in(const Floats &data, bool misaligned = false) {
    return in(bytesOf(data), misaligned);
  }
  int in(const Int64s &data) { return in(bytesOf(data)); }

  /// `count` floats the kernel writes, within `ulps` of the CPU's.
  int out(const std::string &outName, size_t count, int ulps = 0,
          bool misaligned = false) {
    return addFloats(outName, Bytes(count * sizeof(float), floatJunk), ulps,
                     misaligned);
  }

  /// An operand the kernel overwrites (in-place calls, optimizer state).
  int inOut(const std::string &outName, const Floats &data, int ulps = 0,
            bool misaligned = false) {
    return addFloats(outName, bytesOf(data), ulps, misaligned);
  }

  /// `data` as an operand and where the kernel writes `outName`: over the
  /// operand when `inPlace`.
  std::pair<int, int> operandAndResult(const Floats &data, bool inPlace,
                                       const std::string &outName,
                                       int ulps = 0) {
    if (!inPlace) {
      int operand = in(data);
      return {operand, out(outName, data.size(), ulps)};
    }
    int both = inOut(outName, data, ulps);
    return {both, both};
  }

  /// Room for `numel` packed codes and guard bytes after them, compared
  /// exactly unless `unchecked` (the caller compares them).
  int codes(const std::string &outName, size_t numel, int bits,
            bool unchecked = false) {
    Buffer b;
    b.name = outName;
    b.kind = unchecked ? Buffer::unchecked : Buffer::codes;
    b.bits = bits;
    b.numel = numel;
    b.initial = Bytes(packedSize(numel, bits) + guardBytes, codeJunk);
    return add(std::move(b));
  }

  /// Floats the caller checks itself.
  int uncheckedOut(const std::string &outName, size_t count) {
    int id = out(outName, count);
    buffers[id].kind = Buffer::unchecked;
    return id;
  }

  /// The emulated kernel must raise this device error (and the CPU
  /// runtime, which would exit, is not run).
  void expectDeviceError(int32_t error) { deviceError = error; }

  /// Runs `kernel` on both runtimes, compares the outputs, checks that the
  /// emulated kernel repeats its bits in reverse order.
  Results run(const Kernel &kernel) const {
    Results r;
    for (const Buffer &b : buffers)
      r.names.push_back(b.name);
    if (!deviceError) {
      Memory cpu(buffers);
      kernel(cpuApi, &cpuCtx, cpu.ptrs);
      r.cpu = cpu.outputs();
    }
    EmulatedRun first = emulate(kernel, emu::Order::forward);
    r.emu = first.outputs;
    r.ok = first.error.empty() && first.deviceError == deviceError;
    if (!r.ok) {
      report(name, false,
             first.error.empty() ? format("raised device error %d, expected %d",
                                          first.deviceError, deviceError)
                                 : first.error);
      return r;
    }
    if (!deviceError)
      compare(r);
    report(name + "/memory", first.strayWrites.empty(), first.strayWrites);
    EmulatedRun again = emulate(kernel, emu::Order::reverse);
    report(name + "/repeat", again.error.empty() && again.outputs == r.emu,
           again.error.empty() ? "blocks and threads in reverse order give "
                                 "other bits"
                               : again.error);
    return r;
  }

  std::string name;
  std::vector<Buffer> buffers;

private:
  int addFloats(const std::string &outName, Bytes initial, int ulps,
                bool misaligned) {
    Buffer b;
    b.name = outName;
    b.kind = Buffer::floats;
    b.ulps = ulps;
    b.misaligned = misaligned;
    b.initial = std::move(initial);
    return add(std::move(b));
  }

  int add(Buffer b) {
    buffers.push_back(std::move(b));
    return int(buffers.size()) - 1;
  }

  EmulatedRun emulate(const Kernel &kernel, emu::Order order) const {
    Memory memory(buffers);
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

  void compare(const Results &r) const {
    for (size_t i = 0; i < buffers.size(); ++i) {
      const Buffer &b = buffers[i];
      std::string check = name + "/" + b.name;
      if (b.kind == Buffer::floats)
        compareFloats(check, floatsOf(r.emu[i]), floatsOf(r.cpu[i]), b.ulps);
      else if (b.kind == Buffer::codes)
        compareCodes(check, r.emu[i], r.cpu[i], b.numel, b.bits);
    }
  }

  int32_t deviceError = 0;
};

/// The emulated kernel must reject its arguments with an error naming it.
void expectRejected(const std::string &name, const char *kernelName,
                    const std::function<void()> &call) {
  std::string error;
  try {
    emu::runStep(&emuCtx, call);
  } catch (const emu::Failure &e) {
    error = e.what();
  }
  report("rejects/" + name, error.find(kernelName) != std::string::npos,
         error.empty() ? "accepted"
                       : "error without the kernel's name: " + error);
}

//===----------------------------------------------------------------------===//
// Element-wise kernels, broadcast, reductions, optimizer
//===----------------------------------------------------------------------===//

/// relu and relu_grad; `misaligned` moves the operands off the float4 path.
void testRelu(size_t numel, bool misaligned) {
  Floats x = withSpecials(randomFloats(numel)), dy = randomFloats(numel);
  std::string base = std::to_string(numel) + (misaligned ? "/misaligned" : "");
  for (bool inPlace : {false, true}) {
    std::string suffix = base + (inPlace ? "/in_place" : "");
    Case k("relu/" + suffix);
    int xIn = inPlace ? k.inOut("y", x, 0, misaligned) : k.in(x, misaligned);
    int y = inPlace ? xIn : k.out("y", numel);
    k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
      rt.blpa_relu(ctx, p.f(xIn), p.f(y), int64_t(numel));
    });
    Case g("relu_grad/" + suffix);
    int dyIn =
        inPlace ? g.inOut("dx", dy, 0, misaligned) : g.in(dy, misaligned);
    int dx = inPlace ? dyIn : g.out("dx", numel);
    int yIn = g.in(x); // NaN, zeros and negatives for the mask
    g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
      rt.blpa_relu_grad(ctx, p.f(dyIn), p.f(yIn), p.f(dx), int64_t(numel));
    });
  }
}

void testFill(size_t numel, double value, bool misaligned) {
  Case k("fill/" + std::to_string(numel) + (misaligned ? "/misaligned" : ""));
  int y = k.out("y", numel, 0, misaligned);
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_fill(ctx, p.f(y), int64_t(numel), value);
  });
}

/// v's magnitudes moved to [0.5, 2], signs kept: divisors, and values that
/// a dropout never turns into 0 by itself.
Floats awayFromZero(Floats v) {
  for (float &x : v)
    x = std::copysign(0.5f + 1.5f * std::fabs(x), x);
  return v;
}

/// v with `specials` written over it every 97 elements, in turn.
Floats withValues(Floats v, const Floats &specials) {
  for (size_t i = 0; i < v.size(); i += 97)
    v[i] = specials[i / 97 % specials.size()];
  return v;
}

using BroadcastKernel = decltype(&::blpa_add);

/// Out of place, and in place over each operand that has the output's
/// shape. One float operation per element: exact. Divisors away from 0.
void testBroadcast(const char *op, BroadcastKernel Api::*kernel,
                   const char *name, Int64s outDims, Int64s aDims, Int64s bDims,
                   bool misaligned) {
  Floats a = randomFloats(product(aDims)),
         b = awayFromZero(randomFloats(product(bDims)));
  const char *const suffixes[] = {"", "/in_place_lhs", "/in_place_rhs"};
  for (int over : {0, 1, 2}) {
    if ((over == 1 && aDims != outDims) || (over == 2 && bDims != outDims))
      continue;
    Case k(std::string(op) + "/" + name + (misaligned ? "/misaligned" : "") +
           suffixes[over]);
    int aIn = over == 1 ? k.inOut("y", a, 0, misaligned) : k.in(a, misaligned);
    int bIn = over == 2 ? k.inOut("y", b, 0, misaligned) : k.in(b, misaligned);
    int y = over == 1   ? aIn
            : over == 2 ? bIn
                        : k.out("y", size_t(product(outDims)), 0, misaligned);
    k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
      (rt.*kernel)(ctx, p.f(aIn), p.f(bIn), p.f(y), int64_t(outDims.size()),
                   outDims.data(), aDims.data(), bDims.data());
    });
  }
}

/// blpa_add, blpa_mul, blpa_sub and blpa_div on the same shapes.
void testAdd(const char *name, Int64s outDims, Int64s aDims, Int64s bDims,
             bool misaligned = false) {
  testBroadcast("add", &Api::blpa_add, name, outDims, aDims, bDims, misaligned);
  testBroadcast("mul", &Api::blpa_mul, name, outDims, aDims, bDims, misaligned);
  testBroadcast("sub", &Api::blpa_sub, name, outDims, aDims, bDims, misaligned);
  testBroadcast("div", &Api::blpa_div, name, outDims, aDims, bDims, misaligned);
}

void testReduceSumTo(const char *name, Int64s inDims, Int64s outDims,
                     double scale) {
  Case k(std::string("reduce_sum_to/") + name);
  int x = k.in(randomFloats(product(inDims))),
      y = k.out("y", size_t(product(outDims)), sumUlps);
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_reduce_sum_to(ctx, p.f(x), p.f(y), int64_t(inDims.size()),
                          inDims.data(), outDims.data(), scale);
  });
}

/// Where blpa_sgd_update copies the gradient to.
enum class GradOut { separate, none, overGrad };

void testSgd(size_t numel, const char *hyperName, bool withMomentum,
             GradOut gradOut) {
  const char *const outNames[] = {"", "/no_grad_out", "/grad_out_is_grad"};
  Case k(format("sgd_update/%zu/%s%s%s", numel, hyperName,
                withMomentum ? "" : "/no_momentum_buffer",
                outNames[int(gradOut)]));
  int param = k.inOut("param", randomFloats(numel)),
      grad = k.in(randomFloats(numel)),
      mom = withMomentum ? k.inOut("momentum", randomFloats(numel)) : -1,
      out = gradOut == GradOut::separate ? k.out("grad_out", numel) : -1;
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    float *target = gradOut == GradOut::separate   ? p.f(out)
                    : gradOut == GradOut::overGrad ? p.f(grad)
                                                   : nullptr;
    rt.blpa_sgd_update(ctx, p.f(param), p.f(grad),
                       withMomentum ? p.f(mom) : nullptr, target,
                       int64_t(numel));
  });
}

void testSgdUpdates() {
  struct {
    const char *name;
    float lr, momentum, weightDecay;
    int32_t skip;
  } hypers[] = {{"default", 0.1f, 0.9f, 5e-4f, 0},
                {"plain", 0.01f, 0.0f, 0.0f, 0},
                {"skip_update", 0.1f, 0.9f, 5e-4f, 1}};
  for (size_t numel : {size_t(5), size_t(4099)})
    for (const auto &h : hypers) {
      setHyper(h.lr, h.momentum, h.weightDecay, h.skip);
      testSgd(numel, h.name, true, GradOut::separate);
      testSgd(numel, h.name, false, GradOut::none);
      testSgd(numel, h.name, true, GradOut::overGrad);
    }
  setDefaultHyper();
}

void testRunningStats(int64_t c, int64_t count, int32_t skip) {
  setHyper(0.1f, 0.9f, 5e-4f, skip);
  Case k(format("update_running_stats/c%lld/count%lld%s", (long long)c,
                (long long)count, skip ? "/skip_update" : ""));
  int runMean = k.inOut("running_mean", randomFloats(c)),
      runVar = k.inOut("running_var", randomFloats(c, 0.5f, 2.0f)),
      mean = k.in(randomFloats(c)), invStd = k.in(randomFloats(c, 0.5f, 3.0f));
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_update_running_stats(ctx, p.f(runMean), p.f(runVar), p.f(mean),
                                 p.f(invStd), c, count, 0.9, 1e-3);
  });
  setDefaultHyper();
}

void testElementwise() {
  for (size_t numel :
       {size_t(0), size_t(1), size_t(7), size_t(1001), size_t(50001)})
    for (bool misaligned : {false, true})
      testRelu(numel, misaligned);
  testFill(0, 1.0, false);
  testFill(1, -3.5, false);
  testFill(3, 0.1, true);
  testFill(70001, 1.25, false);
  testFill(70001, -2.0, true);

  testAdd("channel_bias", {2, 3, 5, 7}, {2, 3, 5, 7}, {1, 3, 1, 1});
  testAdd("outer_product", {4, 5, 6}, {4, 1, 6}, {1, 5, 1});
  testAdd("scalar_plus_matrix", {3, 4}, {1, 1}, {3, 4});
  testAdd("scalar_plus_scalar", {1}, {1}, {1});
  testAdd("row_bias", {9, 17}, {9, 17}, {1, 17});
  testAdd("column_bias", {9, 17}, {9, 1}, {9, 17});
  testAdd("same_shape", {3, 7, 1001}, {3, 7, 1001}, {3, 7, 1001});
  testAdd("same_shape", {3, 7, 1001}, {3, 7, 1001}, {3, 7, 1001}, true);
  testAdd("channel_lhs", {2, 3, 5, 7}, {1, 3, 1, 1}, {2, 3, 5, 7});
  testAdd("scalar_rhs", {3, 4}, {3, 4}, {1, 1});
  testAdd("rank5_same", {3, 1, 2, 5, 7}, {3, 1, 2, 5, 7}, {3, 1, 2, 5, 7});
  testAdd("long_rows_alternating", {5, 3, 2011}, {5, 1, 2011}, {1, 3, 1});
  testAdd("rank5", {2, 3, 1, 4, 5}, {2, 1, 1, 4, 1}, {1, 3, 1, 1, 5});
  testAdd("empty", {3, 0, 2}, {3, 0, 2}, {1, 1, 2});

  testReduceSumTo("nchw_to_c_group8", {3, 5, 4, 5}, {1, 5, 1, 1}, 1.0);
  testReduceSumTo("nchw_to_c_group32", {5, 7, 9, 11}, {1, 7, 1, 1}, 0.5);
  testReduceSumTo("nchw_to_c_block", {4, 3, 40, 41}, {1, 3, 1, 1}, 1.0);
  testReduceSumTo("all_chunked", {3, 5, 1999}, {1, 1, 1}, 1.0);
  testReduceSumTo("planes_to_n", {4, 6, 7, 7}, {4, 6, 1, 1}, 1.0 / 49);
  testReduceSumTo("rows_to_row", {37, 1100}, {1, 1100}, 0.5);
  testReduceSumTo("rows_to_row_chunked", {300, 9}, {1, 9}, 1.0);
  testReduceSumTo("middle", {6, 5, 7}, {6, 1, 7}, 1.0);
  testReduceSumTo("outer_and_inner", {4, 3, 5, 2}, {1, 3, 1, 2}, -2.0);
  testReduceSumTo("alternating_rank5", {2, 3, 4, 5, 6}, {2, 1, 4, 1, 6}, 1.0);
  testReduceSumTo("none", {3, 5}, {3, 5}, 3.0);
  testReduceSumTo("empty_sum", {3, 0, 4}, {3, 1, 1}, 1.0);
  testReduceSumTo("empty_rows", {0, 4}, {1, 4}, 1.0);
  testReduceSumTo("large_to_c", {32, 64, 28, 28}, {1, 64, 1, 1}, 1.0);
  testReduceSumTo("large_all", {257, 1031}, {1, 1}, 1.0);

  testSgdUpdates();
  for (int32_t skip : {0, 1}) {
    testRunningStats(9, 37, skip);
    testRunningStats(300, 1, skip);
  }
}

//===----------------------------------------------------------------------===//
// Activations, strided copies, padding, transposition, dropout
//===----------------------------------------------------------------------===//

/// An activation and its gradient (from the CPU's output for sigmoid, else
/// from x), out of place and in place (y over x, dx over dy), on values
/// spread over every branch with `specials` on and next to the bounds.
/// The same float operations on both sides: bit for bit.
void testActivation(const char *name, int64_t kind, double alpha, double beta,
                    const Floats &specials, size_t numel, bool misaligned) {
  std::string size =
      "/" + std::to_string(numel) + (misaligned ? "/misaligned" : "");
  Floats x = withValues(randomFloats(numel, -8, 8), specials),
         dy = randomFloats(numel);
  Floats saved = x;
  for (bool inPlace : {false, true}) {
    Case k(std::string("activation/") + name + size +
           (inPlace ? "/in_place" : ""));
    int xIn = inPlace ? k.inOut("y", x, 0, misaligned) : k.in(x, misaligned);
    int y = inPlace ? xIn : k.out("y", numel, 0, misaligned);
    Results r = k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
      rt.blpa_activation(ctx, p.f(xIn), p.f(y), int64_t(numel), kind, alpha,
                         beta);
    });
    if (kind == BLPA_ACT_SIGMOID)
      saved = r.cpuFloats("y");
  }
  for (bool inPlace : {false, true}) {
    Case g(std::string("activation_grad/") + name + size +
           (inPlace ? "/in_place" : ""));
    int dyIn =
        inPlace ? g.inOut("dx", dy, 0, misaligned) : g.in(dy, misaligned);
    int dx = inPlace ? dyIn : g.out("dx", numel, 0, misaligned);
    int savedIn = g.in(saved, misaligned);
    g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
      rt.blpa_activation_grad(ctx, p.f(dyIn), p.f(savedIn), p.f(dx),
                              int64_t(numel), kind, alpha, beta);
    });
  }
}

/// Clip with bounds read from buffers (a run-time input): one, the other or
/// both, the rest static.
void testActivationDynamic(const char *name, bool loAt, bool hiAt) {
  const size_t numel = 10007;
  const float lo = -1.5f, hi = 2.25f, inf = INFINITY;
  Floats x = randomFloats(numel, -8, 8), dy = randomFloats(numel);
  std::string base = std::string("activation_dynamic/clip_") + name;
  Case k(base);
  int xIn = k.in(x), loIn = k.in(Floats{lo}), hiIn = k.in(Floats{hi});
  int y = k.out("y", numel);
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_activation_dynamic(ctx, p.f(xIn), p.f(y), int64_t(numel),
                               BLPA_ACT_CLIP, loAt ? -inf : lo, hiAt ? inf : hi,
                               loAt ? p.f(loIn) : nullptr,
                               hiAt ? p.f(hiIn) : nullptr);
  });
  Case g(base + "/grad");
  int dyIn = g.in(dy), savedIn = g.in(x), loG = g.in(Floats{lo}),
      hiG = g.in(Floats{hi});
  int dx = g.out("dx", numel);
  g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_activation_grad_dynamic(
        ctx, p.f(dyIn), p.f(savedIn), p.f(dx), int64_t(numel), BLPA_ACT_CLIP,
        loAt ? -inf : lo, hiAt ? inf : hi, loAt ? p.f(loG) : nullptr,
        hiAt ? p.f(hiG) : nullptr);
  });
}

/// One activation kind with its parameters and values on and next to the
/// bounds of its branches.
struct ActivationCase {
  const char *name;
  int64_t kind;
  double alpha, beta;
  Floats specials;
};

std::vector<ActivationCase> activationCases() {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto around = [](Floats bounds) {
    Floats v;
    for (float b : bounds) {
      v.push_back(b);
      v.push_back(std::nextafter(b, -1e30f));
      v.push_back(std::nextafter(b, 1e30f));
    }
    return v;
  };
  Floats swish = around({-3.0f, 3.0f, 0.0f});
  swish.push_back(-0.0f);
  Floats relu6 = around({0.0f, 6.0f});
  for (float v : {nan, inf, -inf, -0.0f})
    relu6.push_back(v);
  Floats clip = around({-1.5f, 2.25f});
  for (float v : {nan, inf, -inf})
    clip.push_back(v);
  return {
      {"sigmoid",
       BLPA_ACT_SIGMOID,
       0,
       0,
       {0.0f, -0.0f, 20.0f, 100.0f, -20.0f, -100.0f, nan}},
      {"hard_sigmoid_pow2", BLPA_ACT_HARD_SIGMOID, 0.25, 0.5,
       around({-2.0f, 2.0f, 0.0f})},
      {"hard_sigmoid", BLPA_ACT_HARD_SIGMOID, 0.2, 0.5,
       around({-2.5f, 2.5f, 0.0f})},
      {"hard_swish", BLPA_ACT_HARD_SWISH, 0, 0, swish},
      {"clip_relu6", BLPA_ACT_CLIP, 0, 6, relu6},
      {"clip", BLPA_ACT_CLIP, -1.5, 2.25, clip},
  };
}

void testActivations() {
  for (const ActivationCase &c : activationCases())
    for (size_t numel : {size_t(1), size_t(7), size_t(10007)})
      for (bool misaligned : {false, true})
        testActivation(c.name, c.kind, c.alpha, c.beta, c.specials, numel,
                       misaligned);
  testActivationDynamic("both", true, true);
  testActivationDynamic("min_only", true, false);
  testActivationDynamic("max_only", false, true);
}

//===----------------------------------------------------------------------===//
// Region codes of piecewise activations (blpa_activation_region and
// blpa_activation_grad_region), kept in this one block to move with the
// activation tests.
//===----------------------------------------------------------------------===//

/// The codes, then the gradient from them (out of place and in place over
/// dy) with values moved by up to half a 4-bit bin, as decoded ones are.
void testActivationRegion(const ActivationCase &a, size_t numel,
                          bool misaligned) {
  const int bits = a.kind == BLPA_ACT_HARD_SWISH ? 2 : 1;
  const bool readsValues = a.kind == BLPA_ACT_HARD_SWISH;
  std::string base = format("activation_region/%s/%zu%s", a.name, numel,
                            misaligned ? "/misaligned" : "");
  Floats x = withValues(randomFloats(numel, -8, 8), a.specials),
         dy = randomFloats(numel), v = x,
         moved = randomFloats(numel, -0.5f, 0.5f);
  for (size_t i = 0; i < numel; ++i)
    v[i] += moved[i];
  Case k(base);
  int xIn = k.in(x, misaligned);
  int codes = k.codes("codes", numel, bits);
  Results r = k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_activation_region(ctx, p.f(xIn), p.u8(codes), int64_t(numel),
                              a.kind, a.alpha, a.beta, nullptr, nullptr, bits);
  });
  if (!r.ok)
    return;
  for (bool inPlace : {false, true}) {
    Case g(base + "/grad" + (inPlace ? "/in_place" : ""));
    auto [dyIn, dx] = g.operandAndResult(dy, inPlace, "dx");
    int codesIn = g.in(r.cpuBytes("codes"));
    int valuesIn = g.in(v, misaligned);
    g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
      rt.blpa_activation_grad_region(
          ctx, p.f(dyIn), p.u8(codesIn), readsValues ? p.f(valuesIn) : nullptr,
          p.f(dx), int64_t(numel), a.kind, a.alpha, a.beta, bits);
    });
  }
}

/// Clip's bounds read from device memory, one, the other or both.
void testActivationRegionDynamic(const char *name, bool loAt, bool hiAt) {
  const size_t numel = 10007;
  const float lo = -1.5f, hi = 2.25f, inf = INFINITY;
  Floats x = withValues(randomFloats(numel, -8, 8), {lo, hi});
  Case k(std::string("activation_region_dynamic/clip_") + name);
  int xIn = k.in(x), loIn = k.in(Floats{lo}), hiIn = k.in(Floats{hi});
  int codes = k.codes("codes", numel, 1);
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_activation_region(ctx, p.f(xIn), p.u8(codes), int64_t(numel),
                              BLPA_ACT_CLIP, loAt ? -inf : lo, hiAt ? inf : hi,
                              loAt ? p.f(loIn) : nullptr,
                              hiAt ? p.f(hiIn) : nullptr, 1);
  });
}

/// What the CPU runtime refuses (kinds without pieces, the wrong width,
/// hard swish without values), the emulated kernels refuse.
void testActivationRegionRejections() {
  Floats x(64), y(64);
  Bytes codes(64);
  blpa_context *ctx = &emuCtx;
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

void testActivationRegions() {
  testActivationRegionRejections();
  for (const ActivationCase &c : activationCases())
    if (c.kind != BLPA_ACT_SIGMOID)
      for (size_t numel : {size_t(1), size_t(7), size_t(10007)})
        for (bool misaligned : {false, true})
          testActivationRegion(c, numel, misaligned);
  testActivationRegionDynamic("both", true, true);
  testActivationRegionDynamic("min_only", true, false);
  testActivationRegionDynamic("max_only", false, true);
}

/// The elements a strided copy reaches: offset + (rows - 1) * stride +
/// rowElems (1 when it reaches none).
size_t stridedExtent(int64_t rows, int64_t rowElems, int64_t stride,
                     int64_t offset) {
  if (rows <= 0 || rowElems <= 0)
    return 1;
  return size_t(offset + (rows - 1) * stride + rowElems);
}

/// blpa_copy_strided into a dst of random contents (what it does not
/// write must stay), buffers as long as the copy reaches (so that the
/// guards catch a longer one).
void testCopyStrided(const char *name, int64_t rows, int64_t rowElems,
                     int64_t srcStride, int64_t dstStride, int64_t srcOffset,
                     int64_t dstOffset) {
  Case k(std::string("copy_strided/") + name);
  int src =
      k.in(randomFloats(stridedExtent(rows, rowElems, srcStride, srcOffset)));
  int dst = k.inOut(
      "dst", randomFloats(stridedExtent(rows, rowElems, dstStride, dstOffset)));
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_copy_strided(ctx, p.f(src), p.f(dst), rows, rowElems, srcStride,
                         dstStride, srcOffset, dstOffset);
  });
}

void testCopiesStrided() {
  testCopyStrided("concat_columns", 6, 35, 35, 91, 0, 14);
  testCopyStrided("slice_columns", 4, 7, 21, 7, 5, 0);
  testCopyStrided("contiguous_rows", 9, 13, 13, 13, 0, 0);
  testCopyStrided("single_elements", 37, 1, 3, 5, 2, 4);
  testCopyStrided("long_single_row", 1, 100003, 100003, 100003, 0, 0);
  testCopyStrided("long_rows_offsets", 3, 40000, 50001, 40003, 3, 1);
  testCopyStrided("many_rows", 1001, 17, 33, 19, 16, 2);
  testCopyStrided("no_rows", 0, 5, 5, 5, 0, 0);
  testCopyStrided("empty_rows", 5, 0, 3, 3, 1, 1);
  // A concatenation or slice along axis 0 of a tensor over 2 GiB: one row
  // whose stride is the whole tensor, past the largest pitch a 2-D copy
  // takes (2^31 - 1 bytes).
  testCopyStrided("one_row_huge_src_stride", 1, 1000, (int64_t(1) << 29) + 7,
                  1000, 3, 0);
  testCopyStrided("one_row_huge_dst_stride", 1, 777, 777, int64_t(1) << 30, 0,
                  5);
}

void testPad(const char *name, Int64s inDims, Int64s begin, Int64s end,
             double value) {
  Int64s outDims = inDims;
  for (size_t d = 0; d < inDims.size(); ++d)
    outDims[d] += begin[d] + end[d];
  Case k(std::string("pad/") + name);
  int x = k.in(randomFloats(product(inDims)));
  int y = k.out("y", size_t(product(outDims)));
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_pad(ctx, p.f(x), p.f(y), int64_t(inDims.size()), inDims.data(),
                outDims.data(), begin.data(), BLPA_PAD_CONSTANT, value,
                nullptr);
  });
  // The value read from a buffer (a run-time input) instead.
  Case r(std::string("pad/") + name + "/runtime_value");
  int xr = r.in(randomFloats(product(inDims)));
  int valueAt = r.in(Floats{float(value)});
  int yr = r.out("y", size_t(product(outDims)));
  r.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_pad(ctx, p.f(xr), p.f(yr), int64_t(inDims.size()), inDims.data(),
                outDims.data(), begin.data(), BLPA_PAD_CONSTANT, 0.0,
                p.f(valueAt));
  });
}

/// Reflect and edge padding and their gradient (one thread gathers each
/// element of dx in the CPU's order: bit for bit).
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

void testPads() {
  testPad("rank1", {7}, {3}, {2}, 0.5);
  testPad("rank1_crop", {11}, {-4}, {-2}, 0.5);
  testPad("rank1_crop_and_pad", {6}, {-3}, {5}, -2.0);
  testPad("rank2", {5, 9}, {1, -2}, {-1, 3}, -1.25);
  testPad("rank3_channels", {3, 4, 5}, {0, 2, 0}, {0, 1, 0}, 0.0);
  testPad("rank4_spatial", {2, 3, 5, 7}, {0, 0, 1, 2}, {0, 0, 2, 0}, 0.5);
  testPad("rank4_crop", {2, 3, 9, 8}, {0, 0, -1, -2}, {0, 0, -3, 0}, 0.5);
  testPad("rank4_last_outside", {2, 3, 4, 8}, {0, 1, 0, -9}, {0, 0, 0, 2}, 7.0);
  testPad("rank3_leading_outside", {2, 3, 4}, {5, 0, 0}, {-4, 0, 0}, 3.0);
  testPad("rank5", {2, 3, 4, 5, 6}, {1, 0, -1, 2, -2}, {0, 1, -1, -1, 3}, 3.0);
  testPad("rank5_pad", {2, 1, 3, 2, 5}, {1, 2, 0, 1, 3}, {2, 0, 1, 1, 1}, -0.5);
  testPad("large", {4, 16, 33, 35}, {0, 0, 1, 1}, {0, 0, 1, 1}, 0.0);
  for (int64_t mode : {BLPA_PAD_REFLECT, BLPA_PAD_EDGE}) {
    testPadMode("rank1", mode, {7}, {3}, {2});
    testPadMode("rank2_asymmetric", mode, {5, 9}, {1, 4}, {3, 2});
    testPadMode("rank4_spatial", mode, {2, 3, 5, 7}, {0, 0, 1, 2},
                {0, 0, 2, 0});
    testPadMode("rank4_all_axes", mode, {2, 3, 4, 5}, {1, 2, 3, 4},
                {1, 0, 2, 1});
  }
  testPadMode("pads_past_size", BLPA_PAD_EDGE, {2, 3}, {4, 1}, {3, 7});
  testPadMode("size_one", BLPA_PAD_EDGE, {3, 1, 2}, {0, 2, 1}, {0, 3, 0});
  testPadMode("largest_pads", BLPA_PAD_REFLECT, {4, 6}, {3, 5}, {3, 5});
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

/// Both kernels: the element-wise one (rows that stay, short dimensions)
/// and the tiled one (partial tiles, several tiles, outer dimensions).
void testTransposes() {
  testTranspose("rank1", {7}, {0});
  testTranspose("matrix", {37, 53}, {1, 0});
  testTranspose("matrix_exact_tiles", {64, 96}, {1, 0});
  testTranspose("matrix_thin", {2, 300}, {1, 0});
  testTranspose("channel_shuffle", {4, 3, 8, 7, 9}, {0, 2, 1, 3, 4});
  testTranspose("nchw_to_nhwc", {2, 20, 7, 9}, {0, 2, 3, 1});
  testTranspose("nhwc_to_nchw", {2, 7, 9, 5}, {0, 3, 1, 2});
  testTranspose("pixel_shuffle", {2, 3, 2, 2, 5, 6}, {0, 1, 4, 2, 5, 3});
  testTranspose("reverse", {3, 17, 5, 40}, {3, 2, 1, 0});
  testTranspose("reverse_tiled", {40, 3, 5, 33}, {3, 2, 1, 0});
  testTranspose("size_one_dims", {1, 5, 1, 7}, {2, 3, 0, 1});
  testTranspose("all_ones", {1, 1, 1}, {2, 0, 1});
  testTranspose("empty", {3, 0, 4}, {2, 0, 1});
}

/// The mask's seed and step, on both contexts (the emulated runtime reads
/// them from its device copy of the hyper-parameters, staged by runStep).
void setDropoutStep(uint64_t seed, uint64_t step) {
  for (blpa_context *ctx : {&cpuCtx, &emuCtx}) {
    ctx->seed = seed;
    ctx->step = step;
  }
}

/// 1 where y kept the element (inputs are away from 0), else 0.
Bytes keptOf(const Floats &y) {
  Bytes kept(y.size());
  for (size_t i = 0; i < y.size(); ++i)
    kept[i] = y[i] != 0;
  return kept;
}

/// blpa_dropout and blpa_dropout_grad, out of place and in place, bit for
/// bit the CPU's (the same hash), and the emulated pair with one mask.
void testDropout(double ratio, size_t numel, uint64_t seed, uint64_t step,
                 int64_t stream, bool misaligned) {
  setDropoutStep(seed, step);
  std::string base = format("/ratio%g/%zu/step%llu/stream%lld%s", ratio, numel,
                            (unsigned long long)step, (long long)stream,
                            misaligned ? "/misaligned" : "");
  Floats x = awayFromZero(randomFloats(numel)),
         dy = awayFromZero(randomFloats(numel));
  for (bool inPlace : {false, true}) {
    std::string suffix = base + (inPlace ? "/in_place" : "");
    Case k("dropout" + suffix);
    int xIn = inPlace ? k.inOut("y", x, 0, misaligned) : k.in(x, misaligned);
    int y = inPlace ? xIn : k.out("y", numel, 0, misaligned);
    Results forward =
        k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
          rt.blpa_dropout(ctx, p.f(xIn), p.f(y), int64_t(numel), ratio, stream);
        });
    Case g("dropout_grad" + suffix);
    int dyIn =
        inPlace ? g.inOut("dx", dy, 0, misaligned) : g.in(dy, misaligned);
    int dx = inPlace ? dyIn : g.out("dx", numel, 0, misaligned);
    Results backward =
        g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
          rt.blpa_dropout_grad(ctx, p.f(dyIn), p.f(dx), int64_t(numel), ratio,
                               stream);
        });
    if (forward.ok && backward.ok)
      expectSameBits(g.name + "/mask", keptOf(backward.emuFloats("dx")),
                     keptOf(forward.emuFloats("y")),
                     "blpa_dropout_grad drops other elements than "
                     "blpa_dropout");
  }
}

/// The same dropout over consecutive steps: each step's emulated mask the
/// CPU's at that step (runStep stages ctx->step, which the kernel reads),
/// and a new one every step.
void testDropoutSteps() {
  const size_t numel = 4099;
  Floats x = awayFromZero(randomFloats(numel));
  Bytes previous;
  for (uint64_t step = 0; step < 4; ++step) {
    setDropoutStep(0x9e3779b97f4a7c15ull, (uint64_t(1) << 33) + step);
    Case k(format("dropout/steps/step%llu", (unsigned long long)step));
    int xIn = k.in(x), y = k.out("y", numel);
    Results r = k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
      rt.blpa_dropout(ctx, p.f(xIn), p.f(y), int64_t(numel), 0.5, 7);
    });
    if (!r.ok)
      continue;
    Bytes kept = keptOf(r.emuFloats("y"));
    if (!previous.empty())
      report(k.name + "/new_mask", kept != previous,
             "the mask did not change with the step");
    previous = kept;
  }
}

void testDropouts() {
  for (size_t numel : {size_t(0), size_t(1), size_t(7), size_t(50001)})
    for (bool misaligned : {false, true})
      testDropout(0.3, numel, 20240611, 0, 0, misaligned);
  testDropout(0.3, 10007, 20240611, 1, 0, false);
  testDropout(0.1, 10007, 7, 12, 5, false);
  testDropout(0.5, 10007, 7, 12, -5, false);
  testDropout(0.9, 10007, 0x9e3779b97f4a7c15ull, (uint64_t(1) << 40) + 7,
              int64_t(1) << 35, false);
  testDropout(0.0, 1001, 3, 4, 2, false);
  testDropoutSteps();
  setDropoutStep(0, 0);
}

//===----------------------------------------------------------------------===//
// Loss
//===----------------------------------------------------------------------===//

void testSoftmaxCrossEntropy(int64_t n, int64_t classes, float spread) {
  std::string base = format("softmax_cross_entropy/%lldx%lld", (long long)n,
                            (long long)classes);
  // A wide spread of logits overflows a naive exp.
  Floats logits = randomFloats(n * classes, -spread, spread);
  Int64s labels = randomLabels(n, classes);
  Case k(base + "/loss");
  int logitsIn = k.in(logits), labelsIn = k.in(labels),
      loss = k.out("loss", 1, sumUlps);
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_softmax_cross_entropy(ctx, p.f(logitsIn), p.i64(labelsIn),
                                  p.f(loss), n, classes);
  });
  Case g(base + "/grad");
  int gLogits = g.in(logits), gLabels = g.in(labels),
      dloss = g.in(Floats{0.7f}),
      dlogits = g.out("dlogits", n * classes, sumUlps);
  g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_softmax_cross_entropy_grad(ctx, p.f(gLogits), p.i64(gLabels),
                                       p.f(dloss), p.f(dlogits), n, classes);
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
                                  p.f(loss), n, classes);
  });
  if (r.ok)
    report(base + "/loss_finite", finite(r.emuFloats("loss")), "not finite");
  Case g(base + "/grad");
  int gLogits = g.in(logits), gLabels = g.in(labels),
      dloss = g.in(Floats{1.0f}),
      dlogits = g.uncheckedOut("dlogits", n * classes);
  g.expectDeviceError(labelOutOfRange);
  Results gr = g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_softmax_cross_entropy_grad(ctx, p.f(gLogits), p.i64(gLabels),
                                       p.f(dloss), p.f(dlogits), n, classes);
  });
  if (gr.ok)
    report(base + "/grad_finite", finite(gr.emuFloats("dlogits")),
           "not finite");
}

/// Softmax and log-softmax along the middle axis of [outer, length, inner]
/// and their gradients, out of place and in place: contiguous rows (one
/// warp per row, summed in another order than the CPU's) within sumUlps,
/// strided rows (one thread per row, the CPU's order) too.
void testSoftmax(const char *name, int64_t outer, int64_t length, int64_t inner,
                 float spread) {
  size_t numel = size_t(outer * length * inner);
  // A wide spread overflows a naive exp.
  Floats x = randomFloats(numel, -spread, spread), dy = randomFloats(numel);
  for (bool log : {false, true}) {
    auto forward = log ? &Api::blpa_log_softmax : &Api::blpa_softmax;
    auto backward = log ? &Api::blpa_log_softmax_grad : &Api::blpa_softmax_grad;
    std::string base = std::string(log ? "log_softmax/" : "softmax/") + name;
    // The gradient reads an output of the forward kernel.
    Floats y(numel);
    (cpuApi.*forward)(&cpuCtx, x.data(), y.data(), outer, length, inner);
    for (bool inPlace : {false, true}) {
      std::string suffix = inPlace ? "/in_place" : "";
      Case f(base + "/forward" + suffix);
      auto [fx, fy] = f.operandAndResult(x, inPlace, "y", sumUlps);
      f.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
        (rt.*forward)(ctx, p.f(fx), p.f(fy), outer, length, inner);
      });
      Case g(base + "/grad" + suffix);
      int gy = g.in(y);
      auto [gdy, gdx] = g.operandAndResult(dy, inPlace, "dx", sumUlps);
      g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
        (rt.*backward)(ctx, p.f(gdy), p.f(gy), p.f(gdx), outer, length, inner);
      });
    }
  }
}

void testLoss() {
  testSoftmax("last_axis_9x11", 9, 11, 1, 50.0f);
  testSoftmax("last_axis_300x3", 300, 3, 1, 5.0f);
  testSoftmax("long_rows_3x1000", 3, 1000, 1, 20.0f);
  testSoftmax("channels_3x5x42", 3, 5, 7 * 6, 5.0f);
  testSoftmax("first_axis_6x35", 1, 6, 35, 5.0f);
  testSoftmax("coerced_4x75", 4, 3 * 5 * 5, 1, 5.0f);
  testSoftmax("length_1", 5, 1, 3, 5.0f);
  testSoftmax("empty", 0, 4, 3, 1.0f);
  testSoftmaxCrossEntropy(9, 11, 50.0f);
  testSoftmaxCrossEntropy(33, 10, 30.0f);
  testSoftmaxCrossEntropy(1, 2, 1.0f);
  testSoftmaxCrossEntropy(3, 1, 1.0f);
  testSoftmaxCrossEntropy(64, 1000, 5.0f);
  testSoftmaxCrossEntropy(300, 3, 5.0f);
  testSoftmaxCrossEntropy(0, 5, 1.0f);
  testBadLabel(7);
  testBadLabel(-1);
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

/// The smallest code width of Runtime.h that numbers every window position.
int argmaxBits(int64_t positions) {
  for (int bits : {1, 2, 4, 8})
    if (positions <= (1 << bits))
      return bits;
  return 0;
}

/// The pooling arguments after the data pointers.
#define POOL_ARGS(pc) pc.n, pc.c, WINDOW_ARGS(pc.win)

/// blpa_max_pool_argmax at `bits` against the CPU, its y against the
/// emulated blpa_max_pool's, and blpa_max_pool_grad_argmax against the
/// emulated blpa_max_pool_grad (Runtime.h: bitwise the same).
void testMaxPoolArgmax(const std::string &base, const PoolCase &pc, int bits,
                       const Floats &x, const Floats &dy, const Results &fwd,
                       const Results &grad) {
  std::string name = base + "/argmax_" + std::to_string(bits) + "bit";
  Case k(name);
  int xIn = k.in(x), y = k.out("y", pc.ySize()),
      codes = k.codes("codes", pc.ySize(), bits);
  Results r = k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_max_pool_argmax(ctx, p.f(xIn), p.f(y), p.u8(codes), POOL_ARGS(pc),
                            bits);
  });
  if (r.ok && fwd.ok)
    expectSameBits(name + "/matches_max_pool", r.emuBytes("y"),
                   fwd.emuBytes("y"), "y differs from blpa_max_pool's");

  Case g(base + "/grad_argmax_" + std::to_string(bits) + "bit");
  int dyIn = g.in(dy), codesIn = g.in(r.cpuBytes("codes")),
      dx = g.out("dx", pc.xSize());
  Results gr = g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_max_pool_grad_argmax(ctx, p.f(dyIn), p.u8(codesIn), p.f(dx),
                                 POOL_ARGS(pc), bits);
  });
  if (gr.ok && grad.ok)
    expectSameBits(g.name + "/matches_max_pool_grad", gr.emuBytes("dx"),
                   grad.emuBytes("dx"), "dx differs from blpa_max_pool_grad's");
}

/// Inputs of max pooling.
enum class PoolData { distinct, ties, specials };

/// Ties: small integers, many equal values per window, where the first
/// maximum in row-major window order must win. Specials: NaN (which wins
/// only first in its window), infinities, signed zeros.
void testMaxPool(const PoolCase &pc, PoolData data) {
  const char *const dataNames[] = {"distinct", "ties", "specials"};
  std::string base =
      std::string("max_pool/") + pc.name + "/" + dataNames[int(data)];
  Floats x = data == PoolData::ties ? randomInts(pc.xSize(), -3, -1)
                                    : randomFloats(pc.xSize()),
         dy = randomFloats(pc.ySize());
  if (data == PoolData::specials)
    x = withSpecials(x);
  Case k(base + "/forward");
  int xIn = k.in(x), y = k.out("y", pc.ySize());
  Results fwd = k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_max_pool(ctx, p.f(xIn), p.f(y), POOL_ARGS(pc));
  });
  Case g(base + "/grad");
  int dyIn = g.in(dy), xGradIn = g.in(x), dx = g.out("dx", pc.xSize());
  Results grad = g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_max_pool_grad(ctx, p.f(dyIn), p.f(xGradIn), p.f(dx), POOL_ARGS(pc));
  });
  // Every width that fits the window.
  for (int bits = argmaxBits(pc.win.kernelSize()); bits <= 8; bits *= 2)
    testMaxPoolArgmax(base, pc, bits, x, dy, fwd, grad);
}

void testAvgPool(const PoolCase &pc, int64_t countIncludePad) {
  std::string base = std::string("avg_pool/") + pc.name +
                     (countIncludePad ? "/include_pad" : "/exclude_pad");
  Case k(base + "/forward");
  int x = k.in(randomFloats(pc.xSize())), y = k.out("y", pc.ySize());
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_avg_pool(ctx, p.f(x), p.f(y), POOL_ARGS(pc), countIncludePad);
  });
  Case g(base + "/grad");
  int dy = g.in(randomFloats(pc.ySize())), dx = g.out("dx", pc.xSize());
  g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_avg_pool_grad(ctx, p.f(dy), p.f(dx), POOL_ARGS(pc),
                          countIncludePad);
  });
}

void testGlobalAvgPool(int64_t n, int64_t c, int64_t spatial) {
  std::string base = format("global_avg_pool/%lldx%lldx%lld", (long long)n,
                            (long long)c, (long long)spatial);
  Case k(base + "/forward");
  int x = k.in(randomFloats(n * c * spatial)), y = k.out("y", n * c, sumUlps);
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_global_avg_pool(ctx, p.f(x), p.f(y), n, c, spatial);
  });
  Case g(base + "/grad");
  int dy = g.in(randomFloats(n * c)), dx = g.out("dx", n * c * spatial);
  g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_global_avg_pool_grad(ctx, p.f(dy), p.f(dx), n, c, spatial);
  });
}

#undef POOL_ARGS

void testPooling() {
  for (const PoolCase &pc : blpa_test::poolGeometries()) {
    for (PoolData data :
         {PoolData::distinct, PoolData::ties, PoolData::specials})
      testMaxPool(pc, data);
    for (int64_t includePad : {0, 1})
      testAvgPool(pc, includePad);
  }
  for (const PoolCase &pc : maxOnlyPoolCases())
    testMaxPool(pc, PoolData::distinct);
  testGlobalAvgPool(5, 7, 13 * 11);
  testGlobalAvgPool(3, 5, 1);
  testGlobalAvgPool(2, 3, 5000);
  testGlobalAvgPool(32, 512, 7 * 7);
  testGlobalAvgPool(0, 3, 5);
}

//===----------------------------------------------------------------------===//
// Batch norm
//===----------------------------------------------------------------------===//

struct BnShape {
  const char *name;
  int64_t n, c, spatial;
};

/// Enough elements per channel for several reduction parts per channel,
/// parts that end inside a slice, slices longer and shorter than a block.
const BnShape bnShapes[] = {
    {"4d", 3, 5, 7 * 5},
    {"2d", 37, 6, 1},
    {"wide", 2, 300, 3},
    {"parts_mid_slice", 61, 3, 35},
    {"parts_mid_long_slice", 5, 3, 999},
    {"large", 16, 19, 29 * 31},
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

/// Gammas of every sign with betas of both signs, including gamma == 0 and
/// |beta/gamma| large enough to clip every value and clamp the shift.
const float bnGammas[8] = {1.3f, -0.7f, 0.0f, 0.02f, 0.8f, 0.0f, -1.9f, -0.03f};
const float bnBetas[8] = {-0.5f, 2.2f, 1.5f, 0.4f, 0.0f, -2.0f, -0.3f, -3.0f};

/// For the coded kernels: channel 4 (beta 0) is constant, so y is exactly
/// 0 there: on the ReLU edge, which must encode as negative.
BnData bnCodeData(const BnShape &s) {
  BnData d = {s.n, s.c, s.spatial, {}, {}, {}};
  d.x = randomNormals(d.numel(), 1.5f, 2.0f);
  for (size_t i = 0; i < d.numel(); ++i)
    if (d.channelOf(i) == 4)
      d.x[i] = 0.25f;
  for (int64_t ch = 0; ch < d.c; ++ch) {
    d.scale.push_back(bnGammas[ch % 8]);
    d.bias.push_back(bnBetas[ch % 8]);
  }
  return d;
}

/// y as the CPU's blpa_batch_norm_apply computes it from the emulated
/// statistics: what the emulated forward must write bit for bit, whatever
/// its statistics' rounding.
Bytes cpuApply(const BnData &d, const Results &r, bool withRelu) {
  Floats y(d.numel()), mean = r.emuFloats("mean"),
                       invStd = r.emuFloats("inv_std");
  cpuref_blpa_batch_norm_apply(&cpuCtx, d.x.data(), d.scale.data(),
                               d.bias.data(), mean.data(), invStd.data(),
                               y.data(), d.n, d.c, d.spatial, withRelu);
  return bytesOf(y);
}

/// y (checked by the caller), mean and inv_std of a training forward.
void addTrainOutputs(Case &k, const BnData &d, int &y, int &mean, int &invStd) {
  y = k.uncheckedOut("y", d.numel());
  mean = k.out("mean", d.c, sumUlps);
  invStd = k.out("inv_std", d.c, sumUlps);
}

/// blpa_batch_norm_train or blpa_batch_norm_relu_train.
Results bnTrain(const std::string &name, const BnData &d, bool withRelu) {
  Case k(name);
  int x = k.in(d.x), scale = k.in(d.scale), bias = k.in(d.bias), y, mean,
      invStd;
  addTrainOutputs(k, d, y, mean, invStd);
  Results r = k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    auto kernel =
        withRelu ? rt.blpa_batch_norm_relu_train : rt.blpa_batch_norm_train;
    kernel(ctx, p.f(x), p.f(scale), p.f(bias), p.f(y), p.f(mean), p.f(invStd),
           d.n, d.c, d.spatial, bnEps);
  });
  if (r.ok)
    expectSameBits(name + "/y", r.emuBytes("y"), cpuApply(d, r, withRelu),
                   "y differs from the CPU's normalization with the emulated "
                   "statistics");
  return r;
}

/// y, mean and inv_std's bytes, for bitwise comparisons.
Bytes bnOutputs(const Results &r, const Floats &y) {
  return concat({bytesOf(y), r.emuBytes("mean"), r.emuBytes("inv_std")});
}

/// blpa_batch_norm_apply on the emulated statistics must give the emulated
/// forward's output bit for bit.
void testBnApply(const std::string &base, const BnData &d, const Results &train,
                 const Results &reluTrain) {
  for (int64_t withRelu : {0, 1}) {
    const Results &forward = withRelu ? reluTrain : train;
    if (!forward.ok)
      continue;
    Case k(base + (withRelu ? "/apply_relu" : "/apply"));
    int x = k.in(d.x), scale = k.in(d.scale), bias = k.in(d.bias),
        mean = k.in(forward.emuFloats("mean")),
        invStd = k.in(forward.emuFloats("inv_std")), y = k.out("y", d.numel());
    Results r = k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
      rt.blpa_batch_norm_apply(ctx, p.f(x), p.f(scale), p.f(bias), p.f(mean),
                               p.f(invStd), p.f(y), d.n, d.c, d.spatial,
                               withRelu);
    });
    if (r.ok)
      expectSameBits(k.name + "/matches_forward", r.emuBytes("y"),
                     forward.emuBytes("y"),
                     "the recompute differs from the forward");
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

/// dscale and dbias of a backward.
void addGradOutputs(Case &k, const BnData &d, int &dscale, int &dbias) {
  dscale = k.out("dscale", d.c, sumUlps);
  dbias = k.out("dbias", d.c, sumUlps);
}

/// blpa_batch_norm_grad or blpa_batch_norm_relu_grad (dx over dy when
/// `inPlace`), from the CPU's statistics.
void testBnGrad(const std::string &base, const BnData &d, const Results &train,
                const Floats &dy, bool withRelu, bool inPlace) {
  Case k(base + (withRelu ? "/relu_grad" : "/grad") +
         (inPlace ? "_in_place" : ""));
  int dyIn, dx, dscale, dbias;
  std::tie(dyIn, dx) = k.operandAndResult(dy, inPlace, "dx", sumUlps);
  int x = k.in(d.x), scale = k.in(d.scale), bias = k.in(d.bias),
      mean = k.in(train.cpuFloats("mean")),
      invStd = k.in(train.cpuFloats("inv_std"));
  addGradOutputs(k, d, dscale, dbias);
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
  if (train.ok && reluTrain.ok)
    expectSameBits(base + "/relu_train/matches_train",
                   bnOutputs(reluTrain, reluTrain.emuFloats("y")),
                   bnOutputs(train, relu(train.emuFloats("y"))),
                   "differs from blpa_batch_norm_train and a ReLU");
  testBnApply(base, d, train, reluTrain);
  testBnInfer(base, d);
  Floats dy = randomFloats(d.numel());
  for (bool withRelu : {false, true})
    for (bool inPlace : {false, true})
      testBnGrad(base, d, train, dy, withRelu, inPlace);
}

//===----------------------------------------------------------------------===//
// Activation codes
//===----------------------------------------------------------------------===//

/// blpa_batch_norm_train_encode or its ReLU form. Codes must be the CPU's
/// exactly in every channel whose statistics are the CPU's bit for bit; in
/// the others y, and so a code on a bin edge, may round differently.
Results bnEncode(const std::string &name, const BnData &d, int bits,
                 bool withRelu) {
  Case k(name);
  int x = k.in(d.x), scale = k.in(d.scale), bias = k.in(d.bias), y, mean,
      invStd;
  addTrainOutputs(k, d, y, mean, invStd);
  int codes = k.codes("codes", d.numel(), bits, /*unchecked=*/true);
  Results r = k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    auto kernel = withRelu ? rt.blpa_batch_norm_relu_train_encode
                           : rt.blpa_batch_norm_train_encode;
    kernel(ctx, p.f(x), p.f(scale), p.f(bias), p.f(y), p.f(mean), p.f(invStd),
           p.u8(codes), d.n, d.c, d.spatial, bnEps, bits);
  });
  if (!r.ok)
    return r;
  expectSameBits(name + "/y", r.emuBytes("y"), cpuApply(d, r, withRelu),
                 "y differs from the CPU's normalization with the emulated "
                 "statistics");
  Floats emuMean = r.emuFloats("mean"), cpuMean = r.cpuFloats("mean"),
         emuInvStd = r.emuFloats("inv_std"), cpuInvStd = r.cpuFloats("inv_std");
  compareCodes(name + "/codes", r.emuBytes("codes"), r.cpuBytes("codes"),
               d.numel(), bits, [&](size_t i) {
                 int64_t ch = d.channelOf(i);
                 return !sameFloat(emuMean[ch], cpuMean[ch]) ||
                        !sameFloat(emuInvStd[ch], cpuInvStd[ch]);
               });
  return r;
}

void testBnDecode(const std::string &base, const BnData &d, const Bytes &codes,
                  int bits) {
  for (int64_t withRelu : {0, 1}) {
    Case k(base + (withRelu ? "/decode_relu" : "/decode"));
    int codesIn = k.in(codes), scale = k.in(d.scale), bias = k.in(d.bias),
        y = k.out("y", d.numel());
    k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
      rt.blpa_bn_decode(ctx, p.u8(codesIn), p.f(scale), p.f(bias), p.f(y), d.n,
                        d.c, d.spatial, bits, withRelu);
    });
  }
}

/// blpa_batch_norm_grad_decode or its ReLU form (dx over dy when
/// `inPlace`), from the CPU's codes and statistics.
void testBnGradDecode(const std::string &base, const BnData &d,
                      const Results &enc, const Floats &dy, int bits,
                      bool withRelu, bool inPlace) {
  Case k(base + (withRelu ? "/relu_grad_decode" : "/grad_decode") +
         (inPlace ? "_in_place" : ""));
  int dyIn, dx, dscale, dbias;
  std::tie(dyIn, dx) = k.operandAndResult(dy, inPlace, "dx", sumUlps);
  int codes = k.in(enc.cpuBytes("codes")), scale = k.in(d.scale),
      bias = k.in(d.bias), invStd = k.in(enc.cpuFloats("inv_std"));
  addGradOutputs(k, d, dscale, dbias);
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    auto kernel = withRelu ? rt.blpa_batch_norm_relu_grad_decode
                           : rt.blpa_batch_norm_grad_decode;
    kernel(ctx, p.f(dyIn), p.u8(codes), p.f(scale), p.f(bias), p.f(invStd),
           p.f(dx), p.f(dscale), p.f(dbias), d.n, d.c, d.spatial, bits);
  });
}

void testBnCodes(const BnShape &s, int bits) {
  std::string base = format("bn_codes/%s/%dbit", s.name, bits);
  BnData d = bnCodeData(s);
  Results train = bnTrain(base + "/train", d, false);
  Results enc = bnEncode(base + "/encode", d, bits, false);
  Results reluEnc = bnEncode(base + "/relu_encode", d, bits, true);
  if (train.ok && enc.ok)
    expectSameBits(base + "/encode/matches_train",
                   bnOutputs(enc, enc.emuFloats("y")),
                   bnOutputs(train, train.emuFloats("y")),
                   "y, mean or inv_std differ from blpa_batch_norm_train's");
  if (enc.ok && reluEnc.ok)
    expectSameBits(base + "/relu_encode/matches_encode",
                   concat({bnOutputs(reluEnc, reluEnc.emuFloats("y")),
                           reluEnc.emuBytes("codes")}),
                   concat({bnOutputs(enc, relu(enc.emuFloats("y"))),
                           enc.emuBytes("codes")}),
                   "differs from blpa_batch_norm_train_encode and a ReLU");
  if (!enc.ok)
    return;
  testBnDecode(base, d, enc.cpuBytes("codes"), bits);
  Floats dy = randomFloats(d.numel());
  for (bool withRelu : {false, true})
    for (bool inPlace : {false, true})
      testBnGradDecode(base, d, enc, dy, bits, withRelu, inPlace);
}

/// Test data per scheme: AFFINE gets a constant channel and one far from 0,
/// NONNEG (ReLU outputs, many exact zeros) an all-zero channel; every
/// scheme a channel with NaNs, which ranges skip and which encode as 0.
Floats quantizeInput(const BnShape &s, int64_t scheme) {
  Floats x = randomFloats(s.n * s.c * s.spatial, -2.0f, 3.0f);
  for (size_t i = 0; i < x.size(); ++i) {
    int64_t ch = int64_t(i) / s.spatial % s.c;
    if (ch == 3 && i % 5 == 0)
      x[i] = std::numeric_limits<float>::quiet_NaN();
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

/// blpa_quantize (exact: ranges are exact), then blpa_dequantize of the
/// CPU's codes and parameters.
void testQuantize(const BnShape &s, int64_t scheme, int bits) {
  const char *const schemes[] = {"affine", "nonneg", "mask"};
  std::string base =
      format("quantize/%s/%s/%dbit", schemes[scheme], s.name, bits);
  bool mask = scheme == BLPA_SCHEME_MASK;
  size_t numel = s.n * s.c * s.spatial;
  Case k(base + "/encode");
  int x = k.in(quantizeInput(s, scheme));
  int codes = k.codes("codes", numel, bits);
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

/// Odd spatial sizes, so that code bytes straddle (n, c) slices, and
/// element counts that end inside a warp and inside a byte.
const BnShape codeShapes[] = {
    {"4d", 3, 5, 7 * 5},
    {"2d", 37, 16, 1},
    {"parts_mid_slice", 5, 9, 1001},
    {"many_blocks", 8, 19, 27 * 29},
    {"empty_batch", 0, 3, 5},
};

void testCodes() {
  for (const BnShape &s : codeShapes) {
    for (int bits : {2, 4, 8}) {
      if (s.n > 0) // an empty batch has no statistics: see testRejections
        testBnCodes(s, bits);
      testQuantize(s, BLPA_SCHEME_AFFINE, bits);
      testQuantize(s, BLPA_SCHEME_NONNEG, bits);
    }
    testQuantize(s, BLPA_SCHEME_MASK, 1);
  }
}

//===----------------------------------------------------------------------===//
// Argument checks
//===----------------------------------------------------------------------===//

/// Arguments the CPU runtime rejects through blpa_runtime_fail (which
/// exits, so only the emulated side runs): the CUDA kernels must reject
/// them too, before any launch.
void testRejections() {
  Floats x(64), y(64);
  Bytes codes(64);
  Int64s labels(4);
  blpa_context *ctx = &emuCtx;
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
    blpa_softmax_cross_entropy(ctx, x.data(), labels.data(), y.data(), 4, 0);
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
                 [&] { blpa_activation(ctx, x.data(), y.data(), 4, 9, 0, 0); });
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
  cpuCtx.num_threads = 1;
  cpuref_blpa_runtime_init(&cpuCtx);
  emu::initContext(&emuCtx);
  setDefaultHyper();

  for (const auto &[name, error] : emu::selfCheck())
    report("emulator/" + name, error.empty(), error);
  testElementwise();
  testActivations();
  testActivationRegions();
  testCopiesStrided();
  testPads();
  testTransposes();
  testDropouts();
  testLoss();
  testPooling();
  for (const BnShape &s : bnShapes)
    testBatchNorm(s);
  testCodes();
  testRejections();

  emu::shutdownContext(&emuCtx);
  cpuref_blpa_runtime_shutdown(&cpuCtx);
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
