//===- ModelReader.cpp - Reading ONNX model files -------------------------===//

#include "ModelReader.h"
#include "Importer.h"

#include "blpa/Import/OnnxImporter.h"
#include "blpa/Onnx/ExternalData.h"

#include "mlir/IR/Diagnostics.h"
#include "onnx/defs/parser.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/MemoryBuffer.h"

using namespace mlir;
using namespace mlir::blpa;

namespace onnxdata = ::blpa::onnxdata;

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
    return (path + ": the model file is over 2 GiB, more than protobuf can "
                   "read; save it with external data (onnx.save_model(..., "
                   "save_as_external_data=True))")
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

namespace {
/// Reads the external data of one model's tensors (or, for weights it is
/// told to keep, only checks their references), relative to the model's
/// directory, so that whoever reads the model next (the importer, the model
/// blpa-opt embeds) sees values, never files.
class ExternalDataReader {
public:
  ExternalDataReader(llvm::StringRef path, ExternalWeights weights)
      : path(path), dir(onnxdata::modelDirectory(path.str())),
        weights(weights) {}

  /// The graph's initializers and its nodes' tensor attributes. Subgraphs
  /// are left alone: the importer rejects the ops that have them.
  std::string readGraph(onnx::GraphProto &graph);
  /// Whether some tensor referred to an external file.
  bool foundAny() const { return found; }

private:
  std::string readTensor(onnx::TensorProto &tensor, bool keep,
                         const std::string &what);
  std::string readAttribute(onnx::AttributeProto &attr,
                            const std::string &what);

  llvm::StringRef path;
  std::string dir;
  ExternalWeights weights;
  bool found = false;
};
} // namespace

/// `what` names the tensor in the error.
std::string ExternalDataReader::readTensor(onnx::TensorProto &tensor, bool keep,
                                           const std::string &what) {
  if (!onnxdata::isExternal(tensor))
    return "";
  found = true;
  onnxdata::ExternalData data;
  std::string error = keep ? onnxdata::resolveExternalData(dir, tensor, data)
                           : onnxdata::inlineExternalData(dir, tensor);
  if (error.empty())
    return "";
  return (path + ": " + what + ": " + error).str();
}

std::string ExternalDataReader::readAttribute(onnx::AttributeProto &attr,
                                              const std::string &what) {
  std::string error;
  if (attr.has_t())
    error = readTensor(*attr.mutable_t(), /*keep=*/false, what);
  for (onnx::TensorProto &tensor : *attr.mutable_tensors())
    if (error.empty())
      error = readTensor(tensor, /*keep=*/false, what);
  return error;
}

std::string ExternalDataReader::readGraph(onnx::GraphProto &graph) {
  for (onnx::TensorProto &tensor : *graph.mutable_initializer()) {
    bool keep = weights == ExternalWeights::Keep &&
                tensor.data_type() == onnx::TensorProto::FLOAT;
    std::string error =
        readTensor(tensor, keep, "initializer '" + tensor.name() + "'");
    if (!error.empty())
      return error;
  }
  for (auto [index, node] : llvm::enumerate(*graph.mutable_node()))
    for (onnx::AttributeProto &attr : *node.mutable_attribute()) {
      std::string what = "node '" + onnximport::nodeName(node, index) + "' (" +
                         node.op_type() + ") attribute '" + attr.name() + "'";
      std::string error = readAttribute(attr, what);
      if (!error.empty())
        return error;
    }
  return "";
}

static std::string parseBytes(llvm::StringRef path, llvm::StringRef bytes,
                              onnx::ModelProto &model) {
  if (path.ends_with(".onnxtext"))
    return parseText(path, bytes.str(), model);
  return parseBinary(path, bytes, model);
}

static std::string readModelWith(llvm::StringRef path, llvm::StringRef bytes,
                                 onnx::ModelProto &model,
                                 ExternalDataReader &reader) {
  // Protobuf and ONNX's parser report most problems by status, but may
  // throw on malformed input; neither may escape into the compiler.
  try {
    std::string error = parseBytes(path, bytes, model);
    if (!error.empty())
      return error;
    return reader.readGraph(*model.mutable_graph());
  } catch (const std::exception &e) {
    return (path + ": cannot parse ONNX model: " + e.what()).str();
  } catch (...) {
    return (path + ": cannot parse ONNX model: unknown exception").str();
  }
}

