//===- ConvPlan.h - Cached oneDNN convolution primitives -----------------===//
//
// A ConvPlan is one oneDNN convolution primitive (forward, backward-data or
// backward-weights) created with format_tag::any, so oneDNN picks its fast
// blocked layouts, plus the reorders between those layouts and the plain
// NCHW/OIHW (NCDHW/OIDHW) buffers of the C ABI. Reordered operands and the
// primitive's scratchpad live in the runtime's shared ScratchPool.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_CPU_CONVPLAN_H
#define BLPA_RUNTIME_CPU_CONVPLAN_H

#include "CpuRuntime.h"

#include <vector>

namespace blpa {
namespace cpu {

/// The ScratchPool slot a chunked backward-weights convolution sums its
/// chunks' gradients from; ConvPlan::run uses the slots below it.
constexpr unsigned kWeightGradSlot = 8;

struct ConvPlan {
  /// One operand of the primitive as the caller sees it.
  struct Port {
    int arg;                  // DNNL_ARG_*
    dnnl::memory::desc user;  // layout of the caller's buffer
    dnnl::memory::desc inner; // layout the primitive wants
    bool isOutput;
    dnnl::reorder reorder; // empty when user == inner
  };

  void addPort(const dnnl::engine &engine, int arg,
               const dnnl::memory::desc &user, const dnnl::memory::desc &inner,
               bool isOutput);

  /// Runs the primitive on caller buffers given in port order.
  void run(CpuRuntime &rt, const std::vector<const void *> &data);

  dnnl::primitive primitive;
  dnnl::memory::desc scratchpad;
  std::vector<Port> ports;
};

} // namespace cpu
} // namespace blpa

#endif // BLPA_RUNTIME_CPU_CONVPLAN_H
