//===- ExternalData.h - ONNX tensors stored in side files -------*- C++ -*-===//
//
// Models over 2 GiB (protobuf's limit) keep their initializers' values in
// files beside the .onnx: the tensor's data_location is EXTERNAL and its
// `external_data` entries give `location` (relative to the model file's
// directory), `offset`, `length` and `checksum`. blpa-opt (lib/Import) and
// the executables' driver (lib/Runtime/Driver) both read them through this
// file, which is plain C++17 because the driver has no LLVM; it throws
// nothing, each caller reports the returned reason its own way.
//
// A location is trusted no further than the model's directory: an absolute
// path, a `..` component or a symlink leading out of it is refused, so that
// a model from elsewhere cannot make the tools read arbitrary files.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_ONNX_EXTERNALDATA_H
#define BLPA_ONNX_EXTERNALDATA_H

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <optional>
#include <string>

namespace blpa::onnxdata {

/// A tensor's external data reference, checked against the file system.
struct ExternalData {
  /// The location as the model writes it.
  std::string location;
  /// The file it names, symlinks resolved.
  std::string path;
  uint64_t offset = 0;
  uint64_t length = 0;
};

/// Whether `tensor` keeps its values in an external file.
inline bool isExternal(const onnx::TensorProto &tensor) {
  return tensor.data_location() == onnx::TensorProto::EXTERNAL;
}

/// The directory of the model file `modelPath`: its external data locations
/// are relative to it.
std::string modelDirectory(const std::string &modelPath);

/// The value of `tensor`'s external data entry `key`, or null.
const std::string *findEntry(const onnx::TensorProto &tensor,
                             const std::string &key);

/// The size of `tensor`'s values as its shape and type say, or nullopt for
/// an invalid shape or a type without a fixed size (STRING).
std::optional<uint64_t> tensorBytes(const onnx::TensorProto &tensor);

/// Checks `tensor`'s external data reference against the files under
/// `modelDir`: a relative location without `..` that resolves (symlinks
/// followed) to a regular file inside the directory, an offset and length
/// inside that file, and a length that matches the tensor's shape and type
/// (the checksum is not verified, as ONNX itself does not). Returns "" and
/// fills `data`, or the reason: "external data ...; what to do".
std::string resolveExternalData(const std::string &modelDir,
                                const onnx::TensorProto &tensor,
                                ExternalData &data);

/// Reads the `data.length` bytes `data` names into `dest`; returns "" or the
/// reason.
std::string readExternalData(const ExternalData &data, void *dest);

/// Resolves `tensor`'s external data and reads it into raw_data: the tensor
/// then refers to no file. Returns "" or the reason.
std::string inlineExternalData(const std::string &modelDir,
                               onnx::TensorProto &tensor);

/// Makes `tensor` refer to `length` bytes at `offset` of the file at
/// `location` (relative to the model's directory), dropping its values.
void setExternalData(onnx::TensorProto &tensor, const std::string &location,
                     uint64_t offset, uint64_t length);

} // namespace blpa::onnxdata

#endif // BLPA_ONNX_EXTERNALDATA_H
