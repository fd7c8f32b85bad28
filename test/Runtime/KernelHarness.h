//===- KernelHarness.h - One harness for every runtime kernel test -------===//
//
// What the three kernel tests share: blpa-runtime-kernel-test (the CPU
// runtime), blpa-cuda-emulation-test (the CUDA kernels run on the host) and
// blpa-cuda-kernel-test (the CUDA runtime on a GPU) run the one list of
// cases in KernelCases.h through this harness.
//
// A Case names its buffers (inputs with their contents, outputs with how
// they are compared) and calls one kernel through an Api table, written
// once for every runtime. A Backend runs that call on the runtime under
// test and on the reference runtime (the CPU runtime, itself checked
// against naive double references by RuntimeKernelTest.cpp), adds its own
// checks (writes outside the outputs, repeats in another thread order, CUDA
// graph replays) and hands back both results; the Case then compares every
// output as the backend's arithmetic allows: in ulps (0: bit for bit) where
// the tested runtime does the reference's float operations (the emulation,
// the CPU runtime at another thread count), relative to the largest
// reference magnitude where it does not (a GPU).
//
// Output: one `FAIL name: detail` line per failing check (`PASS name` too
// when `verbose`), then the caller prints `N passed, M failed`. The data
// are seeded (BLPA_KERNEL_TEST_SEED overrides the seed).
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_TEST_RUNTIME_KERNELHARNESS_H
#define BLPA_TEST_RUNTIME_KERNELHARNESS_H

#include "blpa/Runtime/Runtime.h"

#include "Format.h"
#include "WindowCase.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

/// The kernels of Runtime.h that the CUDA runtime implements with kernels
/// of its own (and so the emulation runs), with their types from Runtime.h.
#define BLPA_DEVICE_KERNELS(X)                                                 \
  X(blpa_fill)                                                                 \
  X(blpa_relu)                                                                 \
  X(blpa_relu_grad)                                                            \
  X(blpa_add)                                                                  \
  X(blpa_mul)                                                                  \
  X(blpa_sub)                                                                  \
  X(blpa_div)                                                                  \
  X(blpa_power)                                                                \
  X(blpa_activation)                                                           \
  X(blpa_activation_grad)                                                      \
  X(blpa_activation_dynamic)                                                   \
  X(blpa_activation_grad_dynamic)                                              \
  X(blpa_activation_region)                                                    \
  X(blpa_activation_grad_region)                                               \
  X(blpa_copy_strided)                                                         \
  X(blpa_pad)                                                                  \
  X(blpa_pad_grad)                                                             \
  X(blpa_transpose)                                                            \
  X(blpa_trilu)                                                                \
  X(blpa_embedding)                                                            \
  X(blpa_embedding_grad)                                                       \
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
  X(blpa_layer_norm)                                                           \
  X(blpa_layer_norm_grad)                                                      \
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
  X(blpa_probability_encode)                                                   \
  X(blpa_probability_decode)

/// The kernels the CUDA runtime hands to cuDNN, cuBLAS or a memory copy
/// (not emulated: their Api entries are null there).
#define BLPA_LIBRARY_KERNELS(X)                                                \
  X(blpa_conv)                                                                 \
  X(blpa_conv_grad_input)                                                      \
  X(blpa_conv_grad_weight)                                                     \
  X(blpa_gemm)                                                                 \
  X(blpa_batch_matmul)                                                         \
  X(blpa_copy)

/// Every kernel of Runtime.h.
#define BLPA_KERNELS(X) BLPA_DEVICE_KERNELS(X) BLPA_LIBRARY_KERNELS(X)

