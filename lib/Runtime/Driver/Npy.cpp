//===- Npy.cpp - NumPy .npy files -----------------------------------------===//

#include "Npy.h"
#include "Error.h"
#include "FileUtil.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace blpa::driver {

namespace {

const char npyMagic[] = "\x93NUMPY";
const size_t npyMagicSize = 6;

[[noreturn]] void failNpy(const std::string &flag, const std::string &path,
                          const std::string &what) {
  throw DriverError(flag + " " + path + ": " + what);
}

/// The text after `'key':` in the header dictionary, with spaces skipped.
size_t findHeaderValue(const std::string &header, const std::string &key,
                       const std::string &flag, const std::string &path) {
  size_t pos = header.find("'" + key + "'");
  if (pos == std::string::npos)
    failNpy(flag, path, "not a valid .npy file (no '" + key + "' in header)");
  pos = header.find(':', pos);
  if (pos == std::string::npos)
    failNpy(flag, path, "not a valid .npy file (bad header)");
  return header.find_first_not_of(' ', pos + 1);
}

void parseHeader(const std::string &header, NpyArray &array,
                 const std::string &flag) {
  const std::string &path = array.path;
  size_t pos = findHeaderValue(header, "descr", flag, path);
  size_t end = pos == std::string::npos ? pos : header.find('\'', pos + 1);
  if (end == std::string::npos || header[pos] != '\'')
    failNpy(flag, path, "not a valid .npy file (bad descr)");
  array.dtype = header.substr(pos + 1, end - pos - 1);

  pos = findHeaderValue(header, "fortran_order", flag, path);
  if (header.compare(pos, 4, "True") == 0)
    failNpy(flag, path,
            "is in Fortran order; save a C-ordered array "
            "(numpy.ascontiguousarray)");

  pos = findHeaderValue(header, "shape", flag, path);
  end = header.find(')', pos);
  if (pos == std::string::npos || header[pos] != '(' ||
      end == std::string::npos)
    failNpy(flag, path, "not a valid .npy file (bad shape)");
  const char *cursor = header.c_str() + pos + 1;
  const char *last = header.c_str() + end;
  while (cursor < last) {
    char *next = nullptr;
    long long dim = std::strtoll(cursor, &next, 10);
    if (next == cursor)
      break;
    if (dim < 0)
      failNpy(flag, path, "not a valid .npy file (negative dimension)");
    array.shape.push_back(dim);
    cursor = next;
    while (cursor < last && (*cursor == ',' || *cursor == ' '))
      ++cursor;
  }
}

size_t dtypeSize(const std::string &dtype) {
  if (dtype == "<f4" || dtype == "<i4")
    return 4;
  if (dtype == "<f8" || dtype == "<i8")
    return 8;
  return 0;
}

template <typename Result, typename Source>
std::vector<Result> convert(const std::string &bytes) {
  std::vector<Result> result(bytes.size() / sizeof(Source));
  for (size_t i = 0; i < result.size(); ++i) {
    Source value;
    std::memcpy(&value, bytes.data() + i * sizeof(Source), sizeof(Source));
    result[i] = static_cast<Result>(value);
  }
  return result;
}

std::string shapeTuple(const Shape &shape) {
  std::string text = "(";
  for (int64_t dim : shape)
    text += std::to_string(dim) + (shape.size() == 1 ? "," : ", ");
  if (shape.size() > 1)
    text.resize(text.size() - 2);
  return text + ")";
}

void writeNpyBytes(const std::string &path, const Shape &shape,
                   const std::string &dtype, const void *values,
                   size_t elementSize) {
  std::string header =
      "{'descr': '" + dtype +
      "', 'fortran_order': False, 'shape': " + shapeTuple(shape) + ", }";
  // numpy pads the header with spaces so that the data starts 64-aligned.
  size_t prefixSize = npyMagicSize + 2 + 2;
  size_t padded = (prefixSize + header.size() + 1 + 63) / 64 * 64;
  header.append(padded - prefixSize - header.size() - 1, ' ');
  header += '\n';
  std::string file(npyMagic, npyMagicSize);
  file += '\x01';
  file += '\x00';
  file += static_cast<char>(header.size() & 0xff);
  file += static_cast<char>(header.size() >> 8);
  file += header;
  file.append(static_cast<const char *>(values),
              numElements(shape) * elementSize);
  writeFileAtomically(path, file.data(), file.size());
}

/// Checks the magic number, header and size of the .npy file `file` of
/// `size` bytes, fills the array's dtype and shape, and returns where its
/// values start.
size_t parseNpyFile(const char *file, size_t size, NpyArray &array,
                    const std::string &flag) {
  const std::string &path = array.path;
  if (size < npyMagicSize + 4 ||
      std::string(file, npyMagicSize) != std::string(npyMagic, npyMagicSize))
    failNpy(flag, path, "not a .npy file (save it with numpy.save)");
  unsigned major = static_cast<unsigned char>(file[npyMagicSize]);
  size_t headerSizeBytes = major == 1 ? 2 : 4;
  size_t headerSize = 0;
  for (size_t i = 0; i < headerSizeBytes; ++i)
    headerSize |= size_t(static_cast<unsigned char>(file[8 + i])) << (8 * i);
  size_t dataStart = 8 + headerSizeBytes + headerSize;
  if (major < 1 || major > 3 || dataStart > size)
    failNpy(flag, path, "not a valid .npy file (bad header)");
  parseHeader(std::string(file + 8 + headerSizeBytes, headerSize), array, flag);

  size_t elementSize = dtypeSize(array.dtype);
  if (!elementSize)
    failNpy(flag, path,
            "has dtype '" + array.dtype +
                "'; use little-endian float32, float64, int32 or int64");
  size_t expectedBytes = numElements(array.shape) * elementSize;
  if (size - dataStart != expectedBytes)
    failNpy(flag, path,
            "holds " + std::to_string(size - dataStart) +
                " data bytes but shape " + formatShape(array.shape) +
                " needs " + std::to_string(expectedBytes));
  return dataStart;
}

} // namespace

