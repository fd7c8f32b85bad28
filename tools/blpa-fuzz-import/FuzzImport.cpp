//===- FuzzImport.cpp - libFuzzer target over ONNX model bytes ------------===//
//
// Imports each input as a binary (.onnx) and as a text (.onnxtext) model,
// from memory, as blpa-opt would import the file (without --batch-size and
// with it), then verifies the module, checks its tensor types and prints
// it, and serializes the model as blpa-opt embeds it in an executable. Bad
// input must end in exactly one error, on one line; anything else (a crash,
// a hang, a sanitizer report, an exception escaping, a module that does not
// verify or holds an invalid tensor type) aborts, and libFuzzer keeps the
// input. Nothing is written to disk. scripts/fuzz builds and runs it.
//
//===----------------------------------------------------------------------===//

#include "blpa/Import/OnnxImporter.h"

#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <optional>
#include <string>
#include <vector>

using namespace mlir;
using namespace mlir::blpa;

// External data is looked for beside the model: a directory that does not
// exist makes every reference that passes the checks missing, so no input
// reads files, and each run depends on its bytes only.
static const char *const binaryPath = "/nonexistent-blpa-fuzz/model.onnx";
static const char *const textPath = "/nonexistent-blpa-fuzz/model.onnxtext";

namespace {
/// Keeps the error diagnostics emitted while it lives, printing nothing.
class ErrorCollector {
public:
  explicit ErrorCollector(MLIRContext &context)
      : handler(&context, [this](Diagnostic &diag) {
          if (diag.getSeverity() == DiagnosticSeverity::Error)
            errors.push_back(diag.str());
          return success();
        }) {}

  std::vector<std::string> errors;

private:
  ScopedDiagnosticHandler handler;
};
} // namespace

/// Stops the run on a bug; libFuzzer reports the abort with its input.
[[noreturn]] static void fail(const char *what,
                              const std::vector<std::string> &errors) {
  std::fprintf(stderr, "blpa-fuzz-import: %s\n", what);
  for (const std::string &error : errors)
    std::fprintf(stderr, "  error: %s\n", error.c_str());
  std::abort();
}

/// The importer's contract: a call fails with exactly one error, on one
/// line, and succeeds with none. `errors` is emptied for the next call.
static void checkErrors(const char *call, bool succeededCall,
                        std::vector<std::string> &errors) {
  if (succeededCall && !errors.empty())
    fail(call, errors);
  if (!succeededCall &&
      (errors.size() != 1 || errors[0].find('\n') != std::string::npos))
    fail(call, errors);
  errors.clear();
}

/// Whether `type`, if a tensor, has a static shape whose size in bytes (of
/// float32, the widest element the importer builds) fits in int64, as the
/// memory plan's arithmetic needs. The verifier does not check types: a
/// tensor<-5xf32> verifies.
static bool isAddressable(Type type) {
  auto tensor = dyn_cast<RankedTensorType>(type);
  if (!tensor)
    return true;
  int64_t bytes = sizeof(float);
  for (int64_t dim : tensor.getShape()) {
    if (dim < 0 ||
        (dim > 0 && bytes > std::numeric_limits<int64_t>::max() / dim))
      return false;
    bytes *= dim;
  }
  return true;
}

static bool hasAddressableTypes(ModuleOp module) {
  WalkResult walk = module.walk([](Operation *op) {
    for (Region &region : op->getRegions())
      for (Block &block : region)
        if (!llvm::all_of(block.getArgumentTypes(), isAddressable))
          return WalkResult::interrupt();
    if (!llvm::all_of(op->getResultTypes(), isAddressable))
      return WalkResult::interrupt();
    return WalkResult::advance();
  });
  return !walk.wasInterrupted();
}

/// What blpa-opt does with an imported module: verify and print it.
static void useModule(ModuleOp module, ErrorCollector &diags) {
  if (failed(verify(module)))
    fail("the imported module does not verify", diags.errors);
  if (!hasAddressableTypes(module))
    fail("the imported module has an invalid or unaddressable tensor type",
         diags.errors);
  llvm::raw_null_ostream os;
  module.print(os);
}

/// What blpa-opt embeds in an executable for a model that imported with
/// `options`: it must serialize, and import again. Without the weights it
/// must serialize or fail cleanly.
static void checkEmbedding(MLIRContext &context, llvm::StringRef bytes,
                           llvm::StringRef path, const ImportOptions &options,
                           ErrorCollector &diags) {
  FailureOr<std::string> embedded = serializeOnnxBuffer(&context, bytes, path);
  if (failed(embedded))
    fail("a model that imports does not serialize", diags.errors);
  checkErrors("serializeOnnxBuffer", true, diags.errors);
  FailureOr<OwningOpRef<ModuleOp>> again =
      importOnnxBuffer(&context, *embedded, binaryPath, options);
  if (failed(again))
    fail("the embedded model does not import", diags.errors);
  checkErrors("importOnnxBuffer (the embedded model)", true, diags.errors);

  FailureOr<std::string> withoutWeights =
      serializeOnnxBuffer(&context, bytes, path, /*withWeights=*/false);
  checkErrors("serializeOnnxBuffer (without weights)",
              succeeded(withoutWeights), diags.errors);
}

/// Imports `bytes` as the model file `path` without --batch-size and with
/// --batch-size 2 (models with a symbolic batch need one, those with a
/// fixed batch of 1 must not have another).
static void fuzzOne(llvm::StringRef bytes, llvm::StringRef path) {
  // A fresh context per input and format, so that a failure never depends
  // on the inputs before it.
  MLIRContext context(MLIRContext::Threading::DISABLED);
  ErrorCollector diags(context);
  std::optional<ImportOptions> importedWith;
  for (std::optional<int64_t> batchSize :
       {std::optional<int64_t>(), std::optional<int64_t>(2)}) {
    ImportOptions options;
    options.batchSize = batchSize;
    FailureOr<OwningOpRef<ModuleOp>> module =
        importOnnxBuffer(&context, bytes, path, options);
    checkErrors("importOnnxBuffer", succeeded(module), diags.errors);
    if (failed(module))
      continue;
    useModule(**module, diags);
    importedWith = options;
  }
  if (importedWith)
    checkEmbedding(context, bytes, path, *importedWith, diags);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  llvm::StringRef bytes(reinterpret_cast<const char *>(data), size);
  // Both formats on every input: the corpus is the test models as they
  // are, and a crash reproduces with blpa-opt on the input saved as .onnx
  // or .onnxtext.
  fuzzOne(bytes, binaryPath);
  fuzzOne(bytes, textPath);
  return 0;
}
