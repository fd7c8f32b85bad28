//===- FileUtil.cpp - Files the blpa driver reads and writes --------------===//

#include "FileUtil.h"
#include "Error.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

namespace blpa::driver {

std::string errnoMessage() { return std::strerror(errno); }

void writeFileAtomically(const std::string &path, const void *data,
                         size_t size) {
  std::string tmpPath = path + ".tmp-" + std::to_string(getpid());
  FILE *file = std::fopen(tmpPath.c_str(), "wb");
  if (!file)
    throw DriverError("cannot write " + tmpPath + ": " + errnoMessage());
  bool ok = std::fwrite(data, 1, size, file) == size;
  std::string writeError = ok ? "" : errnoMessage();
  // fclose flushes, so its failure (e.g. a full disk) is a write failure too.
  if (std::fclose(file) != 0 && ok) {
    ok = false;
    writeError = errnoMessage();
  }
  if (!ok) {
    std::remove(tmpPath.c_str());
    throw DriverError("cannot write " + tmpPath + ": " + writeError);
  }
  if (std::rename(tmpPath.c_str(), path.c_str()) != 0) {
    std::string renameError = errnoMessage();
    std::remove(tmpPath.c_str());
    throw DriverError("cannot rename " + tmpPath + " to " + path + ": " +
                      renameError);
  }
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

} // namespace blpa::driver
