//===- KernelCases.h - The kernel cases every runtime backend runs -------===//
//
// One list of kernel cases, run by blpa-runtime-kernel-test (the CPU
// runtime at more threads than cores against itself at one thread),
// blpa-cuda-emulation-test (the CUDA kernels on emulated threads against
// the CPU runtime) and blpa-cuda-kernel-test (the CUDA runtime on a GPU
// against the CPU runtime) through KernelHarness.h: awkward shapes (odd sizes,
// packed codes that straddle (n, c) slices and warp tails, every code width,
// misaligned pointers, in-place calls, ties, windows in the padding,
// activations' branch bounds, dropout masks at several seeds, steps and
// streams).
//
// Adding a kernel's cases: write a function here that builds a Case per
// call, names its buffers and runs the call through the Api table; for a
// hypothetical blpa_scale:
//
//   void testScale(size_t numel) {
//     Case k("scale/" + std::to_string(numel));
//     int x = k.in(randomFloats(numel));          // an input
//     int y = k.out("y", numel);                  // an output, compared
//     k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
//       rt.blpa_scale(ctx, p.f(x), p.f(y), int64_t(numel));
//     });
//   }
//
// The output's Tol says how far it may be from the reference: the default
// is bit for bit where the backend does the reference's float operations
// and within floatTol on a GPU; sumTol for sums in another order,
// exactTol where Runtime.h promises equal bits, libraryTol for cuDNN,
// cuBLAS and oneDNN. Call the function from its family's (runKernelCases
// at the end of this file calls every family), and add the kernel to
// BLPA_DEVICE_KERNELS in KernelHarness.h, or to BLPA_LIBRARY_KERNELS if the
// CUDA runtime leaves it to a library (the emulation has none of those:
// start the family with `if (!has(&Api::blpa_x)) return;`). Shapes that a
// naive reference in RuntimeKernelTest.cpp also walks go in a table here
// (copyStridedShapes, padShapes, ...). Checks that need more than one
// call (a recompute bit for bit the forward, a gradient's mask the
// forward's) compare the calls' Results with expectSameBits.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_TEST_RUNTIME_KERNELCASES_H
#define BLPA_TEST_RUNTIME_KERNELCASES_H

#include "KernelHarness.h"

#include "../../lib/Runtime/Common/ActivationMath.h"

#include <tuple>

namespace blpa_test {

template <typename Fn> bool has(Fn Api::*kernel) {
  return backend->has(kernel);
}

//===----------------------------------------------------------------------===//
// Element-wise kernels, broadcast, reductions, optimizer
//===----------------------------------------------------------------------===//

/// relu and relu_grad (from x: NaN, zeros and negatives for the mask);
/// `misaligned` moves the operands off the float4 path.
inline void testRelu(size_t numel, bool misaligned) {
  Floats x = withSpecials(randomFloats(numel)), dy = randomFloats(numel);
  std::string base = std::to_string(numel) + (misaligned ? "/misaligned" : "");
  for (bool inPlace : {false, true}) {
    std::string suffix = base + (inPlace ? "/in_place" : "");
    Case k("relu/" + suffix);
    auto [xIn, y] = k.operandAndResult(x, inPlace, "y", exactTol, misaligned);
    k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
      rt.blpa_relu(ctx, p.f(xIn), p.f(y), int64_t(numel));
    });
    Case g("relu_grad/" + suffix);
    auto [dyIn, dx] =
        g.operandAndResult(dy, inPlace, "dx", exactTol, misaligned);
    int yIn = g.in(x);
    g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
      rt.blpa_relu_grad(ctx, p.f(dyIn), p.f(yIn), p.f(dx), int64_t(numel));
    });
  }
}

inline void testFill(size_t numel, double value, bool misaligned) {
  Case k("fill/" + std::to_string(numel) + (misaligned ? "/misaligned" : ""));
  int y = k.out("y", numel, exactTol, misaligned);
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_fill(ctx, p.f(y), int64_t(numel), value);
  });
}

using BroadcastKernel = decltype(&::blpa_add);

/// Out of place, and in place over each operand that has the output's
/// shape. One float operation per element: exact (`tol`: a GPU's powf is
/// not the CPU's). Divisors away from 0; `a` within [lo, 1].
inline void testBroadcast(const char *op, BroadcastKernel Api::*kernel,
                          const char *name, Int64s outDims, Int64s aDims,
                          Int64s bDims, bool misaligned, Tol tol = exactTol,
                          float lo = -1) {
  Floats a = randomFloats(product(aDims), lo, 1),
         b = awayFromZero(randomFloats(product(bDims)));
  const char *const suffixes[] = {"", "/in_place_lhs", "/in_place_rhs"};
  for (int over : {0, 1, 2}) {
    if ((over == 1 && aDims != outDims) || (over == 2 && bDims != outDims))
      continue;
    Case k(std::string(op) + "/" + name + (misaligned ? "/misaligned" : "") +
           suffixes[over]);
    int aIn =
        over == 1 ? k.inOut("y", a, tol, misaligned) : k.in(a, misaligned);
    int bIn =
        over == 2 ? k.inOut("y", b, tol, misaligned) : k.in(b, misaligned);
    int y = over == 1   ? aIn
            : over == 2 ? bIn
                        : k.out("y", size_t(product(outDims)), tol, misaligned);
    k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
      (rt.*kernel)(ctx, p.f(aIn), p.f(bIn), p.f(y), int64_t(outDims.size()),
                   outDims.data(), aDims.data(), bDims.data());
    });
  }
}

/// blpa_add, blpa_mul, blpa_sub, blpa_div and blpa_power (positive bases)
/// on the same shapes.
inline void testAdd(const char *name, Int64s outDims, Int64s aDims,
                    Int64s bDims, bool misaligned = false) {
  testBroadcast("add", &Api::blpa_add, name, outDims, aDims, bDims, misaligned);
  testBroadcast("mul", &Api::blpa_mul, name, outDims, aDims, bDims, misaligned);
  testBroadcast("sub", &Api::blpa_sub, name, outDims, aDims, bDims, misaligned);
  testBroadcast("div", &Api::blpa_div, name, outDims, aDims, bDims, misaligned);
  testBroadcast("power", &Api::blpa_power, name, outDims, aDims, bDims,
                misaligned, Tol{4, floatTol}, 0.25f);
}

/// A reduction to a broadcastable shape: blpa_reduce_sum_to's operands.
struct ReduceShape {
  const char *name;
  Int64s in, out;
  double scale;
};

/// Channels of NCHW (blocks, groups of channels), rows, the middle, outer
/// and inner dimensions, alternating ones, nothing, empty sums, large ones.
inline const std::vector<ReduceShape> reduceShapes = {
    {"nchw_to_c", {5, 7, 9, 11}, {1, 7, 1, 1}, 1.0},
    {"nchw_to_c_group8", {3, 5, 4, 5}, {1, 5, 1, 1}, 1.0},
    {"nchw_to_c_group32", {5, 7, 9, 11}, {1, 7, 1, 1}, 0.5},
    {"nchw_to_c_block", {4, 3, 40, 41}, {1, 3, 1, 1}, 1.0},
    {"all", {3, 5, 7}, {1, 1, 1}, 1.0},
    {"all_chunked", {3, 5, 1999}, {1, 1, 1}, 1.0},
    {"planes_to_n", {4, 6, 7, 7}, {4, 6, 1, 1}, 1.0 / 49},
    {"rows_to_row", {37, 1100}, {1, 1100}, 0.5},
    {"rows_to_row_chunked", {300, 9}, {1, 9}, 1.0},
    {"middle", {6, 5, 7}, {6, 1, 7}, 1.0},
    {"outer_and_inner", {4, 3, 5, 2}, {1, 3, 1, 2}, -2.0},
    {"alternating_rank5", {2, 3, 4, 5, 6}, {2, 1, 4, 1, 6}, 1.0},
    {"none", {3, 5}, {3, 5}, 3.0},
    {"empty_sum", {3, 0, 4}, {3, 1, 1}, 1.0},
    {"empty_rows", {0, 4}, {1, 4}, 1.0},
    {"large_to_c", {32, 64, 28, 28}, {1, 64, 1, 1}, 1.0},
    {"large_all", {257, 1031}, {1, 1}, 1.0},
};

inline void testReduceSumTo(const char *name, Int64s inDims, Int64s outDims,
                            double scale) {
  Case k(std::string("reduce_sum_to/") + name);
  int x = k.in(randomFloats(product(inDims))),
      y = k.out("y", size_t(product(outDims)), sumTol);
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_reduce_sum_to(ctx, p.f(x), p.f(y), int64_t(inDims.size()),
                          inDims.data(), outDims.data(), scale);
  });
}

/// Where blpa_sgd_update copies the gradient to.
enum class GradOut { separate, none, overGrad };

inline void testSgd(size_t numel, const char *hyperName, bool skip,
                    bool withMomentum, GradOut gradOut) {
  const char *const outNames[] = {"", "/no_grad_out", "/grad_out_is_grad"};
  Case k(format("sgd_update/%zu/%s%s%s", numel, hyperName,
                withMomentum ? "" : "/no_momentum_buffer",
                outNames[int(gradOut)]));
  // Skipped updates must leave the state exactly as it was.
  Tol tol = skip ? exactTol : Tol{};
  int param = k.inOut("param", randomFloats(numel), tol),
      grad = k.in(randomFloats(numel)),
      mom = withMomentum ? k.inOut("momentum", randomFloats(numel), tol) : -1,
      out = gradOut == GradOut::separate ? k.out("grad_out", numel, exactTol)
                                         : -1;
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    float *target = gradOut == GradOut::separate   ? p.f(out)
                    : gradOut == GradOut::overGrad ? p.f(grad)
                                                   : nullptr;
    rt.blpa_sgd_update(ctx, p.f(param), p.f(grad),
                       withMomentum ? p.f(mom) : nullptr, target,
                       int64_t(numel));
  });
}