namespace blpa_test {

using Bytes = std::vector<uint8_t>;
using Floats = std::vector<float>;
using Int64s = std::vector<int64_t>;

/// One runtime's kernels, called as `api.blpa_relu(...)`.
struct Api {
#define BLPA_API_MEMBER(name) decltype(&::name) name;
  BLPA_KERNELS(BLPA_API_MEMBER)
#undef BLPA_API_MEMBER
};

/// A GPU's floats: largest |got - want| allowed, relative to the largest
/// |want|.
constexpr double floatTol = 1e-4;
/// A GPU's codes computed from floats it rounds otherwise than the CPU:
/// the fraction of codes that may differ (each by one).
constexpr double codeSlack = 1e-3;
/// Per-element ulps allowed where runtimes sum in double in different
/// orders: a float rounded from two slightly different doubles.
constexpr int sumUlps = 2;
/// Bytes after packed codes that a kernel must not touch.
constexpr size_t guardBytes = 16;
/// What outputs hold before a kernel runs: NaN for floats, so that an
/// element a kernel forgets to write cannot pass.
constexpr uint8_t floatJunk = 0xFF;
constexpr uint8_t codeJunk = 0xA5;
constexpr double bnEps = 1e-5;

//===----------------------------------------------------------------------===//
// Reporting
//===----------------------------------------------------------------------===//

inline int passed = 0, failed = 0;
/// verbose: PASS lines too; quiet: checks counted, not printed (cases
/// listed, not run).
inline bool verbose = false, quiet = false;

inline void report(const std::string &name, bool ok,
                   const std::string &detail) {
  if (ok) {
    ++passed;
    if (quiet)
      return;
    if (verbose)
      std::printf("PASS %s\n", name.c_str());
  } else {
    ++failed;
    if (quiet)
      return;
    std::printf("FAIL %s: %s\n", name.c_str(), detail.c_str());
  }
  std::fflush(stdout);
}

//===----------------------------------------------------------------------===//
// Data
//===----------------------------------------------------------------------===//

/// The data's seed: fixed, so that a failure repeats; BLPA_KERNEL_TEST_SEED
/// draws other data (to measure the bars over many draws).
inline unsigned dataSeed() {
  const char *seed = std::getenv("BLPA_KERNEL_TEST_SEED");
  return seed && *seed ? unsigned(std::strtoul(seed, nullptr, 10)) : 20240611u;
}

inline std::mt19937 rng(dataSeed());

inline Floats randomFloats(size_t n, float lo = -1, float hi = 1) {
  std::uniform_real_distribution<float> dist(lo, hi);
  Floats v(n);
  for (float &x : v)
    x = dist(rng);
  return v;
}

/// Small integers, so that pooling windows contain ties.
inline Floats randomInts(size_t n, int lo, int hi) {
  std::uniform_int_distribution<int> dist(lo, hi);
  Floats v(n);
  for (float &x : v)
    x = float(dist(rng));
  return v;
}

inline Floats randomNormals(size_t n, float mean, float stddev) {
  std::normal_distribution<float> dist(mean, stddev);
  Floats v(n);
  for (float &x : v)
    x = dist(rng);
  return v;
}

inline Int64s randomLabels(size_t n, int64_t classes) {
  std::uniform_int_distribution<int64_t> dist(0, classes - 1);
  Int64s v(n);
  for (int64_t &x : v)
    x = dist(rng);
  return v;
}

/// Values a ReLU or a max treats specially, spread over v.
inline Floats withSpecials(Floats v) {
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

/// v with `specials` written over it every 97 elements, in turn.
inline Floats withValues(Floats v, const Floats &specials) {
  for (size_t i = 0; i < v.size(); i += 97)
    v[i] = specials[i / 97 % specials.size()];
  return v;
}

/// v's magnitudes moved to [0.5, 2], signs kept: divisors, and values that
/// a dropout never turns into 0 by itself.
inline Floats awayFromZero(Floats v) {
  for (float &x : v)
    x = std::copysign(0.5f + 1.5f * std::fabs(x), x);
  return v;
}

template <typename T> Bytes bytesOf(const std::vector<T> &v) {
  const auto *p = reinterpret_cast<const uint8_t *>(v.data());
  return Bytes(p, p + v.size() * sizeof(T));
}

inline Floats floatsOf(const Bytes &b) {
  Floats v(b.size() / sizeof(float));
  if (!v.empty())
    std::memcpy(v.data(), b.data(), v.size() * sizeof(float));
  return v;
}

inline Floats relu(Floats v) {
  for (float &x : v)
    x = std::max(x, 0.0f);
  return v;
}

inline int64_t product(const Int64s &dims) {
  int64_t p = 1;
  for (int64_t d : dims)
    p *= d;
  return p;
}

inline size_t packedSize(size_t numel, int bits) {
  return (numel * bits + 7) / 8;
}

inline int codeAt(const Bytes &packed, size_t i, int bits) {
  return packed[i * bits / 8] >> (i * bits % 8) & ((1 << bits) - 1);
}

inline Bytes concat(std::initializer_list<Bytes> parts) {
  Bytes all;
  for (const Bytes &p : parts)
    all.insert(all.end(), p.begin(), p.end());
  return all;
}

//===----------------------------------------------------------------------===//
// Comparisons
//===----------------------------------------------------------------------===//

inline bool sameFloat(float a, float b) {
  return std::memcmp(&a, &b, sizeof(float)) == 0 ||
         (std::isnan(a) && std::isnan(b));
}

/// Distance in representable floats (0 for equal bits, huge across signs).
inline int64_t ulpDistance(float a, float b) {
  auto ordered = [](float v) {
    int32_t i;
    std::memcpy(&i, &v, sizeof(i));
    return i < 0 ? int64_t(INT32_MIN) - i : int64_t(i);
  };
  return std::llabs(ordered(a) - ordered(b));
}

/// How an output of floats is compared: `ulps` per element where the
/// tested runtime does the reference's float operations (negative: where
/// even then the order of operations may differ, as in a library's
/// blocking, within `rel` there too), `rel` of the largest reference
/// magnitude where it does not; `signs`: a ReLU output, whose zeros must be
/// the reference's exactly.
struct Tol {
  int ulps = 0;
  double rel = floatTol;
  bool signs = false;
};
/// Exact everywhere (copies, masks, skipped updates).
constexpr Tol exactTol = {0, 0};
/// Sums whose order differs between runtimes.
constexpr Tol sumTol = {sumUlps, floatTol};
/// cuDNN, cuBLAS, oneDNN and sgemm: deterministic for a fixed thread count
/// only (Runtime.h), so relative on every backend.
constexpr Tol libraryTol = {-1, floatTol};

/// Every element within `ulps` of the reference's (bit for bit for 0; NaN
/// only where the reference has NaN). Sums in another order (ulps > 0) err
/// relative to their terms, not to a result that cancels to near 0: there
/// `ulps` ulps of the output's largest magnitude are allowed too.
inline void compareUlps(const std::string &name, const Floats &got,
                        const Floats &want, int ulps) {
  if (got.size() != want.size())
    return report(name, false, "size mismatch");
  double scale = 0;
  for (float v : want)
    if (std::isfinite(v))
      scale = std::max(scale, std::fabs(double(v)));
  double absolute =
      ulps * scale * double(std::numeric_limits<float>::epsilon());
  size_t differ = 0, first = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (sameFloat(got[i], want[i]))
      continue;
    bool nan = std::isnan(got[i]) || std::isnan(want[i]);
    int64_t d = nan ? std::numeric_limits<int64_t>::max()
                    : ulpDistance(got[i], want[i]);
    bool near = !nan && std::fabs(double(got[i]) - want[i]) <= absolute;
    if (d > ulps && !near && differ++ == 0)
      first = i;
  }
  std::string detail = format("%zu of %zu elements differ by more than %d ulps",
                              differ, want.size(), ulps);
  if (differ)
    detail += format(", first at [%zu]: got %.9g, reference %.9g", first,
                     got[first], want[first]);
  report(name, differ == 0, detail);
}

/// max |got - want| <= rel * max |want|, non-finite values equal; with
/// `signs`, also (got > 0) == (want > 0) everywhere.
inline void compareRelative(const std::string &name, const Floats &got,
                            const Floats &want, double rel, bool signs) {
  if (got.size() != want.size())
    return report(name, false, "size mismatch");
  double scale = 0, worst = 0;
  size_t at = 0, nonFinite = 0, signErrors = 0;
  for (float v : want)
    if (std::isfinite(v))
      scale = std::max(scale, std::fabs(double(v)));
  for (size_t i = 0; i < want.size(); ++i) {
    signErrors += signs && (got[i] > 0) != (want[i] > 0);
    if (!std::isfinite(got[i]) || !std::isfinite(want[i])) {
      bool same =
          got[i] == want[i] || (std::isnan(got[i]) && std::isnan(want[i]));
      if (!same && nonFinite++ == 0)
        at = i;
      continue;
    }
    double err = std::fabs(double(got[i]) - want[i]);
    if (err > worst && nonFinite == 0) {
      worst = err;
      at = i;
    }
  }
  bool ok = nonFinite == 0 && signErrors == 0 && worst <= rel * scale;
  std::string detail =
      want.empty()
          ? ""
          : format("max error %.3g at [%zu] (got %.9g, reference "
                   "%.9g) exceeds %.1g of max |reference| %.4g "
                   "(%zu elements)",
                   worst, at, got[at], want[at], rel, scale, want.size());
  if (nonFinite)
    detail = format("%zu elements differ in non-finite values, first at [%zu] "
                    "(got %g, reference %g)",
                    nonFinite, at, got[at], want[at]);
  if (signErrors)
    detail += format("; %zu elements differ in sign (ReLU mask)", signErrors);
  report(name, ok, detail);
}

/// Packed codes: code i may differ by one where `slack(i)`; at most
/// `fraction * numel` codes (at least one when fraction is not 0) may
/// differ by one anyway; unused tail bits and the guard bytes after the
/// codes as the reference left them.
inline void compareCodes(const std::string &name, const Bytes &got,
                         const Bytes &want, size_t numel, int bits,
                         const std::function<bool(size_t)> &slack,
                         double fraction) {
  size_t differ = 0, far = 0, first = 0;
  for (size_t i = 0; i < numel; ++i) {
    int g = codeAt(got, i, bits), w = codeAt(want, i, bits);
    if (g == w || (slack && slack(i) && std::abs(g - w) == 1))
      continue;
    if (differ++ == 0)
      first = i;
    far += std::abs(g - w) > 1;
  }
  size_t used = packedSize(numel, bits), tailBits = numel * bits % 8;
  bool tail = tailBits == 0 ||
              ((got[used - 1] ^ want[used - 1]) & (0xFF << tailBits)) == 0;
  bool guard = std::equal(got.begin() + used, got.end(), want.begin() + used);
  size_t allowed =
      fraction > 0 ? std::max<size_t>(1, size_t(fraction * double(numel))) : 0;
  bool ok = tail && guard && far == 0 && differ <= allowed;
  std::string detail =
      format("%zu of %zu %d-bit codes differ (%zu by more than 1, %zu allowed)",
             differ, numel, bits, far, allowed);
  if (differ)
    detail += format(", first at [%zu]: got %d, reference %d", first,
                     codeAt(got, first, bits), codeAt(want, first, bits));
  if (!tail)
    detail += "; unused tail bits differ (must be 0)";
  if (!guard)
    detail += "; wrote past the last code byte";
  report(name, ok, detail);
}

/// Two results that Runtime.h promises bit for bit equal.
inline void expectSameBits(const std::string &name, const Bytes &got,
                           const Bytes &want, const char *what) {
  report(name, got == want, what);
}

//===----------------------------------------------------------------------===//
// Cases
//===----------------------------------------------------------------------===//

/// The addresses of a case's buffers on one runtime, by buffer id.
struct Ptrs {
  std::vector<void *> at;

