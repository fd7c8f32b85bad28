//===- Manifest.h - What the driver learns about a compiled model -*- C++ -*-=//

#ifndef BLPA_LIB_CONVERSION_BLPATOLLVM_MANIFEST_H
#define BLPA_LIB_CONVERSION_BLPATOLLVM_MANIFEST_H

#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/StringMap.h"

#include <string>

namespace mlir {
namespace blpa {

/// The persistent tensors of a module, indexed in order of first appearance:
/// the index is the one of the runtime ABI's params/momenta/grads arrays.
struct ParamTable {
  struct Entry {
    std::string name;
    bool trainable;
    SmallVector<int64_t> shape;
  };
  SmallVector<Entry> entries;
  llvm::StringMap<unsigned> indexOf;
};

/// Collects every blpa.param of the module; fails (with a diagnostic) when
/// two uses of one name disagree on type or trainability.
FailureOr<ParamTable> collectParams(ModuleOp module);

/// What the manifest says about the arena and the runtime.
struct ManifestTotals {
  int64_t arenaBytes = 0;
  /// Library scratch at the arena's start (the CUDA target's cuDNN).
  int64_t workspaceBytes = 0;
  std::string target = "cpu";
};

/// The text manifest (format in docs/design.md) for the planned module.
std::string buildManifest(ModuleOp module, const ParamTable &params,
                          const ManifestTotals &totals);

} // namespace blpa
} // namespace mlir

#endif // BLPA_LIB_CONVERSION_BLPATOLLVM_MANIFEST_H
