//===- FileUtil.h - Files the blpa driver reads and writes ------*- C++ -*-===//
//
// Every file the driver produces is written next to its destination under a
// temporary name and renamed into place, so a crash or a full disk never
// leaves a half-written model or dump behind.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_DRIVER_FILEUTIL_H
#define BLPA_RUNTIME_DRIVER_FILEUTIL_H

#include <cstddef>
#include <string>

namespace blpa::driver {

/// Writes `size` bytes to `path` via `path.tmp-<pid>` and rename().
void writeFileAtomically(const std::string &path, const void *data,
                         size_t size);

/// The whole content of `path`; `flag` names the option it came from.
std::string readWholeFile(const std::string &path, const std::string &flag);

/// mkdir -p.
void makeDirectories(const std::string &path, const std::string &flag);

/// Throws unless the directory that will hold `path` exists and is
/// writable, so that a run does not train for an hour and then fail to save.
void checkWritableDestination(const std::string &path, const std::string &flag);

/// `name` with every character outside [A-Za-z0-9._-] replaced by '_'.
std::string sanitizeFileName(const std::string &name);

} // namespace blpa::driver

#endif // BLPA_RUNTIME_DRIVER_FILEUTIL_H