inline void testSgdUpdates() {
  const struct {
    const char *name;
    Hyper hyper;
  } hypers[] = {{"default", defaultHyper},
                {"plain", {0.01f, 0.0f, 0.0f, 0}},
                {"skip_update", {0.1f, 0.9f, 5e-4f, 1}}};
  for (size_t numel : {size_t(5), size_t(4099), size_t(40003)})
    for (const auto &h : hypers) {
      setHyper(h.hyper);
      bool skip = h.hyper.skipUpdate;
      testSgd(numel, h.name, skip, true, GradOut::separate);
      testSgd(numel, h.name, skip, false, GradOut::none);
      testSgd(numel, h.name, skip, true, GradOut::overGrad);
    }
  setHyper(defaultHyper);
}

inline void testRunningStats(int64_t c, int64_t count, int32_t skip) {
  setHyper({0.1f, 0.9f, 5e-4f, skip});
  Case k(format("update_running_stats/c%lld/count%lld%s", (long long)c,
                (long long)count, skip ? "/skip_update" : ""));
  // Skipped updates must leave the statistics exactly as they were.
  Tol tol = skip ? exactTol : Tol{};
  int runMean = k.inOut("running_mean", randomFloats(c), tol),
      runVar = k.inOut("running_var", randomFloats(c, 0.5f, 2.0f), tol),
      mean = k.in(randomFloats(c)), invStd = k.in(randomFloats(c, 0.5f, 3.0f));
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_update_running_stats(ctx, p.f(runMean), p.f(runVar), p.f(mean),
                                 p.f(invStd), c, count, 0.9, 1e-3);
  });
  setHyper(defaultHyper);
}

inline void testElementwise() {
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

  for (const ReduceShape &r : reduceShapes)
    testReduceSumTo(r.name, r.in, r.out, r.scale);

  testSgdUpdates();
  for (int32_t skip : {0, 1}) {
    testRunningStats(9, 37, skip);
    testRunningStats(300, 1, skip);
    testRunningStats(300, 2, skip);
  }
}

//===----------------------------------------------------------------------===//
// Activations, strided copies, padding, transposition, dropout
//===----------------------------------------------------------------------===//

/// An activation of Runtime.h with the values next to its branch bounds.
/// `exact`: the kernel's float operations round the exact result once
/// (clip's bounds are floats, hard_sigmoid's affine map is evaluated in
/// float), so a double reference rounded once matches bit for bit.
struct ActivationCase {
  const char *name;
  int64_t kind;
  double alpha, beta;
  bool exact;
  Floats specials;
};

/// Every activation kind (two hard-sigmoid slopes, ONNX's defaults among
/// them; clip with bounds, as ReLU6 and to a point), with `specials` on
/// and next to the bounds of its branches.
inline std::vector<ActivationCase> activationCases() {
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
       false,
       {0.0f, -0.0f, 20.0f, 100.0f, -20.0f, -100.0f, 8.0f, -8.0f, nan}},
      {"hard_sigmoid_pow2", BLPA_ACT_HARD_SIGMOID, 0.25, 0.5, true,
       around({-2.0f, 2.0f, 0.0f})},
      {"hard_sigmoid", BLPA_ACT_HARD_SIGMOID, 0.2, 0.5, true,
       around({-2.5f, 2.5f, 0.0f})},
      {"hard_swish", BLPA_ACT_HARD_SWISH, 0, 0, false, swish},
      {"clip_relu6", BLPA_ACT_CLIP, 0, 6, true, relu6},
      {"clip", BLPA_ACT_CLIP, -1.5, 2.25, true, clip},
      {"clip_point", BLPA_ACT_CLIP, 1, 1, true, {1.0f, nan, 0.5f, 2.0f}},
      {"tanh", BLPA_ACT_TANH, 0, 0, false, {0.0f, -0.0f, 20.0f, -20.0f, nan}},
      {"erf", BLPA_ACT_ERF, 0, 0, false, {0.0f, -0.0f, 6.0f, -6.0f, nan}},
      {"gelu", BLPA_ACT_GELU, 0, 0, false, {0.0f, -0.0f, -0.75f, -8.0f, nan}},
      {"gelu_tanh",
       BLPA_ACT_GELU_TANH,
       0,
       0,
       false,
       {0.0f, -0.0f, -0.75f, -8.0f, nan}},
      // Negative inputs give NaN, as does their gradient.
      {"sqrt", BLPA_ACT_SQRT, 0, 0, false, {4.0f, 0.25f, -1.0f, nan}},
      {"pow_square", BLPA_ACT_POW, 2, 0, false, {0.0f, -0.0f, -3.0f, nan}},
      {"pow_cube", BLPA_ACT_POW, 3, 0, false, {0.0f, -2.0f, nan}},
      {"pow_root", BLPA_ACT_POW, 0.5, 0, false, {4.0f, 0.25f, -1.0f, nan}},
      {"pow_zero", BLPA_ACT_POW, 0, 0, false, {0.0f, -2.0f, inf, nan}},
      {"exp", BLPA_ACT_EXP, 0, 0, false, {0.0f, -0.0f, -100.0f, nan}},
      // Negative inputs give NaN; 0 gives -inf, which the tests leave out.
      {"log", BLPA_ACT_LOG, 0, 0, false, {1.0f, 0.5f, -1.0f, nan}},
  };
}

/// An activation and its gradient (from the reference's output for
/// sigmoid, else from x), out of place and in place (y over x, dx over
/// dy), on values spread over every branch with the case's specials.
inline void testActivation(const ActivationCase &a, size_t numel,
                           bool misaligned) {
  std::string size =
      "/" + std::to_string(numel) + (misaligned ? "/misaligned" : "");
  Floats x = withValues(randomFloats(numel, -8, 8), a.specials),
         dy = randomFloats(numel);
  Floats saved = x;
  for (bool inPlace : {false, true}) {
    Case k(std::string("activation/") + a.name + size +
           (inPlace ? "/in_place" : ""));
    auto [xIn, y] = k.operandAndResult(x, inPlace, "y", {}, misaligned);
    Results r = k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
      rt.blpa_activation(ctx, p.f(xIn), p.f(y), int64_t(numel), a.kind, a.alpha,
                         a.beta);
    });
    if (blpa::activationGradReadsOutput(a.kind))
      saved = r.refFloats("y");
  }
  for (bool inPlace : {false, true}) {
    Case g(std::string("activation_grad/") + a.name + size +
           (inPlace ? "/in_place" : ""));
    auto [dyIn, dx] = g.operandAndResult(dy, inPlace, "dx", {}, misaligned);
    int savedIn = g.in(saved, misaligned);
    g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
      rt.blpa_activation_grad(ctx, p.f(dyIn), p.f(savedIn), p.f(dx),
                              int64_t(numel), a.kind, a.alpha, a.beta);
    });
  }
}

/// Clip with bounds read from buffers (a run-time input): one, the other or
/// both, the rest static.
inline void testActivationDynamic(const char *name, bool loAt, bool hiAt) {
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

inline void testActivations() {
  for (const ActivationCase &a : activationCases())
    for (size_t numel : {size_t(1), size_t(7), size_t(10007)})
      for (bool misaligned : {false, true})
        testActivation(a, numel, misaligned);
  testActivationDynamic("both", true, true);
  testActivationDynamic("min_only", true, false);
  testActivationDynamic("max_only", false, true);
}

/// The width of a piecewise activation's region codes (Runtime.h).
inline int regionBits(int64_t kind) {
  return kind == BLPA_ACT_HARD_SWISH ? 2 : 1;
}

/// blpa_activation_grad_region from the reference's `codes`: dx out of
/// place, over dy and (hard swish, which reads them) over the values, each
/// the out-of-place bits as Runtime.h lets dx alias either.
inline void testActivationGradRegion(const ActivationCase &a,
                                     const std::string &base,
                                     const Bytes &codes, const Floats &dy,
                                     const Floats &values, bool misaligned) {
  const bool readsValues = a.kind == BLPA_ACT_HARD_SWISH;
  enum Over { nothing, overDy, overValues };
  const char *suffixes[] = {"", "/in_place", "/in_place_values"};
  Bytes outOfPlace;
  for (Over over : {nothing, overDy, overValues}) {
    if (over == overValues && !readsValues)
      continue;
    Case g(base + "/grad" + suffixes[over]);
    int dyIn, dx, valuesIn;
    if (over == overValues) {
      dyIn = g.in(dy, misaligned);
      dx = valuesIn = g.inOut("dx", values, {}, misaligned);
    } else {
      std::tie(dyIn, dx) =
          g.operandAndResult(dy, over == overDy, "dx", {}, misaligned);
      valuesIn = g.in(values, misaligned);
    }
    int codesIn = g.in(codes);
    Results r = g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
      rt.blpa_activation_grad_region(ctx, p.f(dyIn), p.u8(codesIn),
                                     readsValues ? p.f(valuesIn) : nullptr,
                                     p.f(dx), int64_t(dy.size()), a.kind,
                                     a.alpha, a.beta, regionBits(a.kind));
    });
    if (!r.ok)
      return;
    if (over == nothing)
      outOfPlace = r.bytes("dx");
    else
      expectSameBits(g.name + "/as_out_of_place", r.bytes("dx"), outOfPlace,
                     "differs from the out-of-place dx");
  }
}

/// A piecewise activation's region codes (blpa_activation_region) on
/// values spread over every piece with the case's specials, then the
/// gradient from them with values moved by up to half a 4-bit bin of
/// [-8, 8], as decoded ones are.
inline void testActivationRegion(const ActivationCase &a, size_t numel,
                                 bool misaligned) {
  const int bits = regionBits(a.kind);
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
  testActivationGradRegion(a, base, r.refBytes("codes"), dy, v, misaligned);
}

/// Clip's bounds read from buffers, one, the other or both: the codes of
/// the same bounds given statically (`staticCodes`, this backend's).
inline void testActivationRegionDynamic(const char *name, bool loAt, bool hiAt,
                                        const Floats &x, float lo, float hi,
                                        const Bytes &staticCodes) {
  const float inf = INFINITY;
  Case k(std::string("activation_region_dynamic/clip_") + name);
  int xIn = k.in(x), loIn = k.in(Floats{lo}), hiIn = k.in(Floats{hi});
  int codes = k.codes("codes", x.size(), 1);
  Results r = k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_activation_region(ctx, p.f(xIn), p.u8(codes), int64_t(x.size()),
                              BLPA_ACT_CLIP, loAt ? -inf : lo, hiAt ? inf : hi,
                              loAt ? p.f(loIn) : nullptr,
                              hiAt ? p.f(hiIn) : nullptr, 1);
  });
  if (r.ok)
    expectSameBits(k.name + "/as_static", r.bytes("codes"), staticCodes,
                   "codes differ from those of the static bounds");
}

