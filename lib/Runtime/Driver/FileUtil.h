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
#include <cstdint>
#include <cstdio>
#include <string>

namespace blpa::driver {

/// A file written as `PATH.tmp-<pid>` and renamed to PATH by commit(); one
/// destroyed before that (an error on the way) removes its temporary.
class AtomicFile {
public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile &) = delete;
  AtomicFile &operator=(const AtomicFile &) = delete;

  void write(const void *data, size_t size);
  /// Writes zeros up to the next multiple of `alignment` bytes.
  void pad(uint64_t alignment);
  /// The bytes written so far: the offset of the next write.
  uint64_t size() const { return written; }
  /// Flushes and closes the temporary, so that a full disk fails here, and
  /// files written together can all be checked before any is renamed.
  void close();
  /// Renames the temporary into place (closing it first if needed).
  void commit();

private:
  [[noreturn]] void fail(const std::string &error);

  std::string path;
  std::string tmpPath;
  FILE *file = nullptr;
  uint64_t written = 0;
  bool committed = false;
};

/// Writes `size` bytes to `path` through an AtomicFile.
void writeFileAtomically(const std::string &path, const void *data,
                         size_t size);

/// The whole content of `path`; `flag` names the option it came from.
std::string readWholeFile(const std::string &path, const std::string &flag);

/// Whether anything exists at `path`.
bool pathExists(const std::string &path);

/// mkdir -p.
void makeDirectories(const std::string &path, const std::string &flag);

/// Throws unless the directory that will hold `path` exists and is
/// writable, so that a run does not train for an hour and then fail to save.
void checkWritableDestination(const std::string &path, const std::string &flag);

/// `name` with every character outside [A-Za-z0-9._-] replaced by '_'.
std::string sanitizeFileName(const std::string &name);

} // namespace blpa::driver

#endif // BLPA_RUNTIME_DRIVER_FILEUTIL_H
