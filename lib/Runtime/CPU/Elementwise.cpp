//===- Elementwise.cpp - ReLU, broadcasting arithmetic, the SGD update ---===//
//
// Element-wise kernels split their elements into fixed blocks over the
// threads (parallelBlocks); the inner loops are plain enough for the
// compiler to vectorize.
//
//===----------------------------------------------------------------------===//

#include "CpuRuntime.h"
#include "Shape.h"

#include <algorithm>
#include <math.h>

using namespace blpa::cpu;

namespace {

/// y[j] = op(a[j * aStride], b[j * bStride]) with strides in {0, 1}; each
/// case gets its own loop so that every one vectorizes.
template <typename Op>
void binaryRun(const float *a, int64_t aStride, const float *b, int64_t bStride,
               float *y, int64_t len, Op op) {
  if (aStride && bStride) {
    for (int64_t j = 0; j < len; ++j)
      y[j] = op(a[j], b[j]);
  } else if (aStride) {
    float bv = *b;
    for (int64_t j = 0; j < len; ++j)
      y[j] = op(a[j], bv);
  } else if (bStride) {
    float av = *a;
    for (int64_t j = 0; j < len; ++j)
      y[j] = op(av, b[j]);
  } else {
    std::fill(y, y + len, op(*a, *b));
  }
}

void checkBroadcast(const char *kernel, const char *operand, int64_t rank,
                    const int64_t *dims, const int64_t *outDims) {
  for (int64_t i = 0; i < rank; ++i)
    if (dims[i] != outDims[i] && dims[i] != 1)
      failf("%s: dimension %lld of %s is %lld, expected 1 or %lld", kernel,
            (long long)i, operand, (long long)dims[i], (long long)outDims[i]);
}

/// y = op(a, b) with numpy broadcasting (the static arguments of blpa_add).
template <typename Op>
void broadcastBinary(const char *kernel, const float *a, const float *b,
                     float *y, int64_t rank, const int64_t *outDims,
                     const int64_t *aDims, const int64_t *bDims, Op op) {
  checkBroadcast(kernel, "a", rank, aDims, outDims);
  checkBroadcast(kernel, "b", rank, bDims, outDims);
  const unsigned aAbsent = 1, bAbsent = 2;
  std::vector<MergedDim> dims = mergeDims(rank, outDims, [&](int64_t i) {
    return (aDims[i] != outDims[i] ? aAbsent : 0u) |
           (bDims[i] != outDims[i] ? bAbsent : 0u);
  });
  std::vector<int64_t> aStrides = stridesOf(dims, aAbsent),
                       bStrides = stridesOf(dims, bAbsent);
  size_t outer = dims.size() - 1;
  int64_t inner = dims.back().size, numel = 1;
  for (const MergedDim &d : dims)
    numel *= d.size;
  if (numel == 0)
    return;
  // Work items: (row of the outer runs, block of the innermost run).
  int64_t blocks = (inner + elementBlock - 1) / elementBlock;
  parallelFor(numel / inner * blocks, [&](int64_t item) {
    int64_t row = item / blocks, begin = item % blocks * elementBlock;
    int64_t len = std::min(elementBlock, inner - begin);
    binaryRun(
        a + offsetOf(row, dims, aStrides, outer) + begin * aStrides.back(),
        aStrides.back(),
        b + offsetOf(row, dims, bStrides, outer) + begin * bStrides.back(),
        bStrides.back(), y + row * inner + begin, len, op);
  });
}

} // namespace

extern "C" {

void blpa_fill(blpa_context *, float *y, int64_t numel, double value) {
  float v = static_cast<float>(value);
  parallelBlocks(numel, [&](int64_t begin, int64_t end) {
    std::fill(y + begin, y + end, v);
  });
}

void blpa_relu(blpa_context *, const float *x, float *y, int64_t numel) {
  parallelBlocks(numel, [&](int64_t begin, int64_t end) {
    // std::max(x, 0) keeps NaN, as PyTorch's relu does.
    for (int64_t i = begin; i < end; ++i)
      y[i] = std::max(x[i], 0.0f);
  });
}

void blpa_relu_grad(blpa_context *, const float *dy, const float *y, float *dx,
                    int64_t numel) {
  parallelBlocks(numel, [&](int64_t begin, int64_t end) {
    // Both values are loaded unconditionally: a load under the condition
    // becomes a branch on a random sign (10x slower) instead of a select.
    for (int64_t i = begin; i < end; ++i) {
      float g = dy[i];
      dx[i] = y[i] > 0.0f ? g : 0.0f;
    }
  });
}

void blpa_add(blpa_context *, const float *a, const float *b, float *y,
              int64_t rank, const int64_t *outDims, const int64_t *aDims,
              const int64_t *bDims) {
  broadcastBinary("blpa_add", a, b, y, rank, outDims, aDims, bDims,
                  [](float u, float v) { return u + v; });
}

void blpa_mul(blpa_context *, const float *a, const float *b, float *y,
              int64_t rank, const int64_t *outDims, const int64_t *aDims,
              const int64_t *bDims) {
  broadcastBinary("blpa_mul", a, b, y, rank, outDims, aDims, bDims,
                  [](float u, float v) { return u * v; });
}

void blpa_sub(blpa_context *, const float *a, const float *b, float *y,
              int64_t rank, const int64_t *outDims, const int64_t *aDims,
              const int64_t *bDims) {
  broadcastBinary("blpa_sub", a, b, y, rank, outDims, aDims, bDims,
                  [](float u, float v) { return u - v; });
}

void blpa_div(blpa_context *, const float *a, const float *b, float *y,
              int64_t rank, const int64_t *outDims, const int64_t *aDims,
              const int64_t *bDims) {
  broadcastBinary("blpa_div", a, b, y, rank, outDims, aDims, bDims,
                  [](float u, float v) { return u / v; });
}

void blpa_power(blpa_context *, const float *a, const float *b, float *y,
                int64_t rank, const int64_t *outDims, const int64_t *aDims,
                const int64_t *bDims) {
  broadcastBinary("blpa_power", a, b, y, rank, outDims, aDims, bDims,
                  [](float u, float v) { return powf(u, v); });
}

void blpa_sgd_update(blpa_context *ctx, float *param, const float *grad,
                     float *momentumBuf, float *gradOut, int64_t numel) {
  float lr = ctx->lr, momentum = ctx->momentum, decay = ctx->weight_decay;
  bool update = !ctx->skip_update;
  parallelBlocks(numel, [&](int64_t begin, int64_t end) {
    if (gradOut && gradOut != grad)
      std::copy(grad + begin, grad + end, gradOut + begin);
    if (!update)
      return;
    // Same operation order as torch.optim.SGD (its first step's buffer is
    // grad itself, which equals momentum * 0 + grad).
    for (int64_t i = begin; i < end; ++i) {
      float g = grad[i] + decay * param[i];
      float v = momentumBuf ? momentum * momentumBuf[i] + g : g;
      if (momentumBuf)
        momentumBuf[i] = v;
      param[i] -= lr * v;
    }
  });
}

} // extern "C"
