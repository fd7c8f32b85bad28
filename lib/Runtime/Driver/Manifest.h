//===- Manifest.h - The text manifest of a generated object -----*- C++ -*-===//
//
// blpa-opt describes the compiled step in `blpa_manifest`: the arena size,
// the data inputs, labels and outputs with their static shapes, and the
// parameters in the order of the params/momenta/grads arrays. Names are the
// rest of their line, so ONNX names with spaces survive.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_DRIVER_MANIFEST_H
#define BLPA_RUNTIME_DRIVER_MANIFEST_H

#include <cstdint>
#include <string>
#include <vector>

namespace blpa::driver {

using Shape = std::vector<int64_t>;

int64_t numElements(const Shape &shape);
/// "[64, 1, 28, 28]".
std::string formatShape(const Shape &shape);

struct TensorRecord {
  std::string name;
  Shape shape;
  /// Token ids (int64) rather than float32 values; ids lie in
  /// [-indexBound, indexBound), the rows of the tables they index (0: no
  /// table reads them).
  bool indices = false;
  int64_t indexBound = 0;

  /// Bytes of one step's tensor.
  uint64_t bytes() const;
};

struct ParamRecord {
  std::string name;
  Shape shape;
  /// Trainable params get momentum and gradient buffers; state params
  /// (e.g. batch-norm running statistics) are only read and updated.
  bool trainable = false;
};

/// An op of the training step, numbered as its profiling hooks number it:
/// what --profile writes about it (docs/design.md, "Cost model").
struct OpRecord {
  /// Runtime calls per execution; operations and bytes of one execution
  /// (CostOpInterface).
  int64_t calls = 0;
  int64_t flops = 0;
  int64_t bytes = 0;
  /// The op ("blpa.conv"), its operand and result shapes, its ONNX node
  /// ("" for ops without one).
  std::string name, shapes, node;
};

struct Manifest {
  bool training = false;
  uint64_t arenaBytes = 0;
  /// The runtime the step was compiled for ("cpu", "cuda").
  std::string target = "cpu";
  /// Scratch space for library calls, inside the arena.
  uint64_t workspaceOffset = 0;
  uint64_t workspaceBytes = 0;
  int32_t defaultThreads = 0;
  std::vector<TensorRecord> inputs;
  /// The int64 labels of a step (training only): [N] for a classifier,
  /// [N, T] for a language model.
  Shape labelShape;
  /// Rows labelled so are left out of the loss.
  int64_t ignoreIndex = -100;
  std::vector<TensorRecord> outputs;
  /// Indexed by the manifest's parameter index.
  std::vector<ParamRecord> params;
  /// The model's identity (CostModel's fingerprint), for profiles.
  std::string modelFingerprint;
  /// The training step's ops, by hook index.
  std::vector<OpRecord> ops;
  /// Gradient buckets a data-parallel step all-reduces (0: one process).
  int64_t gradientBuckets = 0;
  /// The batch norms normalize every replica's batch together.
  bool syncBatchNorm = false;

  /// The number of labels of a step (0 for an inference executable).
  int64_t labelCount() const {
    return labelShape.empty() ? 0 : numElements(labelShape);
  }
  /// The batch size: the first dimension of the first data input.
  int64_t batchSize() const;
  /// The last dimension of output 0 (the number of classes of a classifier).
  int64_t classCount() const;
};

/// Parses and validates `text`; throws DriverError naming the bad line.
Manifest parseManifest(const std::string &text);

} // namespace blpa::driver

#endif // BLPA_RUNTIME_DRIVER_MANIFEST_H
