//===- Conv.cpp - Convolution kernels on oneDNN --------------------------===//
//
// Forward, backward-data and backward-weights share one descriptor builder
// (convGeometry) and one executor (ConvPlan::run). Blocked layouts chosen
// through format_tag::any plus reorders beat oneDNN's plain-layout (im2col +
// gemm) implementations by 2-3x even for small shapes, so they are always
// used. oneDNN's convolutions are deterministic for a fixed thread count.
// Large batches run in chunks (runConv), so that the blocked copies, which
// live outside the planned arena, stay a fixed size.
// 2-D and 3-D convolutions are the same code over 4-D or 5-D descriptors
// (NCHW/OIHW or NCDHW/OIDHW buffers).
//
//===----------------------------------------------------------------------===//

#include "ConvPlan.h"

#include "../Common/WindowShape.h"

#include <unordered_map>

using namespace blpa::cpu;
using dnnl::memory;
using tag = dnnl::memory::format_tag;

namespace {

using blpa::ConvShape;

enum class ConvKind : int64_t {
  forward,
  forwardBias,
  backwardData,
  backwardWeights
};

/// Everything oneDNN's convolution descriptors need, derived once.
struct ConvGeometry {
  memory::dims src, weights, bias, dst, strides, dilates, padL, padR;
  tag dataTag, weightsTag;
};

ConvGeometry convGeometry(const ConvShape &s) {
  const blpa::WindowShape &win = s.window;
  if (s.group < 1 || s.c % s.group || s.k % s.group)
    failf("conv: channels (%lld in, %lld out) not divisible by group %lld",
          (long long)s.c, (long long)s.k, (long long)s.group);
  if (win.rank != 2 && win.rank != 3)
    failf("conv: %lld spatial dimensions; only 2 and 3 are supported",
          (long long)win.rank);
  bool is3D = win.rank == 3;
  ConvGeometry g;
  g.src = {s.n, s.c};
  g.dst = {s.n, s.k};
  g.bias = {s.k};
  // The ABI's [K, C/group, kernel...] weights are goi(d)hw with K split as
  // g x K/g.
  if (s.group == 1) {
    g.weights = {s.k, s.c};
    g.weightsTag = is3D ? tag::oidhw : tag::oihw;
  } else {
    g.weights = {s.group, s.k / s.group, s.c / s.group};
    g.weightsTag = is3D ? tag::goidhw : tag::goihw;
  }
  g.dataTag = is3D ? tag::ncdhw : tag::nchw;
  for (int64_t i = 0; i < win.rank; ++i) {
    g.src.push_back(win.in[i]);
    g.dst.push_back(win.out[i]);
    g.weights.push_back(win.kernel[i]);
    g.strides.push_back(win.stride[i]);
    // oneDNN counts dilation from 0 (0 = dense), ONNX from 1.
    g.dilates.push_back(win.dilation[i] - 1);
    g.padL.push_back(win.padBegin[i]);
    g.padR.push_back(win.padEnd[i]);
  }
  return g;
}

memory::desc md(const memory::dims &dims, tag format) {
  return memory::desc(dims, memory::data_type::f32, format);
}

dnnl::primitive_attr userScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

dnnl::convolution_forward::primitive_desc
forwardDesc(const dnnl::engine &engine, const ConvGeometry &g, bool withBias) {
  memory::desc bias = withBias ? md(g.bias, tag::x) : memory::desc();
  dnnl::convolution_forward::desc desc(
      dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
      md(g.src, tag::any), md(g.weights, tag::any), bias, md(g.dst, tag::any),
      g.strides, g.dilates, g.padL, g.padR);
  return {desc, userScratchpad(), engine};
}

/// The backward-data and backward-weights descriptors take the same
/// arguments and the forward descriptor as a hint.
template <typename Primitive>
typename Primitive::primitive_desc backwardDesc(const dnnl::engine &engine,
                                                const ConvGeometry &g) {
  typename Primitive::desc desc(dnnl::algorithm::convolution_direct,
                                md(g.src, tag::any), md(g.weights, tag::any),
                                md(g.dst, tag::any), g.strides, g.dilates,
                                g.padL, g.padR);
  return {desc, userScratchpad(), engine, forwardDesc(engine, g, false)};
}

std::unique_ptr<ConvPlan> makePlan(const dnnl::engine &engine, ConvKind kind,
                                   const ConvShape &shape) {
  ConvGeometry g = convGeometry(shape);
  memory::desc src = md(g.src, g.dataTag), dst = md(g.dst, g.dataTag),
               weights = md(g.weights, g.weightsTag);
  auto plan = std::make_unique<ConvPlan>();
  auto finish = [&](const auto &pd) {
    plan->primitive = dnnl::primitive(pd);
    plan->scratchpad = pd.scratchpad_desc();
  };
  switch (kind) {
  case ConvKind::forward:
  case ConvKind::forwardBias: {
    bool withBias = kind == ConvKind::forwardBias;
    auto pd = forwardDesc(engine, g, withBias);
    plan->addPort(engine, DNNL_ARG_SRC, src, pd.src_desc(), false);
    plan->addPort(engine, DNNL_ARG_WEIGHTS, weights, pd.weights_desc(), false);
    if (withBias)
      plan->addPort(engine, DNNL_ARG_BIAS, pd.bias_desc(), pd.bias_desc(),
                    false);
    plan->addPort(engine, DNNL_ARG_DST, dst, pd.dst_desc(), true);
    finish(pd);
    break;
  }
  case ConvKind::backwardData: {
    auto pd = backwardDesc<dnnl::convolution_backward_data>(engine, g);
    plan->addPort(engine, DNNL_ARG_DIFF_DST, dst, pd.diff_dst_desc(), false);
    plan->addPort(engine, DNNL_ARG_WEIGHTS, weights, pd.weights_desc(), false);
    plan->addPort(engine, DNNL_ARG_DIFF_SRC, src, pd.diff_src_desc(), true);
    finish(pd);
    break;
  }
  case ConvKind::backwardWeights: {
    auto pd = backwardDesc<dnnl::convolution_backward_weights>(engine, g);
    plan->addPort(engine, DNNL_ARG_SRC, src, pd.src_desc(), false);
    plan->addPort(engine, DNNL_ARG_DIFF_DST, dst, pd.diff_dst_desc(), false);
    plan->addPort(engine, DNNL_ARG_DIFF_WEIGHTS, weights,
                  pd.diff_weights_desc(), true);
    finish(pd);
    break;
  }
  }
  return plan;
}

ConvPlan &planFor(CpuRuntime &rt, ConvKind kind, const ConvShape &s) {
  const blpa::WindowShape &win = s.window;
  std::vector<int64_t> key = {int64_t(kind), s.n, s.c, s.k, s.group, win.rank};
  for (const int64_t *values : {win.in, win.out, win.kernel, win.stride,
                                win.padBegin, win.padEnd, win.dilation})
    key.insert(key.end(), values, values + win.rank);
  std::unique_ptr<ConvPlan> &plan = rt.convPlans[key];
  if (!plan)
    plan = makePlan(rt.engine, kind, s);
  return *plan;
}

/// The operands of `kind` (in the entry point's order) that have a batch
/// dimension, with their floats per sample.
std::vector<std::pair<size_t, int64_t>> batchedOperands(ConvKind kind,
                                                        const ConvShape &s,
                                                        size_t numOperands) {
  int64_t in = s.c * s.window.inSize(), out = s.k * s.window.outSize();
  switch (kind) {
  case ConvKind::forward:
  case ConvKind::forwardBias: // x, w, [b,] y
    return {{0, in}, {numOperands - 1, out}};
  case ConvKind::backwardData: // dy, w, dx
    return {{0, out}, {2, in}};
  case ConvKind::backwardWeights: // x, dy, dw
    return {{0, in}, {1, out}};
  }
  return {};
}

/// Shared body of the three entry points: the plan run over the batch in
/// chunks of at most rt.convChunkBytes (CpuRuntime.h). Backward-weights
/// sums the chunks' weight gradients in chunk order, so the result does
/// not depend on the thread count.
void runConv(const char *name, blpa_context *ctx, ConvKind kind,
             const ConvShape &shape, std::initializer_list<const void *> data) {
  guarded(name, [&] {
    CpuRuntime &rt = runtimeOf(ctx);
    std::vector<const void *> operands(data);
    auto batched = batchedOperands(kind, shape, operands.size());
    int64_t sampleBytes = 4 * std::max(batched[0].second, batched[1].second);
    int64_t chunk = std::clamp<int64_t>(
        rt.convChunkBytes / std::max<int64_t>(sampleBytes, 1), 1,
        std::max<int64_t>(shape.n, 1));
    float *weightGrad = kind == ConvKind::backwardWeights
                            ? static_cast<float *>(const_cast<void *>(
                                  operands[2]))
                            : nullptr;
    int64_t weightFloats = shape.k * (shape.c / shape.group) *
                           shape.window.kernelSize();
    for (int64_t first = 0; first == 0 || first < shape.n; first += chunk) {
      ConvShape part = shape;
      part.n = std::min(chunk, shape.n - first);
      std::vector<const void *> partOperands = operands;
      for (auto [index, floats] : batched)
        partOperands[index] =
            static_cast<const float *>(operands[index]) + first * floats;
      // Chunks after the first compute into scratch and add.
      float *partial = nullptr;
      if (weightGrad && first != 0) {
        partial = static_cast<float *>(
            rt.scratch.get(kWeightGradSlot, 4 * weightFloats));
        partOperands[2] = partial;
      }
      planFor(rt, kind, part).run(rt, partOperands);
      if (partial)
        parallelBlocks(weightFloats, [&](int64_t begin, int64_t end) {
          for (int64_t i = begin; i < end; ++i)
            weightGrad[i] += partial[i];
        });
    }
  });
}

/// The ConvShape of the ABI's static arguments.
ConvShape convShape(const char *name, int64_t n, int64_t c, int64_t k,
                    int64_t group, int64_t rank, const int64_t *in,
                    const int64_t *out, const int64_t *kernel,
                    const int64_t *strides, const int64_t *pads,
                    const int64_t *dilations) {
  ConvShape shape;
  if (!shape.read(n, c, k, group, rank, in, out, kernel, strides, pads,
                  dilations))
    failf("%s: invalid window (%lld spatial dimensions)", name,
          (long long)rank);
  return shape;
}

} // namespace