NpyArray readNpy(const std::string &path, const std::string &flag) {
  NpyArray array;
  array.path = path;
  std::string file = readWholeFile(path, flag);
  size_t dataStart = parseNpyFile(file.data(), file.size(), array, flag);
  array.bytes = file.substr(dataStart);
  return array;
}

MappedNpy::MappedNpy(const std::string &path, const std::string &flag) {
  header.path = path;
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0)
    failNpy(flag, path, "cannot open: " + errnoMessage());
  struct stat info;
  if (fstat(fd, &info) != 0 || info.st_size == 0) {
    ::close(fd);
    failNpy(flag, path, "not a .npy file (empty or unreadable)");
  }
  size = size_t(info.st_size);
  base = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (base == MAP_FAILED)
    failNpy(flag, path, "cannot map: " + errnoMessage());
  data = static_cast<const char *>(base) +
         parseNpyFile(static_cast<const char *>(base), size, header, flag);
}

MappedNpy::~MappedNpy() { munmap(base, size); }

std::vector<float> npyToFloat32(const NpyArray &array) {
  if (array.dtype == "<f4")
    return convert<float, float>(array.bytes);
  if (array.dtype == "<f8")
    return convert<float, double>(array.bytes);
  if (array.dtype == "<i4")
    return convert<float, int32_t>(array.bytes);
  return convert<float, int64_t>(array.bytes);
}

std::vector<int64_t> npyToInt64(const NpyArray &array,
                                const std::string &flag) {
  if (array.dtype == "<i8")
    return convert<int64_t, int64_t>(array.bytes);
  if (array.dtype == "<i4")
    return convert<int64_t, int32_t>(array.bytes);
  failNpy(flag, array.path,
          "has dtype '" + array.dtype +
              "' but integer labels are needed; save int64 (or int32) "
              "values");
}

void checkNpyShape(const NpyArray &array, const Shape &expected,
                   const std::string &flag, const std::string &what) {
  if (array.shape != expected)
    failNpy(flag, array.path,
            "has shape " + formatShape(array.shape) + " but " + what +
                " needs shape " + formatShape(expected));
}

void writeNpy(const std::string &path, const Shape &shape,
              const float *values) {
  writeNpyBytes(path, shape, "<f4", values, sizeof(float));
}

void writeNpy(const std::string &path, const Shape &shape,
              const int64_t *values) {
  writeNpyBytes(path, shape, "<i8", values, sizeof(int64_t));
}

} // namespace blpa::driver
