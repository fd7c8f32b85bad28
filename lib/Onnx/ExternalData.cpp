//===- ExternalData.cpp - ONNX tensors stored in side files ---------------===//

#include "blpa/Onnx/ExternalData.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace blpa::onnxdata {

std::string modelDirectory(const std::string &modelPath) {
  size_t slash = modelPath.rfind('/');
  if (slash == std::string::npos)
    return ".";
  return slash == 0 ? "/" : modelPath.substr(0, slash);
}

const std::string *findEntry(const onnx::TensorProto &tensor,
                             const std::string &key) {
  for (const onnx::StringStringEntryProto &entry : tensor.external_data())
    if (entry.key() == key)
      return &entry.value();
  return nullptr;
}

/// Bytes per element of ONNX data type `type`; 0 for STRING and UNDEFINED.
static uint64_t elementSize(int32_t type) {
  switch (type) {
  case onnx::TensorProto::BOOL:
  case onnx::TensorProto::INT8:
  case onnx::TensorProto::UINT8:
    return 1;
  case onnx::TensorProto::INT16:
  case onnx::TensorProto::UINT16:
  case onnx::TensorProto::FLOAT16:
  case onnx::TensorProto::BFLOAT16:
    return 2;
  case onnx::TensorProto::INT32:
  case onnx::TensorProto::UINT32:
  case onnx::TensorProto::FLOAT:
    return 4;
  case onnx::TensorProto::INT64:
  case onnx::TensorProto::UINT64:
  case onnx::TensorProto::DOUBLE:
  case onnx::TensorProto::COMPLEX64:
    return 8;
  case onnx::TensorProto::COMPLEX128:
    return 16;
  default:
    return 0;
  }
}

std::optional<uint64_t> tensorBytes(const onnx::TensorProto &tensor) {
  uint64_t bytes = elementSize(tensor.data_type());
  if (bytes == 0)
    return std::nullopt;
  for (int64_t dim : tensor.dims())
    if (dim < 0 ||
        __builtin_mul_overflow(bytes, static_cast<uint64_t>(dim), &bytes))
      return std::nullopt;
  return bytes;
}

static std::string formatShape(const onnx::TensorProto &tensor) {
  std::string text = "[";
  for (int i = 0; i < tensor.dims_size(); ++i)
    text += (i ? ", " : "") + std::to_string(tensor.dims(i));
  return text + "]";
}

static std::string typeName(const onnx::TensorProto &tensor) {
  return onnx::TensorProto::DataType_Name(
      static_cast<onnx::TensorProto::DataType>(tensor.data_type()));
}

/// "the tensor's shape [2, 3] and type FLOAT need 24 bytes", for messages.
static std::string need(const onnx::TensorProto &tensor, uint64_t bytes) {
  return "the tensor's shape " + formatShape(tensor) + " and type " +
         typeName(tensor) + " need " + std::to_string(bytes) + " bytes";
}