/// Every piecewise kind at the activations' sizes, and at 50001 elements
/// (several of the CPU runtime's parallel blocks, an odd tail).
inline void testActivationRegions() {
  for (const ActivationCase &a : activationCases()) {
    if (!blpa::activationRegionBits(a.kind))
      continue;
    for (size_t numel : {size_t(1), size_t(7), size_t(10007)})
      for (bool misaligned : {false, true})
        testActivationRegion(a, numel, misaligned);
    testActivationRegion(a, 50001, false);
  }
  const size_t numel = 10007;
  const float lo = -1.25f, hi = 3.5f;
  Floats x = withValues(randomFloats(numel, -8, 8), {lo, hi});
  Case k("activation_region_dynamic/clip_static");
  int xIn = k.in(x), codes = k.codes("codes", numel, 1);
  Results r = k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_activation_region(ctx, p.f(xIn), p.u8(codes), int64_t(numel),
                              BLPA_ACT_CLIP, lo, hi, nullptr, nullptr, 1);
  });
  if (!r.ok)
    return;
  testActivationRegionDynamic("both", true, true, x, lo, hi, r.bytes("codes"));
  testActivationRegionDynamic("min_only", true, false, x, lo, hi,
                              r.bytes("codes"));
  testActivationRegionDynamic("max_only", false, true, x, lo, hi,
                              r.bytes("codes"));
}

/// Rows of a strided copy: how many, their length, the strides and offsets
/// in elements.
struct CopyStridedShape {
  const char *name;
  int64_t rows, rowElems, srcStride, dstStride, srcOffset, dstOffset;
};

/// Concatenation and slice columns, contiguous rows, single elements, long
/// rows, many rows, nothing to copy; and a concatenation or slice along
/// axis 0 of a tensor over 2 GiB: one row whose stride is the whole
/// tensor, past the largest pitch a 2-D copy takes (2^31 - 1 bytes).
inline const std::vector<CopyStridedShape> copyStridedShapes = {
    {"concat_columns", 6, 35, 35, 91, 0, 14},
    {"slice_columns", 4, 7, 21, 7, 5, 0},
    {"contiguous_rows", 9, 13, 13, 13, 0, 0},
    {"single_elements", 37, 1, 3, 5, 2, 4},
    {"long_single_row", 1, 100003, 100003, 100003, 0, 0},
    {"long_rows_offsets", 3, 40000, 50001, 40003, 3, 1},
    {"many_rows", 1001, 17, 33, 19, 16, 2},
    {"no_rows", 0, 5, 5, 5, 0, 0},
    {"empty_rows", 5, 0, 3, 3, 1, 1},
    {"one_row_huge_src_stride", 1, 1000, (int64_t(1) << 29) + 7, 1000, 3, 0},
    {"one_row_huge_dst_stride", 1, 777, 777, int64_t(1) << 30, 0, 5},
};

/// The elements a strided copy reaches: offset + (rows - 1) * stride +
/// rowElems (1 when it reaches none).
inline size_t stridedExtent(int64_t rows, int64_t rowElems, int64_t stride,
                            int64_t offset) {
  if (rows <= 0 || rowElems <= 0)
    return 1;
  return size_t(offset + (rows - 1) * stride + rowElems);
}

/// blpa_copy_strided into a dst of random contents (what it does not
/// write must stay), buffers as long as the copy reaches (so that guards
/// catch a longer one).
inline void testCopyStrided(const char *name, int64_t rows, int64_t rowElems,
                            int64_t srcStride, int64_t dstStride,
                            int64_t srcOffset, int64_t dstOffset) {
  Case k(std::string("copy_strided/") + name);
  int src =
      k.in(randomFloats(stridedExtent(rows, rowElems, srcStride, srcOffset)));
  int dst = k.inOut(
      "dst", randomFloats(stridedExtent(rows, rowElems, dstStride, dstOffset)),
      exactTol);
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_copy_strided(ctx, p.f(src), p.f(dst), rows, rowElems, srcStride,
                         dstStride, srcOffset, dstOffset);
  });
}

inline void testCopiesStrided() {
  for (const CopyStridedShape &c : copyStridedShapes)
    testCopyStrided(c.name, c.rows, c.rowElems, c.srcStride, c.dstStride,
                    c.srcOffset, c.dstOffset);
}

inline Int64s paddedDims(const Int64s &inDims, const Int64s &begin,
                         const Int64s &end) {
  Int64s outDims = inDims;
  for (size_t d = 0; d < inDims.size(); ++d)
    outDims[d] += begin[d] + end[d];
  return outDims;
}

/// A constant padding: the input's dimensions, the pads before and after
/// each (negative: a crop) and the value.
struct PadShape {
  const char *name;
  Int64s in, begin, end;
  double value;
};

/// Every rank, crops, crops and pads of one axis, windows that miss the
/// input in the last or a leading dimension, large and long-row ones.
inline const std::vector<PadShape> padShapes = {
    {"rank1", {7}, {3}, {2}, 0.5},
    {"rank1_crop", {11}, {-4}, {-2}, 0.5},
    {"rank1_crop_and_pad", {6}, {-3}, {5}, -2.0},
    {"rank2", {5, 9}, {1, -2}, {-1, 3}, -1.25},
    {"rank3_channels", {3, 4, 5}, {0, 2, 0}, {0, 1, 0}, 0.0},
    {"rank3_channels_value", {3, 4, 5}, {0, 2, 0}, {0, 1, 0}, 0.5},
    {"rank4_spatial", {2, 3, 5, 7}, {0, 0, 1, 2}, {0, 0, 2, 0}, 0.5},
    {"rank4_crop", {2, 3, 9, 8}, {0, 0, -1, -2}, {0, 0, -3, 0}, 0.5},
    {"rank4_last_outside", {2, 3, 4, 8}, {0, 1, 0, -9}, {0, 0, 0, 2}, 7.0},
    {"rank3_leading_outside", {2, 3, 4}, {5, 0, 0}, {-4, 0, 0}, 3.0},
    {"rank5", {2, 3, 4, 5, 6}, {1, 0, -1, 2, -2}, {0, 1, -1, -1, 3}, 3.0},
    {"rank5_pad", {2, 1, 3, 2, 5}, {1, 2, 0, 1, 3}, {2, 0, 1, 1, 1}, -0.5},
    {"large", {4, 16, 33, 35}, {0, 0, 1, 1}, {0, 0, 1, 1}, 0.0},
    {"large_long_rows", {3, 40001}, {1, 2}, {0, 3}, 1.0},
};

/// Constant padding (and cropping), the value an argument or read from a
/// buffer (a run-time input).
inline void testPad(const char *name, Int64s inDims, Int64s begin, Int64s end,
                    double value) {
  Int64s outDims = paddedDims(inDims, begin, end);
  for (bool runtimeValue : {false, true}) {
    Case k(std::string("pad/") + name + (runtimeValue ? "/runtime_value" : ""));
    int x = k.in(randomFloats(product(inDims)));
    int valueAt = k.in(Floats{float(value)});
    int y = k.out("y", size_t(product(outDims)));
    k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
      rt.blpa_pad(ctx, p.f(x), p.f(y), int64_t(inDims.size()), inDims.data(),
                  outDims.data(), begin.data(), BLPA_PAD_CONSTANT,
                  runtimeValue ? 0.0 : value,
                  runtimeValue ? p.f(valueAt) : nullptr);
    });
  }
}

/// A reflect or edge padding: the mode, the input's dimensions and the
/// (non-negative) pads before and after each.
struct PadModeShape {
  const char *name;
  int64_t mode;
  Int64s in, begin, end;
};

/// Both modes on every rank, one side only, all axes, a large one; edge
/// pads past the size (every copy of the edge adds up in the gradient) and
/// of size-one axes; reflect pads up to the size minus one.
inline std::vector<PadModeShape> padModeShapes() {
  std::vector<PadModeShape> shapes;
  for (int64_t mode : {BLPA_PAD_REFLECT, BLPA_PAD_EDGE}) {
    shapes.push_back({"rank1", mode, {7}, {3}, {2}});
    shapes.push_back({"rank1_one_side", mode, {5}, {0}, {4}});
    shapes.push_back({"rank2_asymmetric", mode, {5, 9}, {1, 4}, {3, 2}});
    shapes.push_back(
        {"rank4_spatial", mode, {2, 3, 5, 7}, {0, 0, 1, 2}, {0, 0, 2, 0}});
    shapes.push_back(
        {"rank4_all_axes", mode, {2, 3, 4, 5}, {1, 2, 3, 4}, {1, 0, 2, 1}});
    shapes.push_back(
        {"large", mode, {4, 16, 33, 35}, {0, 0, 3, 1}, {0, 0, 1, 3}});
  }
  shapes.push_back({"pads_past_size", BLPA_PAD_EDGE, {2, 3}, {4, 1}, {3, 7}});
  shapes.push_back(
      {"size_one", BLPA_PAD_EDGE, {3, 1, 2}, {0, 2, 1}, {0, 3, 0}});
  shapes.push_back({"largest_pads", BLPA_PAD_REFLECT, {4, 6}, {3, 5}, {3, 5}});
  return shapes;
}