  float *f(int id) const { return static_cast<float *>(at[id]); }
  uint8_t *u8(int id) const { return static_cast<uint8_t *>(at[id]); }
  int64_t *i64(int id) const { return static_cast<int64_t *>(at[id]); }
  void *raw(int id) const { return at[id]; }
};

/// One call of a kernel (or a few), written once for every runtime.
using Kernel = std::function<void(const Api &, blpa_context *, const Ptrs &)>;

struct Results;

/// One buffer of a case: its contents before every run and, for an output,
/// how the tested runtime's result is compared with the reference's.
struct Buffer {
  enum Kind { input, floats, codes, unchecked };
  std::string name; // of an output
  Bytes initial;
  Kind kind = input;
  Tol tol;             // floats
  int bits = 0;        // codes
  size_t numel = 0;    // codes
  double fraction = 0; // codes: codeSlack-style, where arithmetic differs
  /// codes: where the exact comparison allows one off (from both results).
  std::function<bool(const Results &, size_t)> slack;
  /// Where the backend can, 4 bytes past a 64-byte boundary: off the
  /// float4 paths.
  bool misaligned = false;
};

/// Both runtimes' outputs of a case, by buffer id or output name.
struct Results {
  std::vector<std::string> names;
  std::vector<Bytes> ref, got;
  /// The tested kernel ran (an emulation error fails the case instead).
  bool ok = true;

