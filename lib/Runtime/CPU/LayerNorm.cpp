//===- LayerNorm.cpp - Layer normalization and its gradient ---------------===//
//
// Rows are independent: each parallel index normalizes (or differentiates)
// a block of whole rows, its sums in LaneSum's fixed lanes, so the results
// do not depend on the thread count. The gradient's column sums (dscale,
// dbias) run over column blocks, each column summing its rows in row order
// in double, as the CUDA runtime does; they are done before dx is written,
// which may overwrite dy.
//
//===----------------------------------------------------------------------===//

#include "CpuRuntime.h"
#include "LaneSum.h"

#include "../Common/LayerNormMath.h"

using namespace blpa;
using namespace blpa::cpu;

namespace {

/// Rows per parallel index: about elementBlock elements.
int64_t rowsPerBlock(int64_t cols) {
  return std::max<int64_t>(1, elementBlock / std::max<int64_t>(cols, 1));
}

/// Calls body(row) for every row, in blocks of whole rows.
template <typename Body>
void forEachRow(int64_t rows, int64_t cols, Body &&body) {
  int64_t per = rowsPerBlock(cols);
  parallelFor((rows + per - 1) / per, [&](int64_t blk) {
    for (int64_t r = blk * per, end = std::min(rows, r + per); r < end; ++r)
      body(r);
  });
}

/// False when there is nothing to do; fails on a negative shape.
bool checkLayerNormShape(const char *kernel, int64_t rows, int64_t cols) {
  if (rows < 0 || cols < 0)
    failf("%s: negative shape [%lld, %lld]", kernel, (long long)rows,
          (long long)cols);
  return rows > 0 && cols > 0;
}

/// Columns per parallel index of the column sums.
constexpr int64_t columnBlock = 64;

/// dscale[j] = sum_r dy[r, j] * xhat[r, j] and dbias[j] = sum_r dy[r, j],
/// each in double in row order.
void columnSums(const float *dy, const float *x, const float *mean,
                const float *invStd, float *dscale, float *dbias, int64_t rows,
                int64_t cols) {
  int64_t blocks = (cols + columnBlock - 1) / columnBlock;
  parallelFor(blocks, [&](int64_t blk) {
    int64_t begin = blk * columnBlock;
    int64_t width = std::min(cols, begin + columnBlock) - begin;
    double scaleAcc[columnBlock] = {}, biasAcc[columnBlock] = {};
    for (int64_t r = 0; r < rows; ++r) {
      RowStats s{mean[r], invStd[r]};
      const float *g = dy + r * cols + begin, *in = x + r * cols + begin;
      for (int64_t j = 0; j < width; ++j) {
        scaleAcc[j] += double(g[j]) * double(layerNormXhat(in[j], s));
        biasAcc[j] += double(g[j]);
      }
    }
    for (int64_t j = 0; j < width; ++j) {
      dscale[begin + j] = float(scaleAcc[j]);
      if (dbias)
        dbias[begin + j] = float(biasAcc[j]);
    }
  });
}

} // namespace

extern "C" {

void blpa_layer_norm(blpa_context *, const float *x, const float *scale,
                     const float *bias, float *y, float *mean, float *invStd,
                     int64_t rows, int64_t cols, double epsilon) {
  if (!checkLayerNormShape("blpa_layer_norm", rows, cols))
    return;
  forEachRow(rows, cols, [&](int64_t r) {
    const float *in = x + r * cols;
    double m = rowMean(sliceSum(in, cols), cols);
    double squares =
        laneSum(cols, [&](int64_t j) { return squaredDeviation(in[j], m); });
    RowStats s = rowStats(m, squares, cols, epsilon);
    mean[r] = s.mean;
    invStd[r] = s.invStd;
    float *out = y + r * cols;
    for (int64_t j = 0; j < cols; ++j)
      out[j] = layerNormValue(layerNormXhat(in[j], s), scale[j], bias, j);
  });
}

void blpa_layer_norm_grad(blpa_context *, const float *dy, const float *x,
                          const float *scale, const float *mean,
                          const float *invStd, float *dx, float *dscale,
                          float *dbias, int64_t rows, int64_t cols) {
  if (!checkLayerNormShape("blpa_layer_norm_grad", rows, cols))
    return;
  columnSums(dy, x, mean, invStd, dscale, dbias, rows, cols);
  forEachRow(rows, cols, [&](int64_t r) {
    RowStats s{mean[r], invStd[r]};
    const float *g = dy + r * cols, *in = x + r * cols;
    double sumG, sumGX;
    laneSum2(cols, sumG, sumGX, [&](int64_t j, double &t0, double &t1) {
      float gj = g[j] * scale[j];
      t0 = double(gj);
      t1 = double(gj) * double(layerNormXhat(in[j], s));
    });
    RowGradMeans m = rowGradMeans(sumG, sumGX, cols);
    float *out = dx + r * cols;
    for (int64_t j = 0; j < cols; ++j)
      out[j] = layerNormGradValue(g[j] * scale[j], layerNormXhat(in[j], s), m,
                                  s.invStd);
  });
}

} // extern "C"
