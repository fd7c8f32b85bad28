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

#include <cstdio>
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

/// A convolution's primitive descriptor and its operands' layouts, before
/// any primitive or reorder is created: all that choosing a chunk that fits
/// the workspace needs to know.
struct ConvDescs {
  struct PortDesc {
    int arg;
    memory::desc user, inner;
    bool isOutput;
  };
  dnnl::primitive_desc pd;
  std::vector<PortDesc> ports;
};

ConvDescs describe(const dnnl::engine &engine, ConvKind kind,
                   const ConvShape &shape) {
  ConvGeometry g = convGeometry(shape);
  memory::desc src = md(g.src, g.dataTag), dst = md(g.dst, g.dataTag),
               weights = md(g.weights, g.weightsTag);
  ConvDescs descs;
  switch (kind) {
  case ConvKind::forward:
  case ConvKind::forwardBias: {
    bool withBias = kind == ConvKind::forwardBias;
    auto pd = forwardDesc(engine, g, withBias);
    descs.ports = {{DNNL_ARG_SRC, src, pd.src_desc(), false},
                   {DNNL_ARG_WEIGHTS, weights, pd.weights_desc(), false}};
    if (withBias)
      descs.ports.push_back(
          {DNNL_ARG_BIAS, pd.bias_desc(), pd.bias_desc(), false});
    descs.ports.push_back({DNNL_ARG_DST, dst, pd.dst_desc(), true});
    descs.pd = pd;
    break;
  }
  case ConvKind::backwardData: {
    auto pd = backwardDesc<dnnl::convolution_backward_data>(engine, g);
    descs.ports = {{DNNL_ARG_DIFF_DST, dst, pd.diff_dst_desc(), false},
                   {DNNL_ARG_WEIGHTS, weights, pd.weights_desc(), false},
                   {DNNL_ARG_DIFF_SRC, src, pd.diff_src_desc(), true}};
    descs.pd = pd;
    break;
  }
  case ConvKind::backwardWeights: {
    auto pd = backwardDesc<dnnl::convolution_backward_weights>(engine, g);
    descs.ports = {
        {DNNL_ARG_SRC, src, pd.src_desc(), false},
        {DNNL_ARG_DIFF_DST, dst, pd.diff_dst_desc(), false},
        {DNNL_ARG_DIFF_WEIGHTS, weights, pd.diff_weights_desc(), true}};
    descs.pd = pd;
    break;
  }
  }
  return descs;
}

std::unique_ptr<ConvPlan> makePlan(const dnnl::engine &engine,
                                   const ConvDescs &descs) {
  auto plan = std::make_unique<ConvPlan>();
  for (const ConvDescs::PortDesc &port : descs.ports)
    plan->addPort(engine, port.arg, port.user, port.inner, port.isOutput);
  plan->primitive = dnnl::primitive(descs.pd);
  plan->scratchpad = descs.pd.scratchpad_desc();
  return plan;
}

/// The key of a convolution's plan and chunk (CpuRuntime).
std::vector<int64_t> convKey(ConvKind kind, const ConvShape &s) {
  const blpa::WindowShape &win = s.window;
  std::vector<int64_t> key = {int64_t(kind), s.n, s.c, s.k, s.group, win.rank};
  for (const int64_t *values : {win.in, win.out, win.kernel, win.stride,
                                win.padBegin, win.padEnd, win.dilation})
    key.insert(key.end(), values, values + win.rank);
  return key;
}

ConvPlan &planFor(CpuRuntime &rt, ConvKind kind, const ConvShape &s) {
  std::unique_ptr<ConvPlan> &plan = rt.convPlans[convKey(kind, s)];
  if (!plan)
    plan = makePlan(rt.engine, describe(rt.engine, kind, s));
  return *plan;
}

size_t weightBytes(const ConvShape &s) {
  return sizeof(float) * size_t(s.k) * size_t(s.c / s.group) *
         size_t(s.window.kernelSize());
}

/// The scratch one chunk of `kind` over `part` takes (ConvScratch::take in
/// ConvPlan::run order): the reordered operands, the scratchpad and, when
/// backward-weights runs in chunks, the partial weight gradient.
size_t chunkScratchBytes(CpuRuntime &rt, ConvKind kind, const ConvShape &part,
                         bool chunked) {
  ConvDescs descs = describe(rt.engine, kind, part);
  size_t bytes = ConvScratch::alignUp(descs.pd.scratchpad_desc().get_size());
  for (const ConvDescs::PortDesc &port : descs.ports)
    if (port.user != port.inner)
      bytes += ConvScratch::alignUp(port.inner.get_size());
  if (chunked && kind == ConvKind::backwardWeights)
    bytes += ConvScratch::alignUp(weightBytes(part));
  return bytes;
}