  const Bytes &refBytes(const std::string &name) const {
    return ref[indexOf(name)];
  }
  const Bytes &bytes(const std::string &name) const {
    return got[indexOf(name)];
  }
  Floats refFloats(const std::string &name) const {
    return floatsOf(refBytes(name));
  }
  Floats floats(const std::string &name) const { return floatsOf(bytes(name)); }
  size_t indexOf(const std::string &name) const {
    size_t i = std::find(names.begin(), names.end(), name) - names.begin();
    if (i == names.size()) {
      std::printf("kernel test: no output %s\n", name.c_str());
      std::exit(2);
    }
    return i;
  }
};

class Case;

/// Where cases run: the runtime under test and the reference runtime.
class Backend {
public:
  virtual ~Backend() = default;
  /// The tested runtime's kernels (null for those it lacks).
  virtual const Api &api() const = 0;
  /// The reference runtime (the CPU runtime) and its context, for inputs
  /// derived from reference results.
  virtual const Api &refApi() const = 0;
  virtual blpa_context *refContext() = 0;
  /// Every context, for hyper-parameters and dropout steps.
  virtual std::vector<blpa_context *> contexts() = 0;
  /// Whether the tested runtime does the reference's float operations
  /// (outputs compared in Tol::ulps, codes exactly bar Buffer::slack)
  /// rather than its own (Tol::rel, Buffer::fraction).
  virtual bool exactArithmetic() const = 0;
  /// Whether it also sums in the reference's order (sums bit for bit).
  virtual bool sameOrder() const { return false; }
  /// Runs `kernel` on both runtimes from `c`'s buffers, reports the
  /// backend's own checks and returns both runtimes' outputs.
  virtual Results run(const Case &c, const Kernel &kernel) = 0;