/// Reflect and edge padding and their gradient (one thread gathers each
/// element of dx in the CPU's order: bit for bit).
inline void testPadMode(const char *name, int64_t mode, Int64s inDims,
                        Int64s begin, Int64s end) {
  Int64s outDims = paddedDims(inDims, begin, end);
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

inline void testPads() {
  for (const PadShape &c : padShapes)
    testPad(c.name, c.in, c.begin, c.end, c.value);
  for (const PadModeShape &c : padModeShapes())
    testPadMode(c.name, c.mode, c.in, c.begin, c.end);
}

/// A transposition: the input's dimensions and the permutation.
struct TransposeShape {
  const char *name;
  Int64s in, perm;
};

/// For both CUDA kernels, the element-wise one (rows that stay, short
/// dimensions) and the tiled one (partial tiles, several tiles, outer
/// dimensions): the identity, matrices, a channel shuffle (whole rows of
/// H*W move), layouts, PixelShuffle's [N, C, r, r, H, W] -> [N, C, H, r, W,
/// r], reversals, size-one dimensions, rank 9, nothing.
inline const std::vector<TransposeShape> transposeShapes = {
    {"rank1", {7}, {0}},
    {"identity", {3, 4, 5}, {0, 1, 2}},
    {"matrix", {37, 53}, {1, 0}},
    {"matrix_exact_tiles", {64, 96}, {1, 0}},
    {"matrix_large", {300, 517}, {1, 0}},
    {"matrix_thin", {2, 300}, {1, 0}},
    {"matrix_thin_long", {2, 40000}, {1, 0}},
    {"channel_shuffle", {4, 3, 8, 7, 9}, {0, 2, 1, 3, 4}},
    {"nchw_to_nhwc", {2, 20, 7, 9}, {0, 2, 3, 1}},
    {"nchw_to_nhwc_c5", {2, 5, 7, 9}, {0, 2, 3, 1}},
    {"nchw_to_nhwc_large", {8, 64, 28, 28}, {0, 2, 3, 1}},
    {"nhwc_to_nchw", {2, 7, 9, 5}, {0, 3, 1, 2}},
    {"pixel_shuffle", {2, 3, 2, 2, 5, 6}, {0, 1, 4, 2, 5, 3}},
    {"reverse", {3, 17, 5, 40}, {3, 2, 1, 0}},
    {"reverse_small", {3, 4, 5, 6}, {3, 2, 1, 0}},
    {"reverse_tiled", {40, 3, 5, 33}, {3, 2, 1, 0}},
    {"size_one_dims", {1, 5, 1, 7}, {2, 3, 0, 1}},
    {"all_ones", {1, 1, 1}, {2, 0, 1}},
    {"long_rows", {3, 2, 20001}, {1, 0, 2}},
    {"small_tiles", {500, 3, 2}, {0, 2, 1}},
    {"large", {64, 96, 130}, {2, 0, 1}},
    {"rank9", {2, 1, 2, 3, 2, 1, 2, 2, 3}, {8, 7, 6, 5, 4, 3, 2, 1, 0}},
    {"empty", {3, 0, 4}, {2, 0, 1}},
};

inline void testTranspose(const char *name, Int64s inDims, Int64s perm) {
  Case k(std::string("transpose/") + name);
  int x = k.in(randomFloats(product(inDims)));
  int y = k.out("y", size_t(product(inDims)), exactTol);
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_transpose(ctx, p.f(x), p.f(y), int64_t(inDims.size()),
                      inDims.data(), perm.data());
  });
}

inline void testTransposes() {
  for (const TransposeShape &t : transposeShapes)
    testTranspose(t.name, t.in, t.perm);
}

/// Trilu shapes and diagonals: square and wide matrices, a causal mask's
/// k = 1, negative and out-of-range diagonals, one matrix and a batch.
struct TriluCase {
  const char *name;
  int64_t batch, rows, cols, k;
};
inline const TriluCase triluCases[] = {
    {"causal_16x16_k1", 1, 16, 16, 1}, {"batch_3x5x7_k0", 3, 5, 7, 0},
    {"wide_2x4x9_k-2", 2, 4, 9, -2},   {"k_past_the_end", 1, 5, 5, 9},
    {"rows_1000x3_k1", 1, 1000, 3, 1},
};

/// blpa_trilu (a copy: exact), both triangles, out of place and in place.
inline void testTrilus() {
  for (const TriluCase &t : triluCases)
    for (int64_t upper : {1, 0})
      for (bool inPlace : {false, true}) {
        Case k(std::string("trilu/") + t.name + (upper ? "/upper" : "/lower") +
               (inPlace ? "/in_place" : ""));
        auto [xIn, y] =
            k.operandAndResult(randomFloats(size_t(t.batch * t.rows * t.cols)),
                               inPlace, "y", exactTol);
        k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
          rt.blpa_trilu(ctx, p.f(xIn), p.f(y), t.batch, t.rows, t.cols, t.k,
                        upper);
        });
      }
}

/// 1 where y kept the element (inputs are away from 0), else 0.
inline Bytes keptOf(const Floats &y) {
  Bytes kept(y.size());
  for (size_t i = 0; i < y.size(); ++i)
    kept[i] = y[i] != 0;
  return kept;
}

/// blpa_dropout and blpa_dropout_grad, out of place and in place: bit for
/// bit the reference's (one hash of seed, step, stream and element), and
/// the gradient's mask the forward's.
inline void testDropout(double ratio, size_t numel, uint64_t seed,
                        uint64_t step, int64_t stream, bool misaligned) {
  setDropoutStep(seed, step);
  std::string base = format("/ratio%g/%zu/step%llu/stream%lld%s", ratio, numel,
                            (unsigned long long)step, (long long)stream,
                            misaligned ? "/misaligned" : "");
  Floats x = awayFromZero(randomFloats(numel)),
         dy = awayFromZero(randomFloats(numel));
  for (bool inPlace : {false, true}) {
    std::string suffix = base + (inPlace ? "/in_place" : "");
    Case k("dropout" + suffix);
    auto [xIn, y] = k.operandAndResult(x, inPlace, "y", exactTol, misaligned);
    Results forward =
        k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
          rt.blpa_dropout(ctx, p.f(xIn), p.f(y), int64_t(numel), ratio, stream);
        });
    Case g("dropout_grad" + suffix);
    auto [dyIn, dx] =
        g.operandAndResult(dy, inPlace, "dx", exactTol, misaligned);
    Results backward =
        g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
          rt.blpa_dropout_grad(ctx, p.f(dyIn), p.f(dx), int64_t(numel), ratio,
                               stream);
        });
    if (!forward.ok || !backward.ok)
      continue;
    expectSameBits(k.name + "/bits", forward.bytes("y"), forward.refBytes("y"),
                   "differs from the reference's bits");
    expectSameBits(g.name + "/bits", backward.bytes("dx"),
                   backward.refBytes("dx"),
                   "differs from the reference's bits");
    expectSameBits(g.name + "/mask", keptOf(backward.floats("dx")),
                   keptOf(forward.floats("y")),
                   "blpa_dropout_grad drops other elements than blpa_dropout");
  }
}

/// The same dropout over consecutive steps: each step's mask the
/// reference's at that step, and a new one every step.
inline void testDropoutSteps() {
  const size_t numel = 4099;
  Floats x = awayFromZero(randomFloats(numel));
  Bytes previous;
  for (uint64_t step = 0; step < 4; ++step) {
    setDropoutStep(0x9e3779b97f4a7c15ull, (uint64_t(1) << 33) + step);
    Case k(format("dropout/steps/step%llu", (unsigned long long)step));
    int xIn = k.in(x), y = k.out("y", numel, exactTol);
    Results r = k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
      rt.blpa_dropout(ctx, p.f(xIn), p.f(y), int64_t(numel), 0.5, 7);
    });
    if (!r.ok)
      continue;
    Bytes kept = keptOf(r.floats("y"));
    if (!previous.empty())
      report(k.name + "/new_mask", kept != previous,
             "the mask did not change with the step");
    previous = kept;
  }
}

inline void testDropouts() {
  for (size_t numel : {size_t(0), size_t(1), size_t(7), size_t(50001)})
    for (bool misaligned : {false, true})
      testDropout(0.3, numel, 20240611, 0, 0, misaligned);
  testDropout(0.3, 100003, 20240611, 0, 0, false);
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

/// Every `ignoreEvery`-th row (0: none) is labelled `ignoreIndex`.
inline void testSoftmaxCrossEntropy(int64_t n, int64_t classes, float spread,
                                    int64_t ignoreIndex = -100,
                                    int64_t ignoreEvery = 0) {
  std::string base = format("softmax_cross_entropy/%lldx%lld/ignore_%lld_%lld",
                            (long long)n, (long long)classes,
                            (long long)ignoreIndex, (long long)ignoreEvery);
  // A wide spread of logits overflows a naive exp.
  Floats logits = randomFloats(n * classes, -spread, spread);
  Int64s labels = randomLabels(n, classes);
  for (int64_t i = 0; ignoreEvery && i < n; i += ignoreEvery)
    labels[i] = ignoreIndex;
  Case k(base + "/loss");
  int logitsIn = k.in(logits), labelsIn = k.in(labels),
      loss = k.out("loss", 1, sumTol);
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_softmax_cross_entropy(ctx, p.f(logitsIn), p.i64(labelsIn),
                                  p.f(loss), n, classes, ignoreIndex);
  });
  Case g(base + "/grad");
  int gLogits = g.in(logits), gLabels = g.in(labels),
      dloss = g.in(Floats{0.7f}),
      dlogits = g.out("dlogits", n * classes, sumTol);
  g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_softmax_cross_entropy_grad(ctx, p.f(gLogits), p.i64(gLabels),
                                       p.f(dloss), p.f(dlogits), n, classes,
                                       ignoreIndex);
  });
}

/// Embedding lookups (exact copies) and their scatter-add gradient (the
/// CPU's order on every runtime: bit for bit in the emulation), with ids
/// repeated and negative.
inline void testEmbeddings() {
  struct Shape {
    int64_t n, vocab, dim;
  };
  for (Shape s : {Shape{37, 11, 19}, Shape{2048, 256, 128}, Shape{5, 3, 1},
                  Shape{0, 4, 3}}) {
    std::string base = format("embedding/%lldx%lldx%lld", (long long)s.n,
                              (long long)s.vocab, (long long)s.dim);
    Floats table = randomFloats(s.vocab * s.dim), dy = randomFloats(s.n * s.dim);
    Int64s ids = randomLabels(s.n, 2 * s.vocab);
    for (int64_t &id : ids)
      id -= s.vocab;
    Case k(base + "/lookup");
    int tableIn = k.in(table), idsIn = k.in(ids),
        y = k.out("y", s.n * s.dim, exactTol);
    k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
      rt.blpa_embedding(ctx, p.f(tableIn), p.i64(idsIn), p.f(y), s.n, s.vocab,
                        s.dim);
    });
    Case g(base + "/grad");
    int dyIn = g.in(dy), gIds = g.in(ids),
        dtable = g.out("dtable", s.vocab * s.dim, exactTol);
    g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
      rt.blpa_embedding_grad(ctx, p.f(dyIn), p.i64(gIds), p.f(dtable), s.n,
                             s.vocab, s.dim);
    });
  }
}

