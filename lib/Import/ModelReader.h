//===- ModelReader.h - Reading ONNX model files -----------------*- C++ -*-===//

#ifndef BLPA_LIB_IMPORT_MODELREADER_H
#define BLPA_LIB_IMPORT_MODELREADER_H

#include "onnx/onnx_pb.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/MemoryBuffer.h"

#include <memory>
#include <string>

namespace mlir {
namespace blpa {

/// What readModel does with the values of float initializers stored in
/// external data files (every reference is checked either way; other
/// external tensors are always read in).
enum class ExternalWeights {
  /// Read into the tensors: the model is self-contained.
  Read,
  /// Left as references, for a caller that decides itself whether to read
  /// them.
  Keep,
};

/// The file at `path`, or null with a one-line reason starting with the
/// path in `error`.
std::unique_ptr<llvm::MemoryBuffer> readModelFile(llvm::StringRef path,
                                                  std::string &error);

/// Parses `bytes`, the contents of the binary (.onnx) or text (.onnxtext)
/// model file `path`, and reads its external data (relative to the model's
/// directory). The path is not opened: it names the model in errors, says
/// its format and locates its external data. Returns an empty string on
/// success, else a one-line reason starting with the path.
std::string readModel(llvm::StringRef path, llvm::StringRef bytes,
                      onnx::ModelProto &model,
                      ExternalWeights weights = ExternalWeights::Read);

} // namespace blpa
} // namespace mlir

#endif // BLPA_LIB_IMPORT_MODELREADER_H