  template <typename Fn> bool has(Fn Api::*kernel) const {
    return api().*kernel != nullptr;
  }
};

/// The backend every Case runs on, set by the test's main.
inline Backend *backend = nullptr;

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

  /// `count` floats the kernel writes.
  int out(const std::string &outName, size_t count, Tol tol = {},
          bool misaligned = false) {
    return addFloats(outName, Bytes(count * sizeof(float), floatJunk), tol,
                     misaligned);
  }

  /// An operand the kernel overwrites (in-place calls, optimizer state).
  int inOut(const std::string &outName, const Floats &data, Tol tol = {},
            bool misaligned = false) {
    return addFloats(outName, bytesOf(data), tol, misaligned);
  }

  /// `data` as an operand and where the kernel writes `outName`: over the
  /// operand when `inPlace`.
  std::pair<int, int> operandAndResult(const Floats &data, bool inPlace,
                                       const std::string &outName, Tol tol = {},
                                       bool misaligned = false) {
    if (!inPlace) {
      int operand = in(data, misaligned);
      return {operand, out(outName, data.size(), tol, misaligned)};
    }
    int both = inOut(outName, data, tol, misaligned);
    return {both, both};
  }

  /// Room for `numel` packed codes and guard bytes after them, compared
  /// exactly but for `fraction` and `slack` (see Buffer).
  int codes(const std::string &outName, size_t numel, int bits,
            double fraction = 0,
            std::function<bool(const Results &, size_t)> slack = nullptr) {
    Buffer b;
    b.name = outName;
    b.kind = Buffer::codes;
    b.bits = bits;
    b.numel = numel;
    b.fraction = fraction;
    b.slack = std::move(slack);
    b.initial = Bytes(packedSize(numel, bits) + guardBytes, codeJunk);
    return add(std::move(b));
  }

  /// Plain bytes, compared exactly.
  int bytesOut(const std::string &outName, size_t bytes) {
    return codes(outName, bytes, 8);
  }

