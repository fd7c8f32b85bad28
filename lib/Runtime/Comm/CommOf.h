//===- CommOf.h - What both all-reduce libraries share ----------*- C++ -*-===//

#ifndef BLPA_RUNTIME_COMM_COMMOF_H
#define BLPA_RUNTIME_COMM_COMMOF_H

#include "blpa/Runtime/Runtime.h"

namespace blpa::comm {

/// The comm the driver joined for `ctx`; fails in one line when there is
/// none (an executable whose driver skipped joinReplicas).
inline blpa_comm *commOf(blpa_context *ctx) {
  if (!ctx->comm)
    blpa_runtime_fail("a gradient all-reduce: the executable was compiled "
                      "with --data-parallel but no comm was set up");
  return ctx->comm;
}

} // namespace blpa::comm

#endif // BLPA_RUNTIME_COMM_COMMOF_H
