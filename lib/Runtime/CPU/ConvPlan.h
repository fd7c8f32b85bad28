//===- ConvPlan.h - Cached oneDNN convolution primitives -----------------===//
//
// A ConvPlan is one oneDNN convolution primitive (forward, backward-data or
// backward-weights) created with format_tag::any, so oneDNN picks its fast
// blocked layouts, plus the reorders between those layouts and the plain
// NCHW/OIHW (NCDHW/OIDHW) buffers of the C ABI. Reordered operands and the
// primitive's scratchpad live in the plan's workspace (ConvScratch), else
// in the runtime's shared ScratchPool.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_CPU_CONVPLAN_H
#define BLPA_RUNTIME_CPU_CONVPLAN_H

#include "CpuRuntime.h"

#include <vector>

namespace blpa {
namespace cpu {

/// Where one convolution call takes its scratch: consecutive 64-byte
/// aligned pieces of the plan's workspace, or, without a workspace it
/// fits, a ScratchPool slot per piece. Pieces taken after a mark are given
/// back by release (each chunk's reordered operands reuse the same bytes).
class ConvScratch {
public:
  ConvScratch(CpuRuntime &rt, bool inWorkspace)
      : rt(rt), inWorkspace(inWorkspace) {}

  /// The bytes a piece of `bytes` takes of the workspace.
  static size_t alignUp(size_t bytes) { return (bytes + 63) / 64 * 64; }

  void *take(size_t bytes);
  size_t mark() const { return used; }
  void release(size_t mark) { used = mark; }

private:
  CpuRuntime &rt;
  bool inWorkspace;
  /// Bytes of the workspace taken, or pool slots.
  size_t used = 0;
};

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

  /// Runs the primitive on caller buffers given in port order, its
  /// reordered operands and scratchpad taken from `scratch`.
  void run(CpuRuntime &rt, ConvScratch &scratch,
           const std::vector<const void *> &data);

  dnnl::primitive primitive;
  dnnl::memory::desc scratchpad;
  std::vector<Port> ports;
};

} // namespace cpu
} // namespace blpa

#endif // BLPA_RUNTIME_CPU_CONVPLAN_H