  /// Floats the caller checks itself.
  int uncheckedOut(const std::string &outName, size_t count) {
    int id = out(outName, count);
    buffers[id].kind = Buffer::unchecked;
    return id;
  }

  /// The tested kernel must raise this device error, and the reference
  /// (which would exit) is not run: only backends with a device error flag
  /// they can read after a step (the emulation) run such a case.
  void expectDeviceError(int32_t error) { deviceError = error; }

  /// Runs `kernel` on the backend and compares every output.
  Results run(const Kernel &kernel) const {
    Results r = backend->run(*this, kernel);
    if (r.ok && !deviceError)
      compare(name, r);
    return r;
  }

  /// Reports one check per output of `r` under `prefix`.
  void compare(const std::string &prefix, const Results &r) const {
    bool exact = backend->exactArithmetic();
    for (size_t i = 0; i < buffers.size(); ++i) {
      const Buffer &b = buffers[i];
      std::string check = prefix + "/" + b.name;
      if (b.kind == Buffer::floats)
        compareFloats(check, floatsOf(r.got[i]), floatsOf(r.ref[i]), b.tol);
      else if (b.kind == Buffer::codes)
        compareCodes(check, r.got[i], r.ref[i], b.numel, b.bits,
                     exact && b.slack
                         ? [&](size_t at) { return b.slack(r, at); }
                         : std::function<bool(size_t)>(),
                     exact ? 0 : b.fraction);
    }
  }

  /// One output's floats against a reference, as the backend allows.
  static void compareFloats(const std::string &name, const Floats &got,
                            const Floats &want, const Tol &tol) {
    if (!backend->exactArithmetic() || tol.ulps < 0)
      return compareRelative(name, got, want, tol.rel, tol.signs);
    compareUlps(name, got, want, backend->sameOrder() ? 0 : tol.ulps);
  }

  /// Output names in buffer order (empty for inputs).
  std::vector<std::string> names() const {
    std::vector<std::string> all;
    for (const Buffer &b : buffers)
      all.push_back(b.name);
    return all;
  }

  std::string name;
  std::vector<Buffer> buffers;
  int32_t deviceError = 0;

private:
  int addFloats(const std::string &outName, Bytes initial, Tol tol,
                bool misaligned) {
    Buffer b;
    b.name = outName;
    b.kind = Buffer::floats;
    b.tol = tol;
    b.misaligned = misaligned;
    b.initial = std::move(initial);
    return add(std::move(b));
  }

  int add(Buffer b) {
    buffers.push_back(std::move(b));
    return int(buffers.size()) - 1;
  }
};

//===----------------------------------------------------------------------===//
// Contexts
//===----------------------------------------------------------------------===//

struct Hyper {
  float lr, momentum, weightDecay;
  int32_t skipUpdate;
};
constexpr Hyper defaultHyper = {0.1f, 0.9f, 5e-4f, 0};

inline void setHyper(const Hyper &h) {
  for (blpa_context *ctx : backend->contexts()) {
    ctx->lr = h.lr;
    ctx->momentum = h.momentum;
    ctx->weight_decay = h.weightDecay;
    ctx->skip_update = h.skipUpdate;
  }
}

/// The dropout masks' seed and step on every runtime (the CUDA runtime
/// stages them into its device hyper-parameters at every step).
inline void setDropoutStep(uint64_t seed, uint64_t step) {
  for (blpa_context *ctx : backend->contexts()) {
    ctx->seed = seed;
    ctx->step = step;
  }
}

//===----------------------------------------------------------------------===//
// Host memory
//===----------------------------------------------------------------------===//

/// A case's buffers in host memory, filled with their initial contents,
/// each between guard bytes: for backends whose runtime works on host
/// memory, which can then check that a kernel wrote nothing outside its
/// outputs.
class HostMemory {
public:
  static constexpr size_t guard = 64;
  static constexpr uint8_t guardByte = 0xCD;

  explicit HostMemory(const std::vector<Buffer> &buffers) : buffers(buffers) {
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

} // namespace blpa_test

#endif // BLPA_TEST_RUNTIME_KERNELHARNESS_H