void ConvPlan::addPort(const dnnl::engine &engine, int arg,
                       const memory::desc &user, const memory::desc &inner,
                       bool isOutput) {
  Port port{arg, user, inner, isOutput, dnnl::reorder()};
  if (user != inner)
    port.reorder = isOutput ? dnnl::reorder({engine, inner, engine, user})
                            : dnnl::reorder({engine, user, engine, inner});
  ports.push_back(std::move(port));
}

void ConvPlan::run(CpuRuntime &rt, const std::vector<const void *> &data) {
  const dnnl::engine &engine = rt.engine;
  std::unordered_map<int, memory> args;
  struct PendingOutput {
    dnnl::reorder *reorder;
    memory inner, user;
  };
  std::vector<PendingOutput> pendingOutputs;
  unsigned slot = 0;
  auto portData = data.begin();
  for (Port &port : ports) {
    memory user(port.user, engine, const_cast<void *>(*portData++));
    if (!port.reorder) {
      args[port.arg] = user;
      continue;
    }
    memory inner(port.inner, engine,
                 rt.scratch.get(slot++, port.inner.get_size()));
    if (port.isOutput)
      pendingOutputs.push_back({&port.reorder, inner, user});
    else
      port.reorder.execute(rt.stream, user, inner);
    args[port.arg] = inner;
  }
  if (size_t bytes = scratchpad.get_size())
    args[DNNL_ARG_SCRATCHPAD] =
        memory(scratchpad, engine, rt.scratch.get(slot++, bytes));
  primitive.execute(rt.stream, args);
  for (PendingOutput &out : pendingOutputs)
    out.reorder->execute(rt.stream, out.inner, out.user);
  rt.stream.wait();
}

