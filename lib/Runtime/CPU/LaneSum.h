//===- LaneSum.h - Deterministic double-precision slice sums -------------===//
//
// Sums over one contiguous slice of floats, accumulated in double in a fixed
// number of lanes (lane l takes elements l, l+8, ...; the lanes are combined
// in order). The order depends only on the slice length, never on threads,
// and the independent lanes let the compiler vectorize the loop without
// reassociating anything.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_CPU_LANESUM_H
#define BLPA_RUNTIME_CPU_LANESUM_H

#include <cstdint>

namespace blpa {
namespace cpu {

constexpr int sumLanes = 8;

/// Returns sum over i < len of term(i), with term(i) a double.
template <typename Term> double laneSum(int64_t len, Term &&term) {
  double acc[sumLanes] = {};
  int64_t i = 0;
  for (; i + sumLanes <= len; i += sumLanes)
    for (int l = 0; l < sumLanes; ++l)
      acc[l] += term(i + l);
  for (int l = 0; i < len; ++i, ++l)
    acc[l] += term(i);
  double total = 0;
  for (int l = 0; l < sumLanes; ++l)
    total += acc[l];
  return total;
}

/// Two sums in one pass over the slice (e.g. sum and sum of squares).
template <typename Terms>
void laneSum2(int64_t len, double &sum0, double &sum1, Terms &&terms) {
  double acc0[sumLanes] = {}, acc1[sumLanes] = {};
  auto add = [&](int64_t i, int l) {
    double t0, t1;
    terms(i, t0, t1);
    acc0[l] += t0;
    acc1[l] += t1;
  };
  int64_t i = 0;
  for (; i + sumLanes <= len; i += sumLanes)
    for (int l = 0; l < sumLanes; ++l)
      add(i + l, l);
  for (int l = 0; i < len; ++i, ++l)
    add(i, l);
  sum0 = sum1 = 0;
  for (int l = 0; l < sumLanes; ++l) {
    sum0 += acc0[l];
    sum1 += acc1[l];
  }
}

inline double sliceSum(const float *x, int64_t len) {
  return laneSum(len, [x](int64_t i) { return double(x[i]); });
}

} // namespace cpu
} // namespace blpa

#endif // BLPA_RUNTIME_CPU_LANESUM_H
