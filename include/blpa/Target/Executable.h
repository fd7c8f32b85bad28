//===- Executable.h - Object files and executables from blpa IR -*- C++ -*-===//

#ifndef BLPA_TARGET_EXECUTABLE_H
#define BLPA_TARGET_EXECUTABLE_H

#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/StringRef.h"

namespace mlir {
namespace blpa {

/// Translates a module lowered by --blpa-lower-to-llvm to LLVM IR, adds the
/// serialized ONNX model as `blpa_model_onnx`/`blpa_model_onnx_size`, and
/// writes a native object file for the host.
LogicalResult emitObjectFile(ModuleOp module, llvm::StringRef modelBytes,
                             llvm::StringRef objectPath);

/// Links an object file from emitObjectFile with the training driver and the
/// CPU runtime into an executable, with the system C++ driver. The result
/// appears at `exePath` only when linking succeeded.
LogicalResult linkExecutable(Location loc, llvm::StringRef objectPath,
                             llvm::StringRef exePath);

} // namespace blpa
} // namespace mlir

#endif // BLPA_TARGET_EXECUTABLE_H