/// Softmax and log-softmax along the middle axis of [outer, length, inner]
/// and their gradients (from the reference forward's output), out of place
/// and in place: contiguous rows (one warp per row on CUDA, summed in
/// another order than the CPU's) and strided rows within sumTol.
inline void testSoftmax(const char *name, int64_t outer, int64_t length,
                        int64_t inner, float spread) {
  size_t numel = size_t(outer * length * inner);
  // A wide spread overflows a naive exp.
  Floats x = randomFloats(numel, -spread, spread), dy = randomFloats(numel);
  for (bool log : {false, true}) {
    auto forward = log ? &Api::blpa_log_softmax : &Api::blpa_softmax;
    auto backward = log ? &Api::blpa_log_softmax_grad : &Api::blpa_softmax_grad;
    std::string base = std::string(log ? "log_softmax/" : "softmax/") + name;
    Floats y(numel);
    (backend->refApi().*forward)(backend->refContext(), x.data(), y.data(),
                                 outer, length, inner);
    for (bool inPlace : {false, true}) {
      std::string suffix = inPlace ? "/in_place" : "";
      Case f(base + "/forward" + suffix);
      auto [fx, fy] = f.operandAndResult(x, inPlace, "y", sumTol);
      f.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
        (rt.*forward)(ctx, p.f(fx), p.f(fy), outer, length, inner);
      });
      Case g(base + "/grad" + suffix);
      int gy = g.in(y);
      auto [gdy, gdx] = g.operandAndResult(dy, inPlace, "dx", sumTol);
      g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
        (rt.*backward)(ctx, p.f(gdy), p.f(gy), p.f(gdx), outer, length, inner);
      });
    }
  }
}

inline void testLoss() {
  testSoftmax("last_axis_9x11", 9, 11, 1, 50.0f);
  testSoftmax("last_axis_300x3", 300, 3, 1, 5.0f);
  testSoftmax("long_rows_3x1000", 3, 1000, 1, 20.0f);
  testSoftmax("classifier_256x1000", 256, 1000, 1, 10.0f);
  testSoftmax("channels_3x5x42", 3, 5, 7 * 6, 5.0f);
  testSoftmax("channels_8x64x784", 8, 64, 28 * 28, 5.0f);
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
  testSoftmaxCrossEntropy(96, 13, 5.0f, -100, 3);
  testSoftmaxCrossEntropy(40, 7, 5.0f, 0, 2);
  testSoftmaxCrossEntropy(5, 7, 5.0f, -1, 1);
  testEmbeddings();
}

//===----------------------------------------------------------------------===//
// Pooling
//===----------------------------------------------------------------------===//

using PoolCase = PoolGeometry;

/// Max pooling only: a window entirely in the padding, no planes at all,
/// and dilated windows.
inline std::vector<PoolCase> maxOnlyPoolCases() {
  std::vector<PoolCase> cases = {
      allPaddingPool,
      {"empty_batch", 0, 3, {{5, 5}, {2, 2}, {2, 2}, {0, 0, 0, 0}}}};
  for (const PoolCase &pc : dilatedPoolGeometries())
    cases.push_back(pc);
  return cases;
}

/// The smallest code width of Runtime.h that numbers every window position.
inline int argmaxBits(int64_t positions) {
  for (int bits : {1, 2, 4, 8})
    if (positions <= (1 << bits))
      return bits;
  return 0;
}

/// The pooling arguments after the data pointers.
#define POOL_ARGS(pc) pc.n, pc.c, WINDOW_ARGS(pc.win)

/// blpa_max_pool_argmax at `bits` against the reference, its y against the
/// tested blpa_max_pool's, and blpa_max_pool_grad_argmax against the
/// tested blpa_max_pool_grad (Runtime.h: bitwise the same).
inline void testMaxPoolArgmax(const std::string &base, const PoolCase &pc,
                              int bits, const Floats &x, const Floats &dy,
                              const Results &fwd, const Results &grad) {
  std::string name = base + "/argmax_" + std::to_string(bits) + "bit";
  Case k(name);
  int xIn = k.in(x), y = k.out("y", pc.ySize(), exactTol),
      codes = k.codes("codes", pc.ySize(), bits);
  Results r = k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_max_pool_argmax(ctx, p.f(xIn), p.f(y), p.u8(codes), POOL_ARGS(pc),
                            bits);
  });
  if (r.ok && fwd.ok)
    expectSameBits(name + "/matches_max_pool", r.bytes("y"), fwd.bytes("y"),
                   "y differs from blpa_max_pool's");

  Case g(base + "/grad_argmax_" + std::to_string(bits) + "bit");
  int dyIn = g.in(dy), codesIn = g.in(r.refBytes("codes")),
      dx = g.out("dx", pc.xSize());
  Results gr = g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_max_pool_grad_argmax(ctx, p.f(dyIn), p.u8(codesIn), p.f(dx),
                                 POOL_ARGS(pc), bits);
  });
  if (gr.ok && grad.ok)
    expectSameBits(g.name + "/matches_max_pool_grad", gr.bytes("dx"),
                   grad.bytes("dx"), "dx differs from blpa_max_pool_grad's");
}

/// Inputs of max pooling.
enum class PoolData { distinct, ties, specials };

/// Ties: small integers, many equal values per window, where the first
/// maximum in row-major window order must win. Specials: NaN (which wins
/// only first in its window), infinities, signed zeros.
inline void testMaxPool(const PoolCase &pc, PoolData data) {
  const char *const dataNames[] = {"distinct", "ties", "specials"};
  std::string base =
      std::string("max_pool/") + pc.name + "/" + dataNames[int(data)];
  Floats x = data == PoolData::ties ? randomInts(pc.xSize(), -3, -1)
                                    : randomFloats(pc.xSize()),
         dy = randomFloats(pc.ySize());
  if (data == PoolData::specials)
    x = withSpecials(x);
  Case k(base + "/forward");
  int xIn = k.in(x), y = k.out("y", pc.ySize(), exactTol);
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

inline void testAvgPool(const PoolCase &pc, int64_t countIncludePad) {
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

#undef POOL_ARGS

inline void testGlobalAvgPool(int64_t n, int64_t c, int64_t spatial) {
  std::string base = format("global_avg_pool/%lldx%lldx%lld", (long long)n,
                            (long long)c, (long long)spatial);
  Case k(base + "/forward");
  int x = k.in(randomFloats(n * c * spatial)), y = k.out("y", n * c, sumTol);
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_global_avg_pool(ctx, p.f(x), p.f(y), n, c, spatial);
  });
  Case g(base + "/grad");
  int dy = g.in(randomFloats(n * c)), dx = g.out("dx", n * c * spatial);
  g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_global_avg_pool_grad(ctx, p.f(dy), p.f(dx), n, c, spatial);
  });
}

inline void testPooling() {
  for (const PoolCase &pc : poolGeometries()) {
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
inline const BnShape bnShapes[] = {
    {"4d", 3, 5, 7 * 5},
    {"4d_5x7", 5, 7, 13 * 11},
    {"2d", 37, 6, 1},
    {"2d_33", 33, 6, 1},
    {"wide", 2, 300, 3},
    {"wide_130", 3, 130, 7},
    {"parts_mid_slice", 61, 3, 35},
    {"parts_mid_long_slice", 5, 3, 999},
    {"large", 16, 19, 29 * 31},
    {"large_32", 32, 19, 29 * 31},
};

/// A batch norm's input and parameters.
struct BnData {
  int64_t n, c, spatial;
  Floats x, scale, bias;

  size_t numel() const { return n * c * spatial; }
  int64_t channelOf(size_t i) const { return int64_t(i) / spatial % c; }
};

inline BnData bnData(const BnShape &s) {
  BnData d = {s.n, s.c, s.spatial, {}, {}, {}};
  // An offset mean makes a naive E[x^2] - E[x]^2 lose digits.
  d.x = randomFloats(d.numel(), 2.0f, 4.0f);
  d.scale = randomFloats(s.c, -2.0f, 2.0f);
  d.bias = randomFloats(s.c);
  return d;
}

/// Gammas of every sign with betas of both signs, including gamma == 0 and
/// |beta/gamma| large enough to clip every value and clamp the shift.
inline const float bnGammas[16] = {1.3f,  -0.7f, 0.0f,  0.05f, -0.03f, 2.5f,
                                   -1.9f, 0.8f,  0.0f,  -1.1f, 0.6f,   1.0f,
                                   -0.4f, 3.0f,  -2.2f, 0.02f};
inline const float bnBetas[16] = {-0.5f, 2.2f,  1.5f,  0.4f, -3.0f, 0.0f,
                                  -0.3f, 1.0f,  -2.0f, 0.7f, -1.2f, 0.1f,
                                  2.5f,  -0.8f, 0.3f,  -1.0f};

/// For the coded kernels: channel 5 (beta 0) is constant, so y is exactly
/// 0 there: on the ReLU edge, which must encode as negative.
inline BnData bnCodeData(const BnShape &s) {
  BnData d = {s.n, s.c, s.spatial, {}, {}, {}};
  d.x = randomNormals(d.numel(), 1.5f, 2.0f);
  for (size_t i = 0; i < d.numel(); ++i)
    if (d.channelOf(i) == 5)
      d.x[i] = 0.25f;
  for (int64_t ch = 0; ch < d.c; ++ch) {
    d.scale.push_back(bnGammas[ch % 16]);
    d.bias.push_back(bnBetas[ch % 16]);
  }
  return d;
}

/// y of a training forward (within floatTol of the reference's, and
/// checked by checkNormalization), mean and inv_std.
inline void addTrainOutputs(Case &k, const BnData &d, int &y, int &mean,
                            int &invStd) {
  y = k.out("y", d.numel(), Tol{-1, floatTol});
  mean = k.out("mean", d.c, sumTol);
  invStd = k.out("inv_std", d.c, sumTol);
}

/// A training forward's y against the reference's blpa_batch_norm_apply
/// of the tested statistics: what the forward must write whatever its
/// statistics' rounding (bit for bit where the arithmetic is the same).
inline void checkNormalization(const std::string &name, const BnData &d,
                               const Results &r, bool withRelu) {
  if (!r.ok)
    return;
  Floats y(d.numel()), mean = r.floats("mean"), invStd = r.floats("inv_std");
  backend->refApi().blpa_batch_norm_apply(
      backend->refContext(), d.x.data(), d.scale.data(), d.bias.data(),
      mean.data(), invStd.data(), y.data(), d.n, d.c, d.spatial, withRelu);
  Case::compareFloats(name + "/y", r.floats("y"), y, Tol{});
}

/// blpa_batch_norm_train or blpa_batch_norm_relu_train.
inline Results bnTrain(const std::string &name, const BnData &d,
                       bool withRelu) {
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
  checkNormalization(name, d, r, withRelu);
  return r;
}

/// y, mean and inv_std's bytes, for bitwise comparisons.
inline Bytes bnOutputs(const Results &r, const Floats &y) {
  return concat({bytesOf(y), r.bytes("mean"), r.bytes("inv_std")});
}

/// blpa_batch_norm_apply on the tested forward's statistics must give that
/// forward's output bit for bit.
inline void testBnApply(const std::string &base, const BnData &d,
                        const Results &train, const Results &reluTrain) {
  for (int64_t withRelu : {0, 1}) {
    const Results &forward = withRelu ? reluTrain : train;
    if (!forward.ok)
      continue;
    Case k(base + (withRelu ? "/apply_relu" : "/apply"));
    int x = k.in(d.x), scale = k.in(d.scale), bias = k.in(d.bias),
        mean = k.in(forward.floats("mean")),
        invStd = k.in(forward.floats("inv_std")), y = k.out("y", d.numel());
    Results r = k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
      rt.blpa_batch_norm_apply(ctx, p.f(x), p.f(scale), p.f(bias), p.f(mean),
                               p.f(invStd), p.f(y), d.n, d.c, d.spatial,
                               withRelu);
    });
    if (r.ok)
      expectSameBits(k.name + "/matches_forward", r.bytes("y"),
                     forward.bytes("y"),
                     "the recompute differs from the forward");
  }
}