std::unique_ptr<llvm::MemoryBuffer>
mlir::blpa::readModelFile(llvm::StringRef path, std::string &error) {
  auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/false,
                                            /*RequiresNullTerminator=*/false);
  if (!buffer) {
    error = (path + ": " + buffer.getError().message()).str();
    return nullptr;
  }
  return std::move(*buffer);
}

std::string mlir::blpa::readModel(llvm::StringRef path, llvm::StringRef bytes,
                                  onnx::ModelProto &model,
                                  ExternalWeights weights) {
  ExternalDataReader reader(path, weights);
  return readModelWith(path, bytes, model, reader);
}

static bool hasExternalWeights(const onnx::ModelProto &model) {
  return llvm::any_of(model.graph().initializer(), onnxdata::isExternal);
}

/// Whether the model stays under protobuf's 2 GiB limit once the values its
/// initializers keep in external files are read in (with room for each
/// tensor's field header).
static bool fitsInline(const onnx::ModelProto &model) {
  uint64_t bytes = model.ByteSizeLong();
  for (const onnx::TensorProto &tensor : model.graph().initializer())
    if (onnxdata::isExternal(tensor))
      bytes += onnxdata::tensorBytes(tensor).value_or(0) + 16;
  return bytes <= static_cast<uint64_t>(INT_MAX);
}

/// Drops every float initializer's values, inline or external (names,
/// shapes and types stay).
static void dropWeights(onnx::ModelProto &model) {
  for (onnx::TensorProto &tensor :
       *model.mutable_graph()->mutable_initializer())
    if (tensor.data_type() == onnx::TensorProto::FLOAT) {
      tensor.clear_raw_data();
      tensor.clear_float_data();
      tensor.clear_external_data();
      tensor.clear_data_location();
    }
}

/// The binary model: the .onnx file's own bytes (checked to parse), or the
/// model serialized: a text model, or one whose external data is read in.
/// Without `withWeights`, every float initializer's values are dropped. A
/// model whose weights are external and too large to embed keeps their
/// references, and `weightsLeftOut` is set: the executable then needs
/// --weights, and says so.
static std::string serializeModel(llvm::StringRef path,
                                  llvm::StringRef fileBytes, bool withWeights,
                                  std::string &bytes, bool &weightsLeftOut) {
  onnx::ModelProto model;
  ExternalDataReader reader(path, ExternalWeights::Keep);
  std::string error = readModelWith(path, fileBytes, model, reader);
  if (!error.empty())
    return error;
  bool externalWeights = hasExternalWeights(model);
  weightsLeftOut = withWeights && externalWeights && !fitsInline(model);
  if (!withWeights)
    dropWeights(model);
  else if (externalWeights && !weightsLeftOut)
    error = ExternalDataReader(path, ExternalWeights::Read)
                .readGraph(*model.mutable_graph());
  if (!error.empty())
    return error;
  if (withWeights && !reader.foundAny() && !path.ends_with(".onnxtext")) {
    bytes = fileBytes.str();
    return "";
  }
  if (!model.SerializeToString(&bytes))
    return (path + ": cannot serialize the model").str();
  return "";
}

FailureOr<std::string> mlir::blpa::serializeOnnxBuffer(MLIRContext *context,
                                                       llvm::StringRef bytes,
                                                       llvm::StringRef path,
                                                       bool withWeights) {
  std::string serialized, error;
  bool weightsLeftOut = false;
  try {
    error =
        serializeModel(path, bytes, withWeights, serialized, weightsLeftOut);
  } catch (...) {
    error = (path + ": cannot serialize the model").str();
  }
  Location loc = FileLineColLoc::get(context, path, 0, 0);
  if (!error.empty())
    return emitError(loc, onnximport::oneLine(error));
  if (weightsLeftOut)
    emitWarning(loc) << path
                     << ": the weights are not embedded in the executable: "
                        "with their external data the model is over 2 GiB; "
                        "run it with --weights "
                     << path;
  return serialized;
}

FailureOr<std::string> mlir::blpa::readSerializedModel(MLIRContext *context,
                                                       llvm::StringRef path,
                                                       bool withWeights) {
  std::string error;
  std::unique_ptr<llvm::MemoryBuffer> file = readModelFile(path, error);
  if (!file)
    return emitError(FileLineColLoc::get(context, path, 0, 0),
                     onnximport::oneLine(error));
  return serializeOnnxBuffer(context, file->getBuffer(), path, withWeights);
}