/// The most samples of `shape` (at most `limit`) whose chunk fits the
/// workspace, or 0 when not even one does. Scratch grows about linearly
/// with the chunk, so the line through one sample and `limit` samples
/// gives the first guess; halving from there finds one that fits.
int64_t chunkForWorkspace(CpuRuntime &rt, ConvKind kind, const ConvShape &shape,
                          int64_t limit) {
  auto need = [&](int64_t samples) {
    ConvShape part = shape;
    part.n = samples;
    return int64_t(chunkScratchBytes(rt, kind, part, samples < shape.n));
  };
  int64_t budget = rt.workspaceBytes;
  int64_t all = need(limit);
  if (all <= budget)
    return limit;
  int64_t one = need(1);
  if (one > budget)
    return 0;
  int64_t perSample =
      std::max<int64_t>((all - one) / std::max<int64_t>(limit - 1, 1), 1);
  int64_t chunk =
      std::clamp<int64_t>(1 + (budget - one) / perSample, 1, limit - 1);
  while (chunk > 1 && need(chunk) > budget)
    chunk /= 2;
  // Chunks of equal size: 16 + 16 samples rather than 31 + 1.
  int64_t chunks = (shape.n + chunk - 1) / chunk;
  chunk = (shape.n + chunks - 1) / chunks;
  return chunk;
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

/// Samples per chunk of `shape`: the larger operand at most
/// rt.convChunkBytes; with a workspace, also few enough that the chunk's
/// scratch fits it (0 when one sample does not: the convolution then runs
/// one sample at a time with scratch outside the arena, said once).
int64_t chunkFor(CpuRuntime &rt, ConvKind kind, const ConvShape &shape,
                 int64_t sampleBytes) {
  int64_t limit =
      std::clamp<int64_t>(rt.convChunkBytes / std::max<int64_t>(sampleBytes, 1),
                          1, std::max<int64_t>(shape.n, 1));
  if (!rt.workspaceBytes)
    return limit;
  auto [it, inserted] = rt.convChunks.try_emplace(convKey(kind, shape), 0);
  if (!inserted)
    return it->second;
  it->second = chunkForWorkspace(rt, kind, shape, limit);
  if (!it->second && !rt.warnedOutsideWorkspace) {
    ConvShape one = shape;
    one.n = 1;
    std::fprintf(stderr,
                 "blpa: note: a convolution (%lld to %lld channels) needs "
                 "%zu bytes of scratch for one sample, more than the plan's "
                 "%lld-byte workspace; it runs with memory outside the plan "
                 "(compile with a larger --cpu-workspace)\n",
                 (long long)shape.c, (long long)shape.k,
                 chunkScratchBytes(rt, kind, one, shape.n > 1),
                 (long long)rt.workspaceBytes);
    rt.warnedOutsideWorkspace = true;
  }
  return it->second;
}

/// Shared body of the three entry points: the plan run over the batch in
/// chunks (chunkFor). Backward-weights sums the chunks' weight gradients in
/// chunk order, so the result does not depend on the thread count.
void runConv(const char *name, blpa_context *ctx, ConvKind kind,
             const ConvShape &shape, std::initializer_list<const void *> data) {
  guarded(name, [&] {
    CpuRuntime &rt = runtimeOf(ctx);
    std::vector<const void *> operands(data);
    auto batched = batchedOperands(kind, shape, operands.size());
    int64_t chunk = chunkFor(
        rt, kind, shape, 4 * std::max(batched[0].second, batched[1].second));
    ConvScratch scratch(rt, /*inWorkspace=*/rt.workspaceBytes && chunk);
    chunk = std::max<int64_t>(chunk, 1);
    float *weightGrad = kind == ConvKind::backwardWeights
                            ? static_cast<float *>(const_cast<void *>(
                                  operands[2]))
                            : nullptr;
    // Chunks after the first compute their weight gradient here and add.
    float *partial = nullptr;
    if (weightGrad && chunk < shape.n)
      partial = static_cast<float *>(scratch.take(weightBytes(shape)));
    int64_t weightFloats = int64_t(weightBytes(shape) / sizeof(float));
    size_t chunkMark = scratch.mark();
    for (int64_t first = 0; first == 0 || first < shape.n; first += chunk) {
      ConvShape part = shape;
      part.n = std::min(chunk, shape.n - first);
      std::vector<const void *> partOperands = operands;
      for (auto [index, floats] : batched)
        partOperands[index] =
            static_cast<const float *>(operands[index]) + first * floats;
      if (first != 0 && partial)
        partOperands[2] = partial;
      planFor(rt, kind, part).run(rt, scratch, partOperands);
      scratch.release(chunkMark);
      if (first != 0 && partial)
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

void *ConvScratch::take(size_t bytes) {
  if (!inWorkspace)
    return rt.scratch.get(unsigned(used++), bytes);
  size_t offset = used;
  used += alignUp(bytes);
  if (used > size_t(rt.workspaceBytes))
    failf("convolution scratch of %zu bytes overflows the %lld-byte "
          "workspace",
          used, (long long)rt.workspaceBytes);
  return rt.workspace + offset;
}

void ConvPlan::run(CpuRuntime &rt, ConvScratch &scratch,
                   const std::vector<const void *> &data) {
  const dnnl::engine &engine = rt.engine;
  std::unordered_map<int, memory> args;
  struct PendingOutput {
    dnnl::reorder *reorder;
    memory inner, user;
  };
  std::vector<PendingOutput> pendingOutputs;
  auto portData = data.begin();
  for (Port &port : ports) {
    memory user(port.user, engine, const_cast<void *>(*portData++));
    if (!port.reorder) {
      args[port.arg] = user;
      continue;
    }
    memory inner(port.inner, engine, scratch.take(port.inner.get_size()));
    if (port.isOutput)
      pendingOutputs.push_back({&port.reorder, inner, user});
    else
      port.reorder.execute(rt.stream, user, inner);
    args[port.arg] = inner;
  }
  if (size_t bytes = scratchpad.get_size())
    args[DNNL_ARG_SCRATCHPAD] = memory(scratchpad, engine, scratch.take(bytes));
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