inline void testBnInfer(const std::string &base, const BnData &d) {
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
inline void addGradOutputs(Case &k, const BnData &d, int &dscale, int &dbias) {
  dscale = k.out("dscale", d.c, sumTol);
  dbias = k.out("dbias", d.c, sumTol);
}

/// blpa_batch_norm_grad or blpa_batch_norm_relu_grad (dx over dy when
/// `inPlace`), from the reference's statistics.
inline void testBnGrad(const std::string &base, const BnData &d,
                       const Results &train, const Floats &dy, bool withRelu,
                       bool inPlace) {
  Case k(base + (withRelu ? "/relu_grad" : "/grad") +
         (inPlace ? "_in_place" : ""));
  int dyIn, dx, dscale, dbias;
  std::tie(dyIn, dx) = k.operandAndResult(dy, inPlace, "dx", sumTol);
  int x = k.in(d.x), scale = k.in(d.scale), bias = k.in(d.bias),
      mean = k.in(train.refFloats("mean")),
      invStd = k.in(train.refFloats("inv_std"));
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

inline void testBatchNorm(const BnShape &s) {
  std::string base = std::string("batch_norm/") + s.name;
  BnData d = bnData(s);
  Results train = bnTrain(base + "/train", d, false);
  Results reluTrain = bnTrain(base + "/relu_train", d, true);
  if (train.ok && reluTrain.ok)
    expectSameBits(base + "/relu_train/matches_train",
                   bnOutputs(reluTrain, reluTrain.floats("y")),
                   bnOutputs(train, relu(train.floats("y"))),
                   "differs from blpa_batch_norm_train and a ReLU");
  testBnApply(base, d, train, reluTrain);
  testBnInfer(base, d);
  Floats dy = randomFloats(d.numel());
  for (bool withRelu : {false, true})
    for (bool inPlace : {false, true})
      testBnGrad(base, d, train, dy, withRelu, inPlace);
}

inline void testBatchNorms() {
  for (const BnShape &s : bnShapes)
    testBatchNorm(s);
}

//===----------------------------------------------------------------------===//
// Layer norm
//===----------------------------------------------------------------------===//

/// Layer-norm shapes: one element, rows shorter and longer than a warp
/// (with a tail), a transformer's width, many rows of few columns.
struct LnShape {
  const char *name;
  int64_t rows, cols;
};
inline const LnShape lnShapes[] = {
    {"1x1", 1, 1},       {"3x7", 3, 7},       {"5x64", 5, 64},
    {"37x130", 37, 130}, {"64x768", 64, 768}, {"1000x3", 1000, 3},
};
constexpr double lnEps = 1e-5;

/// blpa_layer_norm with and without a bias, out of place and in place (y
/// over x), on inputs far from 0 (a two-pass variance keeps them); the
/// statistics and y are row sums in another order on CUDA (sumTol). Then
/// the gradient from the reference forward's statistics, with and without
/// dbias, out of place and in place (dx over dy): the column sums are the
/// CPU's order everywhere; dx is a row sum in another order.
inline void testLayerNorm(const LnShape &s) {
  size_t numel = size_t(s.rows * s.cols);
  Floats x = randomFloats(numel, 90, 110), dy = randomFloats(numel);
  Floats scale = randomFloats(size_t(s.cols)),
         bias = randomFloats(size_t(s.cols));
  std::string base = std::string("layer_norm/") + s.name;
  Floats y(numel), mean(size_t(s.rows)), invStd(size_t(s.rows));
  backend->refApi().blpa_layer_norm(
      backend->refContext(), x.data(), scale.data(), bias.data(), y.data(),
      mean.data(), invStd.data(), s.rows, s.cols, lnEps);
  for (bool withBias : {true, false})
    for (bool inPlace : {false, true}) {
      std::string suffix = std::string(withBias ? "" : "/no_bias") +
                           (inPlace ? "/in_place" : "");
      Case f(base + "/forward" + suffix);
      auto [fx, fy] = f.operandAndResult(x, inPlace, "y", sumTol);
      int fScale = f.in(scale), fBias = f.in(bias),
          fMean = f.out("mean", size_t(s.rows), sumTol),
          fInvStd = f.out("inv_std", size_t(s.rows), sumTol);
      f.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
        rt.blpa_layer_norm(ctx, p.f(fx), p.f(fScale),
                           withBias ? p.f(fBias) : nullptr, p.f(fy), p.f(fMean),
                           p.f(fInvStd), s.rows, s.cols, lnEps);
      });
      Case g(base + "/grad" + suffix);
      int gx = g.in(x), gScale = g.in(scale), gMean = g.in(mean),
          gInvStd = g.in(invStd);
      auto [gdy, gdx] = g.operandAndResult(dy, inPlace, "dx", sumTol);
      int dscale = g.out("dscale", size_t(s.cols), exactTol),
          dbias = g.out("dbias", size_t(s.cols), exactTol);
      g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
        rt.blpa_layer_norm_grad(ctx, p.f(gdy), p.f(gx), p.f(gScale), p.f(gMean),
                                p.f(gInvStd), p.f(gdx), p.f(dscale),
                                withBias ? p.f(dbias) : nullptr, s.rows,
                                s.cols);
      });
    }
}

inline void testLayerNorms() {
  for (const LnShape &s : lnShapes)
    testLayerNorm(s);
}

//===----------------------------------------------------------------------===//
// Activation codes
//===----------------------------------------------------------------------===//

/// blpa_batch_norm_train_encode or its ReLU form. Where the arithmetic is
/// the reference's, codes must be exact in every channel whose statistics
/// came out bit for bit the reference's; in the others y, and so a code on
/// a bin edge, may round differently (on a GPU: a fraction of codes).
inline Results bnEncode(const std::string &name, const BnData &d, int bits,
                        bool withRelu) {
  Case k(name);
  int x = k.in(d.x), scale = k.in(d.scale), bias = k.in(d.bias), y, mean,
      invStd;
  addTrainOutputs(k, d, y, mean, invStd);
  int mId = mean, sId = invStd;
  int codes =
      k.codes("codes", d.numel(), bits, codeSlack,
              [&d, mId, sId](const Results &r, size_t i) {
                int64_t ch = d.channelOf(i);
                Floats m = floatsOf(r.got[mId]), rm = floatsOf(r.ref[mId]),
                       s = floatsOf(r.got[sId]), rs = floatsOf(r.ref[sId]);
                return !sameFloat(m[ch], rm[ch]) || !sameFloat(s[ch], rs[ch]);
              });
  Results r = k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    auto kernel = withRelu ? rt.blpa_batch_norm_relu_train_encode
                           : rt.blpa_batch_norm_train_encode;
    kernel(ctx, p.f(x), p.f(scale), p.f(bias), p.f(y), p.f(mean), p.f(invStd),
           p.u8(codes), d.n, d.c, d.spatial, bnEps, bits);
  });
  checkNormalization(name, d, r, withRelu);
  return r;
}

inline void testBnDecode(const std::string &base, const BnData &d,
                         const Bytes &codes, int bits) {
  for (int64_t withRelu : {0, 1}) {
    Case k(base + (withRelu ? "/decode_relu" : "/decode"));
    int codesIn = k.in(codes), scale = k.in(d.scale), bias = k.in(d.bias),
        y = k.out("y", d.numel(), Tol{0, floatTol, withRelu != 0});
    k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
      rt.blpa_bn_decode(ctx, p.u8(codesIn), p.f(scale), p.f(bias), p.f(y), d.n,
                        d.c, d.spatial, bits, withRelu);
    });
  }
}

