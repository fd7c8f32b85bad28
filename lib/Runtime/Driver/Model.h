//===- Model.h - Parameter values in ONNX models ----------------*- C++ -*-===//
//
// The initial parameter values come from the ONNX initializers of the model
// the executable was compiled from (or of a --weights file), and --save
// writes the trained values back into a copy of that model, so the result
// loads in onnxruntime or PyTorch like the original.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_DRIVER_MODEL_H
#define BLPA_RUNTIME_DRIVER_MODEL_H

#include "Manifest.h"

#include <onnx/onnx_pb.h>

#include <string>
#include <vector>

namespace blpa::driver {

class OnnxModel {
public:
  /// Parses a serialized ModelProto; `origin` names it in errors (a flag and
  /// path, or "the embedded model").
  OnnxModel(const void *data, size_t size, std::string origin);

  /// Copies the initializer of every manifest param into `buffers[i]`
  /// (numElements(params[i].shape) floats each).
  void readParams(const std::vector<ParamRecord> &params,
                  const std::vector<float *> &buffers) const;

  /// Frees the values of the params' initializers once they have been
  /// read: the session holds the only copy the step needs, and
  /// serializeWithParams replaces them anyway.
  void releaseParamData(const std::vector<ParamRecord> &params);

  /// This model with the params' initializers replaced by `buffers`,
  /// serialized.
  std::string serializeWithParams(const std::vector<ParamRecord> &params,
                                  const std::vector<float *> &buffers) const;

private:
  const onnx::TensorProto &findInitializer(const ParamRecord &param) const;

  onnx::ModelProto model;
  std::string origin;
};

} // namespace blpa::driver

#endif // BLPA_RUNTIME_DRIVER_MODEL_H
