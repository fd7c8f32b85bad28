//===- MemoryCheck.cpp - Will the compiled plan fit in this machine? ------===//

#include "MemoryCheck.h"
#include "Error.h"

#include "blpa/Runtime/Runtime.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace blpa::driver {

namespace {

uint64_t floatBytes(const Shape &shape) {
  return uint64_t(numElements(shape)) * sizeof(float);
}

/// The first number in the file at `path` ("max" and unreadable files give
/// none).
std::optional<uint64_t> readNumber(const std::string &path) {
  std::ifstream in(path);
  uint64_t value;
  if (in >> value)
    return value;
  return std::nullopt;
}

/// MemAvailable from /proc/meminfo, in bytes.
std::optional<uint64_t> memAvailable() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kib;
  while (in >> key >> kib) {
    if (key == "MemAvailable:")
      return kib * 1024;
    in.ignore(1 << 10, '\n');
  }
  return std::nullopt;
}

/// Room left under this process's cgroup memory limit (v2, then v1).
std::optional<uint64_t> cgroupRoom() {
  const char *files[][2] = {
      {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"},
      {"/sys/fs/cgroup/memory/memory.limit_in_bytes",
       "/sys/fs/cgroup/memory/memory.usage_in_bytes"}};
  for (auto &[limitFile, usageFile] : files) {
    std::optional<uint64_t> limit = readNumber(limitFile),
                            usage = readNumber(usageFile);
    if (limit && usage)
      return *limit > *usage ? *limit - *usage : 0;
  }
  return std::nullopt;
}

} // namespace

PlannedMemory plannedMemory(const Manifest &manifest) {
  PlannedMemory planned;
  planned.arena = manifest.arenaBytes;
  for (const ParamRecord &param : manifest.params)
    planned.persistent += floatBytes(param.shape) *
                          (param.trainable && manifest.training ? 3 : 1);
  for (const TensorRecord &input : manifest.inputs)
    planned.batch += input.bytes();
  for (const TensorRecord &output : manifest.outputs)
    planned.batch += floatBytes(output.shape);
  planned.batch += uint64_t(manifest.labelCount()) * sizeof(int64_t);
  return planned;
}

std::optional<uint64_t> availableMemory() {
  std::optional<uint64_t> available = memAvailable(), room = cgroupRoom();
  if (available && room)
    return std::min(*available, *room);
  return available ? available : room;
}

std::string formatBytes(uint64_t bytes) {
  const char *units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double value = double(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 5) {
    value /= 1024;
    ++unit;
  }
  char text[48];
  std::snprintf(text, sizeof(text), unit ? "%.2f %s" : "%.0f %s", value,
                units[unit]);
  return text;
}

void checkPlanFits(const Manifest &manifest) {
  // A device runtime (CUDA) holds the whole plan in device memory.
  int64_t deviceFree = blpa_runtime_free_bytes();
  std::optional<uint64_t> available =
      deviceFree >= 0 ? std::optional<uint64_t>(deviceFree) : availableMemory();
  PlannedMemory planned = plannedMemory(manifest);
  if (!available || planned.total() <= *available)
    return;
  std::ostringstream message;
  message << "the compiled plan needs " << planned.total() << " bytes ("
          << formatBytes(planned.total()) << ": arena "
          << formatBytes(planned.arena) << ", parameters and optimizer state "
          << formatBytes(planned.persistent) << ", batch buffers "
          << formatBytes(planned.batch) << ") but " << *available << " bytes ("
          << formatBytes(*available) << ") are "
          << (deviceFree >= 0 ? "free on the GPU" : "available")
          << "; recompile with a smaller --batch-size or "
             "--act-bits (blpa-opt --memory-limit says what fits)";
  throw DriverError(message.str());
}

} // namespace blpa::driver
