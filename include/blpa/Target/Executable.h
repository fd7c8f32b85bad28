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

/// Whether this build can link executables for `target` ("cpu", "cuda");
/// when not, fails with a diagnostic that says why.
LogicalResult checkTargetAvailable(Location loc, llvm::StringRef target);

/// Whether this build can link --data-parallel executables for `target`
/// (MPI on the CPU target); when not, fails with a diagnostic that says why.
LogicalResult checkDataParallelAvailable(Location loc, llvm::StringRef target);

/// Links an object file from emitObjectFile with the training driver and the
/// runtime of `target` into an executable, with the system C++ driver. The
/// result appears at `exePath` only when linking succeeded. A CUDA
/// executable also gets the shared libraries it needs that a GPU machine
/// lacks in `blpa-cuda-libs/` beside it (docs/design.md). A data-parallel
/// executable also links the all-reduce library and MPI.
LogicalResult linkExecutable(Location loc, llvm::StringRef objectPath,
                             llvm::StringRef exePath,
                             llvm::StringRef target = "cpu",
                             bool dataParallel = false);

} // namespace blpa
} // namespace mlir

#endif // BLPA_TARGET_EXECUTABLE_H
