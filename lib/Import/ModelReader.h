//===- ModelReader.h - Reading ONNX model files -----------------*- C++ -*-===//

#ifndef BLPA_LIB_IMPORT_MODELREADER_H
#define BLPA_LIB_IMPORT_MODELREADER_H

#include "onnx/onnx_pb.h"
#include "llvm/ADT/StringRef.h"

#include <string>

namespace mlir {
namespace blpa {

/// Parses the binary (.onnx) or text (.onnxtext) model at `path`. Returns an
/// empty string on success, else a one-line reason starting with the path.
std::string readModel(llvm::StringRef path, onnx::ModelProto &model);

} // namespace blpa
} // namespace mlir

#endif // BLPA_LIB_IMPORT_MODELREADER_H
