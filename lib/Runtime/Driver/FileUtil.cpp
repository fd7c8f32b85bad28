//===- FileUtil.cpp - Files the blpa driver reads and writes --------------===//

#include "FileUtil.h"
#include "Error.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

namespace blpa::driver {

std::string errnoMessage() { return std::strerror(errno); }

AtomicFile::AtomicFile(std::string destination)
    : path(std::move(destination)),
      tmpPath(path + ".tmp-" + std::to_string(getpid())) {
  file = std::fopen(tmpPath.c_str(), "wb");
  if (!file)
    throw DriverError("cannot write " + tmpPath + ": " + errnoMessage());
}

AtomicFile::~AtomicFile() {
  if (file)
    std::fclose(file);
  if (!committed)
    std::remove(tmpPath.c_str());
}

void AtomicFile::fail(const std::string &error) {
  if (file)
    std::fclose(file);
  file = nullptr;
  throw DriverError("cannot write " + tmpPath + ": " + error);
}

void AtomicFile::write(const void *data, size_t size) {
  if (!file)
    fail("the file is already closed");
  if (std::fwrite(data, 1, size, file) != size)
    fail(errnoMessage());
  written += size;
}

void AtomicFile::pad(uint64_t alignment) {
  static const char zeros[4096] = {};
  while (written % alignment != 0)
    write(zeros, static_cast<size_t>(std::min<uint64_t>(
                     alignment - written % alignment, sizeof(zeros))));
}

void AtomicFile::close() {
  if (!file)
    return;
  // fclose flushes, so its failure (e.g. a full disk) is a write failure.
  int status = std::fclose(file);
  file = nullptr;
  if (status != 0)
    fail(errnoMessage());
}

void AtomicFile::commit() {
  close();
  if (std::rename(tmpPath.c_str(), path.c_str()) != 0)
    throw DriverError("cannot rename " + tmpPath + " to " + path + ": " +
                      errnoMessage());
  committed = true;
}

void writeFileAtomically(const std::string &path, const void *data,
                         size_t size) {
  AtomicFile file(path);
  file.write(data, size);
  file.commit();
}

std::string readWholeFile(const std::string &path, const std::string &flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw DriverError(flag + " " + path + ": cannot open: " + errnoMessage());
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad())
    throw DriverError(flag + " " + path + ": cannot read: " + errnoMessage());
  return content.str();
}

void makeDirectories(const std::string &path, const std::string &flag) {
  // Create every prefix ending before a '/' (a leading '/' is the root).
  size_t slash = 0;
  do {
    slash = path.find('/', slash + 1);
    std::string prefix = path.substr(0, slash);
    if (mkdir(prefix.c_str(), 0777) != 0 && errno != EEXIST)
      throw DriverError(flag + " " + path + ": cannot create " + prefix + ": " +
                        errnoMessage());
  } while (slash != std::string::npos);
  struct stat info;
  if (stat(path.c_str(), &info) != 0 || !S_ISDIR(info.st_mode))
    throw DriverError(flag + " " + path + ": exists and is not a directory");
}

void checkWritableDestination(const std::string &path,
                              const std::string &flag) {
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "."
                    : slash == 0               ? "/"
                                               : path.substr(0, slash);
  if (access(dir.c_str(), W_OK) != 0)
    throw DriverError(flag + " " + path + ": cannot write into " + dir + ": " +
                      errnoMessage());
}

std::string sanitizeFileName(const std::string &name) {
  std::string result = name;
  for (char &c : result) {
    bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                   (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!allowed)
      c = '_';
  }
  return result;
}

bool pathExists(const std::string &path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0;
}

} // namespace blpa::driver
