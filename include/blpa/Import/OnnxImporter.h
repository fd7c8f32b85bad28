//===- OnnxImporter.h - ONNX models into the blpa dialect -------*- C++ -*-===//

#ifndef BLPA_IMPORT_ONNXIMPORTER_H
#define BLPA_IMPORT_ONNXIMPORTER_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"
#include "llvm/ADT/StringRef.h"

#include <optional>
#include <string>
#include <vector>

namespace mlir {
namespace blpa {

struct ImportOptions {
  /// Fixes a symbolic (or 0/-1) leading batch dimension of the graph inputs.
  std::optional<int64_t> batchSize;
};

/// Reads `path` (a binary ModelProto `.onnx`, or `.onnxtext` in ONNX's text
/// syntax) and builds a module holding `func.func @forward(inputs) ->
/// outputs` over blpa ops, with one `blpa.param` per initializer used (at
/// its first use). Graph inputs and outputs carry their ONNX names in
/// `blpa.name` argument/result attributes, the module the model's absolute
/// path in `blpa.source`, every op a NameLoc of its node. On any problem
/// exactly one error diagnostic is emitted, on one line ("FILE: node 'NAME'
/// (OP): what is wrong; what is supported", or "FILE: ..." for the model as
/// a whole), and the result is failure(); nothing is thrown.
FailureOr<OwningOpRef<ModuleOp>> importOnnxFile(MLIRContext *context,
                                                llvm::StringRef path,
                                                const ImportOptions &options);

/// As importOnnxFile, with `bytes` standing for the contents of the model
/// file `path`, which is not opened: it names the model in messages and in
/// `blpa.source`, says its format (`.onnxtext` or binary) and is where its
/// external data is looked for. (The fuzzer imports from memory.)
FailureOr<OwningOpRef<ModuleOp>> importOnnxBuffer(MLIRContext *context,
                                                  llvm::StringRef bytes,
                                                  llvm::StringRef path,
                                                  const ImportOptions &options);

/// One ONNX op the importer supports (default domain) and the model opsets
/// in which it does.
struct OnnxOpSupport {
  std::string opType;
  int64_t minOpset;
  int64_t maxOpset;
};

/// The supported ops, sorted by op type (blpa-opt --list-onnx-ops).
std::vector<OnnxOpSupport> supportedOnnxOps();

/// The model at `path` as a serialized binary ModelProto, for embedding in
/// executables: a `.onnx` file's own bytes (after checking that they parse),
/// or the parsed model serialized (`.onnxtext`, or a model with external
/// data, which the executable cannot find: its values are read in). Without
/// `withWeights`, float initializers keep their names, shapes and types but
/// no values (the executable then takes its weights from --weights); so do
/// external ones too large to embed (over 2 GiB in all), keeping their
/// references, with a warning. Errors as importOnnxFile's.
FailureOr<std::string> readSerializedModel(MLIRContext *context,
                                           llvm::StringRef path,
                                           bool withWeights = true);

/// As readSerializedModel, with `bytes` standing for the contents of the
/// model file `path`, as in importOnnxBuffer.
FailureOr<std::string> serializeOnnxBuffer(MLIRContext *context,
                                           llvm::StringRef bytes,
                                           llvm::StringRef path,
                                           bool withWeights = true);

} // namespace blpa
} // namespace mlir

#endif // BLPA_IMPORT_ONNXIMPORTER_H