extern "C" {

void blpa_conv(blpa_context *ctx, const float *x, const float *w,
               const float *b, float *y, int64_t n, int64_t c, int64_t k,
               int64_t group, int64_t rank, const int64_t *in,
               const int64_t *out, const int64_t *kernel,
               const int64_t *strides, const int64_t *pads,
               const int64_t *dilations) {
  const char *name = "blpa_conv";
  ConvShape shape = convShape(name, n, c, k, group, rank, in, out, kernel,
                              strides, pads, dilations);
  if (b)
    runConv(name, ctx, ConvKind::forwardBias, shape, {x, w, b, y});
  else
    runConv(name, ctx, ConvKind::forward, shape, {x, w, y});
}

void blpa_conv_grad_input(blpa_context *ctx, const float *dy, const float *w,
                          float *dx, int64_t n, int64_t c, int64_t k,
                          int64_t group, int64_t rank, const int64_t *in,
                          const int64_t *out, const int64_t *kernel,
                          const int64_t *strides, const int64_t *pads,
                          const int64_t *dilations) {
  const char *name = "blpa_conv_grad_input";
  runConv(name, ctx, ConvKind::backwardData,
          convShape(name, n, c, k, group, rank, in, out, kernel, strides, pads,
                    dilations),
          {dy, w, dx});
}

void blpa_conv_grad_weight(blpa_context *ctx, const float *dy, const float *x,
                           float *dw, int64_t n, int64_t c, int64_t k,
                           int64_t group, int64_t rank, const int64_t *in,
                           const int64_t *out, const int64_t *kernel,
                           const int64_t *strides, const int64_t *pads,
                           const int64_t *dilations) {
  const char *name = "blpa_conv_grad_weight";
  runConv(name, ctx, ConvKind::backwardWeights,
          convShape(name, n, c, k, group, rank, in, out, kernel, strides, pads,
                    dilations),
          {x, dy, dw});
}

} // extern "C"
