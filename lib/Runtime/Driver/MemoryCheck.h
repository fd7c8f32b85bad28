//===- MemoryCheck.h - Will the compiled plan fit in this machine? -*- C++
//-*-===//
//
// An executable allocates everything once at start: the arena blpa-opt
// planned, the parameters with their gradient and momentum buffers, and the
// batch buffers. Before allocating, it compares that total with the memory
// the machine (or its cgroup) has available and refuses with both numbers,
// rather than being killed by the kernel halfway through the first step.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_DRIVER_MEMORYCHECK_H
#define BLPA_RUNTIME_DRIVER_MEMORYCHECK_H

#include "Manifest.h"

#include <cstdint>
#include <optional>
#include <string>

namespace blpa::driver {

/// Bytes the executable allocates at start for `manifest`'s plan.
struct PlannedMemory {
  uint64_t arena = 0;
  /// Parameters and state, and in a training executable the gradient and
  /// momentum buffers of the trainable parameters.
  uint64_t persistent = 0;
  /// One batch of data inputs, labels and outputs.
  uint64_t batch = 0;
  uint64_t total() const { return arena + persistent + batch; }
};

PlannedMemory plannedMemory(const Manifest &manifest);

/// Bytes this process can still allocate: /proc/meminfo's MemAvailable,
/// lowered to the room left under a cgroup (v2 or v1) memory limit; none
/// when neither can be read.
std::optional<uint64_t> availableMemory();

/// "1.50 GiB", "512 bytes".
std::string formatBytes(uint64_t bytes);

/// Throws DriverError with what the plan needs and what is available when
/// the plan does not fit.
void checkPlanFits(const Manifest &manifest);

} // namespace blpa::driver

#endif // BLPA_RUNTIME_DRIVER_MEMORYCHECK_H
