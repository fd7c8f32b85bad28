//===- ModelReader.h - Reading ONNX model files -----------------*- C++ -*-===//

#ifndef BLPA_LIB_IMPORT_MODELREADER_H
#define BLPA_LIB_IMPORT_MODELREADER_H

#include "onnx/onnx_pb.h"
#include "llvm/ADT/StringRef.h"

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

/// Parses the binary (.onnx) or text (.onnxtext) model at `path` and reads
/// its external data (relative to the model's directory). Returns an empty
/// string on success, else a one-line reason starting with the path.
std::string readModel(llvm::StringRef path, onnx::ModelProto &model,
                      ExternalWeights weights = ExternalWeights::Read);

} // namespace blpa
} // namespace mlir

#endif // BLPA_LIB_IMPORT_MODELREADER_H
