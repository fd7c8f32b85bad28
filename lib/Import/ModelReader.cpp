//===- ModelReader.cpp - Reading ONNX model files -------------------------===//

#include "ModelReader.h"
#include "Importer.h"

#include "blpa/Import/OnnxImporter.h"

#include "mlir/IR/Diagnostics.h"
#include "onnx/defs/parser.h"
#include "llvm/Support/MemoryBuffer.h"

using namespace mlir;
using namespace mlir::blpa;

static std::string parseText(llvm::StringRef path, const std::string &text,
                             onnx::ModelProto &model) {
  onnx::Common::Status status = onnx::OnnxParser::Parse(model, text.c_str());
  if (!status.IsOK()) {
    // The parser's message spans lines; a diagnostic is one line.
    return (path + ": cannot parse ONNX model: " + status.ErrorMessage()).str();
  }
  return "";
}

static std::string parseBinary(llvm::StringRef path, llvm::StringRef bytes,
                               onnx::ModelProto &model) {
  if (bytes.size() > static_cast<size_t>(INT_MAX))
    return (path + ": model larger than 2 GiB; external data is not "
                   "supported")
        .str();
  // A file cut short can still be a valid protobuf message; the opset
  // declaration is serialized after the graph, so it being missing means
  // the tail was lost.
  if (!model.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())) ||
      !model.has_graph() || model.opset_import_size() == 0)
    return (path + ": cannot parse ONNX model: the file is not a valid "
                   "ModelProto (truncated or not ONNX?)")
        .str();
  return "";
}

std::string mlir::blpa::readModel(llvm::StringRef path,
                                  onnx::ModelProto &model) {
  auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/false,
                                            /*RequiresNullTerminator=*/true);
  if (!buffer)
    return (path + ": " + buffer.getError().message()).str();
  llvm::StringRef bytes = (*buffer)->getBuffer();
  // Protobuf and ONNX's parser report most problems by status, but may
  // throw on malformed input; neither may escape into the compiler.
  try {
    if (path.ends_with(".onnxtext"))
      return parseText(path, bytes.str(), model);
    return parseBinary(path, bytes, model);
  } catch (const std::exception &e) {
    return (path + ": cannot parse ONNX model: " + e.what()).str();
  } catch (...) {
    return (path + ": cannot parse ONNX model: unknown exception").str();
  }
}

/// The binary model: the .onnx file's own bytes (checked to parse), or the
/// text model serialized; without `withWeights`, with every float
/// initializer's values dropped (names, shapes and types stay).
static std::string serializeModel(llvm::StringRef path, bool withWeights,
                                  std::string &bytes) {
  onnx::ModelProto model;
  std::string error = readModel(path, model);
  if (!error.empty())
    return error;
  if (!withWeights)
    for (onnx::TensorProto &tensor :
         *model.mutable_graph()->mutable_initializer())
      if (tensor.data_type() == onnx::TensorProto::FLOAT) {
        tensor.clear_raw_data();
        tensor.clear_float_data();
      }
  if (withWeights && !path.ends_with(".onnxtext")) {
    auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/false,
                                              /*RequiresNullTerminator=*/false);
    if (!buffer)
      return (path + ": " + buffer.getError().message()).str();
    bytes = (*buffer)->getBuffer().str();
    return "";
  }
  if (!model.SerializeToString(&bytes))
    return (path + ": cannot serialize the model").str();
  return "";
}

FailureOr<std::string> mlir::blpa::readSerializedModel(MLIRContext *context,
                                                       llvm::StringRef path,
                                                       bool withWeights) {
  std::string bytes, error;
  try {
    error = serializeModel(path, withWeights, bytes);
  } catch (...) {
    error = (path + ": cannot serialize the model").str();
  }
  if (!error.empty())
    return emitError(FileLineColLoc::get(context, path, 0, 0),
                     onnximport::oneLine(error));
  return bytes;
}
