//===- Profile.h - The profiling hooks' bookkeeping -------------*- C++ -*-===//
//
// What blpa_profile_begin and blpa_profile_end do in both runtimes once the
// runtime has made the op's work visible to the host clock (the CUDA runtime
// synchronizes its stream first): read a monotonic clock, and add the
// interval to the op's entry.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_COMMON_PROFILE_H
#define BLPA_RUNTIME_COMMON_PROFILE_H

#include "blpa/Runtime/Runtime.h"

#include <chrono>

namespace blpa {

inline double profileClock() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

inline void profileBegin(blpa_profile *profile) {
  profile->started = profileClock();
}

inline void profileEnd(blpa_profile *profile, int64_t op) {
  double now = profileClock();
  if (op < 0 || op >= profile->num_ops)
    return;
  profile->seconds[op] += now - profile->started;
  if (profile->op_begin) {
    profile->op_begin[op] = profile->started;
    profile->op_end[op] = now;
  }
}

} // namespace blpa

#endif // BLPA_RUNTIME_COMMON_PROFILE_H
