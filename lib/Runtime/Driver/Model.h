//===- Model.h - Parameter values in ONNX models ----------------*- C++ -*-===//
//
// The initial parameter values come from the ONNX initializers of the model
// the executable was compiled from (or of a --weights file), and --save
// writes the trained values back into a copy of that model, so the result
// loads in onnxruntime or PyTorch like the original.
//
// Initializers may keep their values in external data files
// (lib/Onnx/ExternalData.h), relative to the model file's directory. The
// embedded model has no directory: blpa-opt reads external data into it,
// except weights too large to embed (over 2 GiB), which keep their
// references and must come from --weights.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_DRIVER_MODEL_H
#define BLPA_RUNTIME_DRIVER_MODEL_H

#include "Manifest.h"

#include <onnx/onnx_pb.h>

#include <string>
#include <vector>

namespace blpa::driver {

class AtomicFile;

class OnnxModel {
public:
  /// Parses a serialized ModelProto; `origin` names it in errors (a flag and
  /// path, or "the embedded model"). `directory` holds its external data
  /// files: the model file's directory, or empty for the embedded model.
  OnnxModel(const void *data, size_t size, std::string origin,
            std::string directory = "");

  /// Copies the initializer of every manifest param into `buffers[i]`
  /// (numElements(params[i].shape) floats each), reading external data
  /// straight from its file.
  void readParams(const std::vector<ParamRecord> &params,
                  const std::vector<float *> &buffers) const;

  /// Frees the values of the params' initializers once they have been
  /// read: the session holds the only copy the step needs, and
  /// saveWithParams replaces them anyway.
  void releaseParamData(const std::vector<ParamRecord> &params);

  /// The params' values come from `weights` (--weights) rather than from
  /// this model: frees them here (releaseParamData), and copies from
  /// `weights` the values of the other initializers this model was built
  /// without (--embed-weights=false, or weights too large to embed), so
  /// that --save writes them back.
  void useWeightsFrom(const OnnxModel &weights,
                      const std::vector<ParamRecord> &params);

  /// Whether some initializer keeps its values in an external data file.
  bool usesExternalData() const;

  /// Writes this model with the params' initializers replaced by `buffers`
  /// to `path`. With `externalData`, or when the model would not fit in
  /// protobuf's 2 GiB, initializers of 1 KiB or more go to `path`.data
  /// beside it (at 4 KiB-aligned offsets), as ONNX external data; both
  /// files are written in full before either is renamed into place.
  /// Returns the data file's path, or "" when everything is inline.
  /// With `forInference`, batch normalizations use their running
  /// statistics and dropouts pass values through (as torch.onnx exports a
  /// model in eval mode), for deployment rather than further training.
  std::string saveWithParams(const std::vector<ParamRecord> &params,
                             const std::vector<float *> &buffers,
                             const std::string &path, bool externalData,
                             bool forInference = false) const;

private:
  const onnx::TensorProto *findTensor(const std::string &name) const;
  const onnx::TensorProto &findInitializer(const ParamRecord &param) const;
  bool lacksValues(const onnx::TensorProto &tensor) const;
  void readExternal(const onnx::TensorProto &tensor, void *dest) const;
  onnx::TensorProto copyWithValues(const onnx::TensorProto &tensor) const;
  void fillForSave(onnx::ModelProto &copy,
                   const std::vector<ParamRecord> &params,
                   const std::vector<float *> &buffers, AtomicFile *data,
                   const std::string &location) const;
  std::string error(const onnx::TensorProto &tensor,
                    const std::string &what) const;

  onnx::ModelProto model;
  std::string origin;
  std::string directory;
};

/// The model file at `path`; `flag` names it in errors ("--weights").
OnnxModel readModelFile(const std::string &path, const std::string &flag);

} // namespace blpa::driver

#endif // BLPA_RUNTIME_DRIVER_MODEL_H