/// blpa_batch_norm_grad_decode or its ReLU form (dx over dy when
/// `inPlace`), from the reference's codes and statistics.
inline void testBnGradDecode(const std::string &base, const BnData &d,
                             const Results &enc, const Floats &dy, int bits,
                             bool withRelu, bool inPlace) {
  Case k(base + (withRelu ? "/relu_grad_decode" : "/grad_decode") +
         (inPlace ? "_in_place" : ""));
  int dyIn, dx, dscale, dbias;
  std::tie(dyIn, dx) = k.operandAndResult(dy, inPlace, "dx", sumTol);
  int codes = k.in(enc.refBytes("codes")), scale = k.in(d.scale),
      bias = k.in(d.bias), invStd = k.in(enc.refFloats("inv_std"));
  addGradOutputs(k, d, dscale, dbias);
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    auto kernel = withRelu ? rt.blpa_batch_norm_relu_grad_decode
                           : rt.blpa_batch_norm_grad_decode;
    kernel(ctx, p.f(dyIn), p.u8(codes), p.f(scale), p.f(bias), p.f(invStd),
           p.f(dx), p.f(dscale), p.f(dbias), d.n, d.c, d.spatial, bits);
  });
}

inline void testBnCodes(const BnShape &s, int bits) {
  std::string base = format("bn_codes/%s/%dbit", s.name, bits);
  BnData d = bnCodeData(s);
  Results train = bnTrain(base + "/train", d, false);
  Results enc = bnEncode(base + "/encode", d, bits, false);
  Results reluEnc = bnEncode(base + "/relu_encode", d, bits, true);
  if (train.ok && enc.ok)
    expectSameBits(base + "/encode/matches_train",
                   bnOutputs(enc, enc.floats("y")),
                   bnOutputs(train, train.floats("y")),
                   "y, mean or inv_std differ from blpa_batch_norm_train's");
  if (enc.ok && reluEnc.ok)
    expectSameBits(
        base + "/relu_encode/matches_encode",
        concat(
            {bnOutputs(reluEnc, reluEnc.floats("y")), reluEnc.bytes("codes")}),
        concat({bnOutputs(enc, relu(enc.floats("y"))), enc.bytes("codes")}),
        "differs from blpa_batch_norm_train_encode and a ReLU");
  if (!enc.ok)
    return;
  testBnDecode(base, d, enc.refBytes("codes"), bits);
  Floats dy = randomFloats(d.numel());
  for (bool withRelu : {false, true})
    for (bool inPlace : {false, true})
      testBnGradDecode(base, d, enc, dy, bits, withRelu, inPlace);
}

/// Test data per scheme: AFFINE gets a constant channel and one far from 0,
/// NONNEG (ReLU outputs, many exact zeros) an all-zero channel; with
/// `nans`, every scheme a channel with NaNs, which ranges skip and which
/// encode as 0.
inline Floats quantizeInput(const BnShape &s, int64_t scheme,
                            bool nans = true) {
  Floats x = randomFloats(s.n * s.c * s.spatial, -2.0f, 3.0f);
  for (size_t i = 0; i < x.size(); ++i) {
    int64_t ch = int64_t(i) / s.spatial % s.c;
    if (nans && ch == 3 && i % 5 == 0)
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

/// blpa_quantize (exact where the arithmetic is the reference's: ranges
/// are exact), then blpa_dequantize of the reference's codes and
/// parameters.
inline void testQuantize(const BnShape &s, int64_t scheme, int bits) {
  const char *const schemes[] = {"affine", "nonneg", "mask"};
  std::string base =
      format("quantize/%s/%s/%dbit", schemes[scheme], s.name, bits);
  bool mask = scheme == BLPA_SCHEME_MASK;
  size_t numel = s.n * s.c * s.spatial;
  Case k(base + "/encode");
  int x = k.in(quantizeInput(s, scheme));
  int codes = k.codes("codes", numel, bits, mask ? 0 : codeSlack);
  int params = mask ? -1 : k.out("params", 2 * s.c);
  Results r = k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_quantize(ctx, p.f(x), p.u8(codes), mask ? nullptr : p.f(params),
                     s.n, s.c, s.spatial, bits, scheme);
  });

  Case dq(base + "/decode");
  int codesIn = dq.in(r.refBytes("codes"));
  int paramsIn = mask ? -1 : dq.in(r.refFloats("params"));
  int y = dq.out("y", numel);
  dq.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_dequantize(ctx, p.u8(codesIn), mask ? nullptr : p.f(paramsIn),
                       p.f(y), s.n, s.c, s.spatial, bits, scheme);
  });
}

/// Odd spatial sizes, so that code bytes straddle (n, c) slices, and
/// element counts that end inside a warp and inside a byte.
inline const BnShape codeShapes[] = {
    {"4d", 3, 5, 7 * 5},
    {"4d_c3", 3, 3, 7 * 5},
    {"2d", 37, 16, 1},
    {"parts_mid_slice", 5, 9, 1001},
    {"large_odd_planes", 4, 5, 43 * 41},
    {"many_blocks", 8, 19, 27 * 29},
    {"many_blocks_16", 16, 19, 27 * 29},
    {"empty_batch", 0, 3, 5},
};

inline void testCodes() {
  for (const BnShape &s : codeShapes) {
    for (int bits : {2, 4, 8}) {
      if (s.n > 0) // an empty batch has no statistics
        testBnCodes(s, bits);
      testQuantize(s, BLPA_SCHEME_AFFINE, bits);
      testQuantize(s, BLPA_SCHEME_NONNEG, bits);
    }
    testQuantize(s, BLPA_SCHEME_MASK, 1);
  }
}

//===----------------------------------------------------------------------===//
// Probability codes (attention probabilities)
//===----------------------------------------------------------------------===//

/// Softmax of `logits` (in double, rounded once): exactly 0 where a logit
/// is -inf (a masked key).
inline void softmaxRowInto(const std::vector<double> &logits, float *p) {
  double max = -std::numeric_limits<double>::infinity(), sum = 0;
  for (double l : logits)
    max = std::max(max, l);
  std::vector<double> e(logits.size());
  for (size_t j = 0; j < logits.size(); ++j)
    sum += e[j] = std::exp(logits[j] - max);
  for (size_t j = 0; j < logits.size(); ++j)
    p[j] = float(e[j] / sum);
}

/// [rows, length] softmax outputs as an attention's: softmax of random
/// logits whose spread varies from row to row, from flat (the fine steps of
/// the codes) to peaked (far keys round to denormals or to 0 and are
/// flushed), with the rows attention has among them, by row index: keys
/// causally masked (exactly 0 past the query), a fully masked query (all
/// zero), one-hot and uniform rows.
inline Floats probabilityRows(int64_t rows, int64_t length) {
  Floats x(size_t(rows * length));
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_int_distribution<int64_t> key(0,
                                             std::max<int64_t>(length, 1) - 1);
  auto uniform = [](double lo, double hi) {
    return std::uniform_real_distribution<double>(lo, hi)(rng);
  };
  const double masked = -std::numeric_limits<double>::infinity();
  for (int64_t r = 0; r < rows; ++r) {
    float *p = x.data() + r * length;
    int kind = int(r % 8);
    // Logit spreads: flat, moderate, peaked, then anything in between.
    double spread = kind == 0   ? uniform(1e-3, 0.1)
                    : kind == 2 ? uniform(20.0, 100.0)
                    : kind == 7
                        ? std::exp(uniform(std::log(1e-2), std::log(50.0)))
                        : uniform(0.5, 4.0);
    std::vector<double> logits(static_cast<size_t>(length));
    for (int64_t j = 0; j < length; ++j)
      logits[j] = spread * normal(rng);
    if (kind == 3 || kind == 7) // query r % length of a causal attention
      for (int64_t j = r % std::max<int64_t>(length, 1) + 1; j < length; ++j)
        logits[j] = masked;
    if (kind == 6)
      std::fill(logits.begin(), logits.end(), 0.0);
    softmaxRowInto(logits, p);
    if (kind == 4)
      std::fill(p, p + length, 0.0f);
    if (kind == 5 && length > 0) {
      std::fill(p, p + length, 0.0f);
      p[key(rng)] = 1.0f;
    }
  }
  return x;
}

struct ProbabilityShape {
  const char *name;
  int64_t rows, length;
};

/// An attention's [batch * heads * queries, keys], odd lengths whose rows
/// end inside a byte and a warp, a single key, long rows that a block
/// walks several times, and empty shapes.
inline const ProbabilityShape probabilityShapes[] = {
    {"attention_300x128", 300, 128},
    {"odd_37x65", 37, 65},
    {"odd_41x7", 41, 7},
    {"length_1_9x1", 9, 1},
    {"long_9x3000", 9, 3000},
    {"one_row_1x257", 1, 257},
    {"length_0_3x0", 3, 0},
    {"no_rows_0x5", 0, 5},
};

/// Every element of `got` within `rel` of `want`'s (zeros exact).
inline void expectRelative(const std::string &name, const Floats &got,
                           const Floats &want, double rel) {
  if (got.size() != want.size())
    return report(name, false, "size mismatch");
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    double g = got[i], w = want[i];
    if (!(std::fabs(g - w) <= rel * std::fabs(w)) && bad++ == 0)
      first = i;
  }
  report(name, bad == 0,
         format("%zu of %zu differ by more than %g relative, first at [%zu]: "
                "got %.9g, reference %.9g",
                bad, want.size(), rel, first, bad ? got[first] : 0.0f,
                bad ? want[first] : 0.0f));
}

/// blpa_probability_encode's params: the step bit for bit the reference's
/// (both runtimes take it from the exact maximum and minimum), the scale,
/// a sum taken in another order on CUDA, within 1e-6.
inline void compareProbabilityParams(const std::string &name, const Floats &got,
                                     const Floats &want) {
  size_t steps = 0, first = 0;
  for (size_t r = 0; r + 1 < want.size(); r += 2)
    if (!sameFloat(got[r + 1], want[r + 1]) && steps++ == 0)
      first = r / 2;
  report(name + "/step", steps == 0,
         format("%zu rows' steps differ, first row %zu: got %.9g, reference "
                "%.9g",
                steps, first, steps ? got[2 * first + 1] : 0.0f,
                steps ? want[2 * first + 1] : 0.0f));
  Floats gotScale, wantScale;
  for (size_t r = 0; r + 1 < want.size(); r += 2) {
    gotScale.push_back(got[r]);
    wantScale.push_back(want[r]);
  }
  expectRelative(name + "/scale", gotScale, wantScale, 1e-6);
}