/// A non-negative decimal integer, as ONNX writes offsets and lengths (at
/// most 18 digits, which cannot overflow).
static bool parseCount(const std::string &text, uint64_t &value) {
  if (text.empty() || text.size() > 18)
    return false;
  value = 0;
  for (char c : text) {
    if (c < '0' || c > '9')
      return false;
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  return true;
}

static std::string quoted(const ExternalData &data) {
  return "'" + data.location + "'";
}

/// The offset and length entries, and the length the tensor's shape and
/// type need (the length, when the model gives none).
static std::string readEntries(const onnx::TensorProto &tensor,
                               ExternalData &data, bool &hasLength) {
  if (const std::string *offset = findEntry(tensor, "offset"))
    if (!parseCount(*offset, data.offset))
      return "external data " + quoted(data) + " has the offset '" + *offset +
             "', not a byte count; the model is corrupt";
  const std::string *length = findEntry(tensor, "length");
  hasLength = length != nullptr;
  if (hasLength && !parseCount(*length, data.length))
    return "external data " + quoted(data) + " has the length '" + *length +
           "', not a byte count; the model is corrupt";
  std::optional<uint64_t> expected = tensorBytes(tensor);
  if (!expected)
    return "external data " + quoted(data) + " holds a tensor of type " +
           typeName(tensor) + " and shape " + formatShape(tensor) +
           "; only numeric tensors of a valid shape are supported";
  if (hasLength && data.length != *expected)
    return "external data " + quoted(data) + " has the length " +
           std::to_string(data.length) + ", but " + need(tensor, *expected) +
           "; the model is corrupt";
  data.length = *expected;
  return "";
}

/// The location's syntax: relative and without `..`, before anything is
/// looked up.
static std::string checkLocation(const ExternalData &data) {
  const std::string &location = data.location;
  if (location.front() == '/')
    return "external data location " + quoted(data) +
           " is an absolute path; locations must be relative to the "
           "model's directory (save the model with a relative location)";
  for (size_t start = 0; start <= location.size();) {
    size_t end = std::min(location.find('/', start), location.size());
    if (location.compare(start, end - start, "..") == 0)
      return "external data location " + quoted(data) +
             " has a '..' component; the data file must be inside the "
             "model's directory";
    start = end + 1;
  }
  return "";
}

/// realpath(3) as a string; false with errno set on failure.
static bool realPath(const std::string &path, std::string &resolved) {
  char *result = ::realpath(path.c_str(), nullptr);
  if (!result)
    return false;
  resolved = result;
  std::free(result);
  return true;
}

/// Whether `path` is `dir` or below it (both resolved); the directory
/// itself is then refused as not a regular file.
static bool isInside(const std::string &dir, const std::string &path) {
  if (dir == "/" || path == dir)
    return true;
  return path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
         path[dir.size()] == '/';
}

/// Resolves the location under `modelDir` (following symlinks) into
/// `data.path` and its size into `fileSize`.
static std::string resolvePath(const std::string &modelDir, ExternalData &data,
                               uint64_t &fileSize) {
  std::string dir;
  if (!realPath(modelDir, dir))
    return "cannot resolve the model's directory '" + modelDir +
           "': " + std::strerror(errno);
  if (!realPath(dir + "/" + data.location, data.path))
    return "cannot open external data file " + quoted(data) + " in '" + dir +
           "': " + std::strerror(errno) +
           "; keep the data file in the model's directory";
  if (!isInside(dir, data.path))
    return "external data location " + quoted(data) + " resolves to '" +
           data.path + "', outside the model's directory '" + dir +
           "'; the data file must be inside the model's directory";
  struct stat info;
  if (::stat(data.path.c_str(), &info) != 0)
    return "cannot open external data file " + quoted(data) + ": " +
           std::strerror(errno);
  if (!S_ISREG(info.st_mode))
    return "external data location " + quoted(data) + " is not a regular file";
  fileSize = static_cast<uint64_t>(info.st_size);
  return "";
}

/// The bytes the reference names must lie inside the file; without a
/// length they run to its end, as in ONNX's own reader.
static std::string checkRange(const onnx::TensorProto &tensor,
                              const ExternalData &data, bool hasLength,
                              uint64_t fileSize) {
  if (data.offset > fileSize ||
      (hasLength && data.length > fileSize - data.offset))
    return "external data file " + quoted(data) + " has " +
           std::to_string(fileSize) + " bytes, fewer than offset " +
           std::to_string(data.offset) +
           (hasLength ? " + length " + std::to_string(data.length) : "") +
           "; the file is truncated or belongs to another model";
  if (hasLength || fileSize - data.offset == data.length)
    return "";
  return "external data file " + quoted(data) + " holds " +
         std::to_string(fileSize - data.offset) + " bytes from offset " +
         std::to_string(data.offset) + " to its end, but " +
         need(tensor, data.length) +
         "; give the length, or check that the file is this model's";
}

std::string resolveExternalData(const std::string &modelDir,
                                const onnx::TensorProto &tensor,
                                ExternalData &data) {
  data = ExternalData();
  const std::string *location = findEntry(tensor, "location");
  if (!location || location->empty())
    return "external data without a 'location' entry; the model is corrupt";
  data.location = *location;
  bool hasLength = false;
  uint64_t fileSize = 0;
  std::string error = readEntries(tensor, data, hasLength);
  if (error.empty())
    error = checkLocation(data);
  if (error.empty())
    error = resolvePath(modelDir, data, fileSize);
  if (!error.empty())
    return error;
  return checkRange(tensor, data, hasLength, fileSize);
}

std::string readExternalData(const ExternalData &data, void *dest) {
  int fd = ::open(data.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return "cannot open external data file " + quoted(data) + ": " +
           std::strerror(errno);
  char *out = static_cast<char *>(dest);
  std::string error;
  for (uint64_t done = 0; done < data.length && error.empty();) {
    // pread may return less than asked for; large reads go in pieces.
    size_t chunk = static_cast<size_t>(
        std::min<uint64_t>(data.length - done, uint64_t(1) << 30));
    ssize_t got =
        ::pread(fd, out + done, chunk, static_cast<off_t>(data.offset + done));
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0)
      error = std::strerror(errno);
    else if (got == 0)
      error = "the file ended early (was it changed while being read?)";
    else
      done += static_cast<uint64_t>(got);
  }
  ::close(fd);
  if (error.empty())
    return "";
  return "cannot read external data file " + quoted(data) + ": " + error;
}

std::string inlineExternalData(const std::string &modelDir,
                               onnx::TensorProto &tensor) {
  ExternalData data;
  std::string error = resolveExternalData(modelDir, tensor, data);
  if (!error.empty())
    return error;
  std::string values(data.length, '\0');
  error = readExternalData(data, values.data());
  if (!error.empty())
    return error;
  tensor.set_raw_data(std::move(values));
  tensor.clear_external_data();
  tensor.set_data_location(onnx::TensorProto::DEFAULT);
  return "";
}

void setExternalData(onnx::TensorProto &tensor, const std::string &location,
                     uint64_t offset, uint64_t length) {
  tensor.clear_raw_data();
  tensor.clear_float_data();
  tensor.clear_int32_data();
  tensor.clear_int64_data();
  tensor.clear_double_data();
  tensor.clear_uint64_data();
  tensor.clear_external_data();
  for (const auto &[key, value] :
       {std::pair<std::string, std::string>{"location", location},
        {"offset", std::to_string(offset)},
        {"length", std::to_string(length)}}) {
    onnx::StringStringEntryProto *entry = tensor.add_external_data();
    entry->set_key(key);
    entry->set_value(value);
  }
  tensor.set_data_location(onnx::TensorProto::EXTERNAL);
}

} // namespace blpa::onnxdata