/// blpa_probability_encode (codes bit for bit the reference's: the tables
/// are the same float products; params as compareProbabilityParams), then
/// blpa_probability_decode of the reference's codes, and the tested
/// runtime's own codes and params decoded by the reference within 1e-6 of
/// the reference's round trip.
inline void testProbabilityCodes(const ProbabilityShape &s, int bits) {
  std::string base = format("probability/%s/%dbit", s.name, bits);
  size_t numel = size_t(s.rows * s.length),
         codeBytes = size_t(s.rows) * packedSize(size_t(s.length), bits);
  Case k(base + "/encode");
  int x = k.in(probabilityRows(s.rows, s.length)),
      codes = k.bytesOut("codes", codeBytes),
      params = k.uncheckedOut("params", size_t(2 * s.rows));
  Results r = k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_probability_encode(ctx, p.f(x), p.u8(codes), p.f(params), s.rows,
                               s.length, bits);
  });
  if (!r.ok)
    return;
  compareProbabilityParams(base + "/encode/params", r.floats("params"),
                           r.refFloats("params"));

  Case d(base + "/decode");
  int codesIn = d.in(r.refBytes("codes")),
      paramsIn = d.in(r.refFloats("params")), y = d.out("y", numel);
  d.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_probability_decode(ctx, p.u8(codesIn), p.f(paramsIn), p.f(y),
                               s.rows, s.length, bits);
  });

  // The round trip through the tested runtime's codes and scale.
  auto decode = [&](const Bytes &q, const Floats &prm) {
    Floats out(numel);
    backend->refApi().blpa_probability_decode(backend->refContext(), q.data(),
                                              prm.data(), out.data(), s.rows,
                                              s.length, bits);
    return out;
  };
  expectRelative(base + "/round_trip",
                 decode(r.bytes("codes"), r.floats("params")),
                 decode(r.refBytes("codes"), r.refFloats("params")), 1e-6);
}

inline void testProbabilityCodes() {
  for (const ProbabilityShape &s : probabilityShapes)
    for (int bits : {2, 4, 8})
      testProbabilityCodes(s, bits);
}

//===----------------------------------------------------------------------===//
// Library kernels: convolution, gemm, batched matmul, copy
//===----------------------------------------------------------------------===//

/// "conv2d/NAME/" or "conv3d/NAME/".
inline std::string convPrefix(const ConvGeometry &cc) {
  return "conv" + std::to_string(cc.win.rank()) + "d/" + cc.name + "/";
}

using ConvGradKernel = decltype(&::blpa_conv_grad_input);

/// blpa_conv_grad_input or blpa_conv_grad_weight: the same signature.
inline void testConvGrad(const ConvGeometry &cc, const std::string &name,
                         ConvGradKernel Api::*kernel, const Floats &dy,
                         const Floats &other, size_t outSize) {
  Case k(convPrefix(cc) + name);
  int dyIn = k.in(dy), otherIn = k.in(other),
      out = k.out("out", outSize, libraryTol);
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    (rt.*kernel)(ctx, p.f(dyIn), p.f(otherIn), p.f(out), cc.n, cc.c, cc.k,
                 cc.group, WINDOW_ARGS(cc.win));
  });
}

inline void testConv(const ConvGeometry &cc) {
  Floats x = randomFloats(cc.xSize()), wt = randomFloats(cc.wSize()),
         b = randomFloats(cc.k), dy = randomFloats(cc.ySize());
  for (bool withBias : {false, true}) {
    Case k(convPrefix(cc) + (withBias ? "forward_bias" : "forward"));
    int xIn = k.in(x), wIn = k.in(wt), bIn = k.in(b),
        y = k.out("y", cc.ySize(), libraryTol);
    k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
      rt.blpa_conv(ctx, p.f(xIn), p.f(wIn), withBias ? p.f(bIn) : nullptr,
                   p.f(y), cc.n, cc.c, cc.k, cc.group, WINDOW_ARGS(cc.win));
    });
  }
  testConvGrad(cc, "grad_input", &Api::blpa_conv_grad_input, dy, wt,
               cc.xSize());
  testConvGrad(cc, "grad_weight", &Api::blpa_conv_grad_weight, dy, x,
               cc.wSize());
}

/// A gemm's sizes, transpositions, scales and the shape of its C operand
/// (0 x 0: none; a row or a column: broadcast).
struct GemmShape {
  int64_t m, n, k;
  bool transA, transB;
  double alpha, beta;
  int64_t cRows, cCols;
};

/// Every transposition, C absent, broadcast and full, a classifier's
/// shapes, large ones.
inline const std::vector<GemmShape> gemmShapes = {
    {17, 13, 29, false, false, 1.0, 0.0, 0, 0},
    {17, 13, 29, true, false, 0.5, 1.0, 1, 13},
    {17, 13, 29, false, true, 1.0, 2.0, 17, 1},
    {17, 13, 29, true, true, -1.5, 0.5, 17, 13},
    {17, 13, 29, false, true, 1.0, 1.0, 1, 1},
    {64, 100, 300, false, true, 1.0, 1.0, 1, 100},
    {1, 10, 512, false, true, 1.0, 1.0, 1, 10},
    {128, 256, 512, false, false, 1.0, 1.0, 128, 256},
    {512, 384, 128, true, false, 1.0, 0.0, 0, 0},
};

inline void testGemm(int64_t m, int64_t n, int64_t k, bool transA, bool transB,
                     double alpha, double beta, int64_t cRows, int64_t cCols) {
  Case g(format("gemm/%lldx%lldx%lld_t%d%d_c%lldx%lld", (long long)m,
                (long long)n, (long long)k, transA, transB, (long long)cRows,
                (long long)cCols));
  int a = g.in(randomFloats(m * k)), b = g.in(randomFloats(k * n)),
      c = g.in(randomFloats(std::max<int64_t>(cRows * cCols, 1))),
      y = g.out("y", m * n, libraryTol);
  g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_gemm(ctx, p.f(a), p.f(b), cRows ? p.f(c) : nullptr, p.f(y), m, n, k,
                 transA, transB, alpha, beta, cRows, cCols);
  });
}

/// A batched matmul: [batch, m, k] x [batch, k, n], aBatch and bBatch (1
/// or batch) saying which operand is broadcast.
struct BatchMatMulShape {
  int64_t batch, m, n, k;
  bool transA, transB;
  int64_t aBatch, bBatch;
};

/// Every transposition, either operand broadcast or both, more matrices
/// than threads (one sgemm per thread), a classifier's sizes, 1 x 1
/// results, attention-sized ones; empty sums (zeros) and an empty batch
/// (nothing written).
inline const std::vector<BatchMatMulShape> batchMatMulShapes = {
    {3, 17, 13, 29, false, false, 3, 3},   {3, 17, 13, 29, true, false, 3, 3},
    {3, 17, 13, 29, false, true, 3, 3},    {3, 17, 13, 29, true, true, 3, 3},
    {5, 7, 9, 11, false, false, 1, 5},     {5, 7, 9, 11, false, true, 1, 5},
    {5, 7, 9, 11, true, false, 5, 1},      {5, 7, 9, 11, true, true, 5, 1},
    {4, 16, 16, 8, false, true, 1, 1},     {37, 5, 6, 64, true, false, 37, 37},
    {1, 64, 100, 300, false, true, 1, 1},  {6, 1, 1, 50, false, false, 6, 1},
    {32, 64, 64, 16, false, true, 32, 32}, {2, 3, 4, 0, false, false, 2, 2},
    {0, 3, 4, 5, false, false, 0, 1},
};

inline void testBatchMatMul(int64_t batch, int64_t m, int64_t n, int64_t k,
                            bool transA, bool transB, int64_t aBatch,
                            int64_t bBatch) {
  Case g(format("batch_matmul/%lldx%lldx%lldx%lld_t%d%d_a%lld_b%lld",
                (long long)batch, (long long)m, (long long)n, (long long)k,
                transA, transB, (long long)aBatch, (long long)bBatch));
  int a = g.in(randomFloats(aBatch * m * k)),
      b = g.in(randomFloats(bBatch * k * n)),
      y = g.out("y", batch * m * n, libraryTol);
  g.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_batch_matmul(ctx, p.f(a), p.f(b), p.f(y), batch, m, n, k, transA,
                         transB, aBatch, bBatch);
  });
}

inline void testCopy(size_t bytes) {
  Bytes src = bytesOf(randomFloats(bytes / 4 + 1));
  src.resize(bytes);
  Case k("copy/" + std::to_string(bytes));
  int in = k.in(src), out = k.bytesOut("dst", bytes);
  k.run([&](const Api &rt, blpa_context *ctx, const Ptrs &p) {
    rt.blpa_copy(ctx, p.raw(out), p.raw(in), int64_t(bytes));
  });
}

/// The kernels a library runs on CUDA; not on a backend without them.
inline void testLibraryKernels() {
  if (!has(&Api::blpa_conv))
    return;
  for (const ConvGeometry &cc : convGeometries())
    testConv(cc);
  for (const GemmShape &g : gemmShapes)
    testGemm(g.m, g.n, g.k, g.transA, g.transB, g.alpha, g.beta, g.cRows,
             g.cCols);
  for (const BatchMatMulShape &b : batchMatMulShapes)
    testBatchMatMul(b.batch, b.m, b.n, b.k, b.transA, b.transB, b.aBatch,
                    b.bBatch);
  for (size_t bytes : {size_t(1), size_t(4003), (size_t(1) << 20) + 1})
    testCopy(bytes);
}

//===----------------------------------------------------------------------===//
// All cases
//===----------------------------------------------------------------------===//

/// Every case, on `backend`.
inline void runKernelCases() {
  setHyper(defaultHyper);
  testLibraryKernels();
  testElementwise();
  testActivations();
  testActivationRegions();
  testCopiesStrided();
  testPads();
  testTransposes();
  testTrilus();
  testDropouts();
  testLoss();
  testPooling();
  testBatchNorms();
  testLayerNorms();
  testCodes();
  testProbabilityCodes();
}

} // namespace blpa_test

#endif // BLPA_TEST_RUNTIME_KERNELCASES_H
