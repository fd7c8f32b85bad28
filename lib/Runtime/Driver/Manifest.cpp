//===- Manifest.cpp - The text manifest of a generated object -------------===//

#include "Manifest.h"
#include "Error.h"

#include <cerrno>
#include <cstdlib>
#include <sstream>

namespace blpa::driver {

int64_t numElements(const Shape &shape) {
  int64_t count = 1;
  for (int64_t dim : shape)
    count *= dim;
  return count;
}

std::string formatShape(const Shape &shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

uint64_t TensorRecord::bytes() const {
  return uint64_t(numElements(shape)) *
         (indices ? sizeof(int64_t) : sizeof(float));
}

int64_t Manifest::batchSize() const {
  return inputs.empty() || inputs[0].shape.empty() ? 1 : inputs[0].shape[0];
}

int64_t Manifest::classCount() const {
  return outputs.empty() || outputs[0].shape.empty() ? 0
                                                     : outputs[0].shape.back();
}

namespace {

/// Reads one manifest line field by field; the last field (a name) is
/// everything after the last consumed separator.
class LineReader {
public:
  LineReader(const std::string &line, int lineNumber)
      : line(line), lineNumber(lineNumber) {}

  std::string word() {
    if (pos >= line.size())
      fail("missing field");
    size_t end = line.find(' ', pos);
    if (end == std::string::npos)
      end = line.size();
    std::string result = line.substr(pos, end - pos);
    pos = end == line.size() ? end : end + 1;
    return result;
  }

  int64_t integer(int64_t minimum) {
    std::string text = word();
    errno = 0;
    char *end = nullptr;
    long long value = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end || errno || value < minimum)
      fail("bad number '" + text + "'");
    return value;
  }

  Shape shape() {
    int64_t rank = integer(0);
    Shape result;
    for (int64_t i = 0; i < rank; ++i)
      result.push_back(integer(0));
    return result;
  }

  std::string rest() {
    if (pos >= line.size())
      fail("missing name");
    std::string result = line.substr(pos);
    pos = line.size();
    return result;
  }

  /// rest(), or "" at the end of the line.
  std::string optionalRest() { return pos < line.size() ? rest() : ""; }

  void expectEnd() {
    if (pos < line.size())
      fail("unexpected trailing text '" + line.substr(pos) + "'");
  }

  [[noreturn]] void fail(const std::string &what) const {
    throw DriverError("the embedded manifest is malformed at line " +
                      std::to_string(lineNumber) + " ('" + line +
                      "'): " + what +
                      "; the executable is broken, rebuild it with blpa-opt");
  }

private:
  const std::string &line;
  int lineNumber;
  size_t pos = 0;
};

void parseParam(LineReader &reader, std::vector<ParamRecord> &params) {
  int64_t index = reader.integer(0);
  std::string kind = reader.word();
  if (kind != "trainable" && kind != "state")
    reader.fail("param kind must be 'trainable' or 'state'");
  ParamRecord param;
  param.trainable = kind == "trainable";
  param.shape = reader.shape();
  param.name = reader.rest();
  if (index >= static_cast<int64_t>(params.size()))
    params.resize(index + 1);
  if (!params[index].name.empty())
    reader.fail("param index " + std::to_string(index) + " appears twice");
  params[index] = param;
}

void parseOp(LineReader &reader, std::vector<OpRecord> &ops) {
  if (reader.integer(0) != static_cast<int64_t>(ops.size()))
    reader.fail("op records must be numbered 0, 1, ... in order");
  OpRecord op;
  op.calls = reader.integer(1);
  op.flops = reader.integer(0);
  op.bytes = reader.integer(0);
  op.name = reader.word();
  op.shapes = reader.word();
  op.node = reader.optionalRest();
  ops.push_back(op);
}

void validate(const Manifest &manifest) {
  auto fail = [](const std::string &what) {
    throw DriverError("the embedded manifest is invalid: " + what +
                      "; the executable is broken, rebuild it with blpa-opt");
  };
  for (size_t i = 0; i < manifest.params.size(); ++i)
    if (manifest.params[i].name.empty())
      fail("param index " + std::to_string(i) + " is missing");
  if (manifest.inputs.empty())
    fail("no data input");
  if (manifest.workspaceOffset + manifest.workspaceBytes > manifest.arenaBytes)
    fail("the workspace ends past the arena");
  if (manifest.batchSize() < 1)
    fail("the batch dimension of the first input is 0");
  if (manifest.training &&
      (manifest.labelShape.empty() ||
       manifest.labelShape[0] != manifest.batchSize()))
    fail("labels " + formatShape(manifest.labelShape) +
         " do not match the batch size " +
         std::to_string(manifest.batchSize()));
}

} // namespace

Manifest parseManifest(const std::string &text) {
  Manifest manifest;
  std::istringstream lines(text);
  std::string line;
  bool sawHeader = false, sawMode = false;
  for (int lineNumber = 1; std::getline(lines, line); ++lineNumber) {
    if (line.empty())
      continue;
    LineReader reader(line, lineNumber);
    std::string keyword = reader.word();
    if (!sawHeader) {
      if (keyword != "blpa-manifest" || reader.integer(0) != 1)
        reader.fail("expected 'blpa-manifest 1' first");
      reader.expectEnd();
      sawHeader = true;
    } else if (keyword == "mode") {
      std::string mode = reader.word();
      if (mode != "train" && mode != "infer")
        reader.fail("mode must be 'train' or 'infer'");
      reader.expectEnd();
      manifest.training = mode == "train";
      sawMode = true;
    } else if (keyword == "arena") {
      manifest.arenaBytes = reader.integer(0);
      reader.expectEnd();
    } else if (keyword == "target") {
      manifest.target = reader.word();
      reader.expectEnd();
    } else if (keyword == "workspace") {
      manifest.workspaceOffset = reader.integer(0);
      manifest.workspaceBytes = reader.integer(0);
      reader.expectEnd();
    } else if (keyword == "threads") {
      manifest.defaultThreads = reader.integer(0);
      reader.expectEnd();
    } else if (keyword == "labels") {
      manifest.labelShape = reader.shape();
      reader.expectEnd();
    } else if (keyword == "ignore_index") {
      manifest.ignoreIndex = reader.integer(INT64_MIN);
      reader.expectEnd();
    } else if (keyword == "input" || keyword == "output" ||
               keyword == "index_input") {
      TensorRecord tensor;
      tensor.indices = keyword == "index_input";
      if (tensor.indices)
        tensor.indexBound = reader.integer(0);
      tensor.shape = reader.shape();
      tensor.name = reader.rest();
      (keyword == "output" ? manifest.outputs : manifest.inputs)
          .push_back(tensor);
    } else if (keyword == "param") {
      parseParam(reader, manifest.params);
    } else if (keyword == "model") {
      manifest.modelFingerprint = reader.word();
      reader.expectEnd();
    } else if (keyword == "op") {
      parseOp(reader, manifest.ops);
    } else if (keyword == "sync_batch_norm") {
      manifest.syncBatchNorm = true;
      reader.expectEnd();
    } else if (keyword == "data_parallel") {
      manifest.gradientBuckets = reader.integer(1);
      reader.expectEnd();
    }
    // Other records are informational additions of later compilers; the
    // version number guards incompatible changes.
  }
  if (!sawHeader || !sawMode) {
    throw DriverError("the embedded manifest lacks its 'blpa-manifest 1' or "
                      "'mode' line; the executable is broken, rebuild it "
                      "with blpa-opt");
  }
  validate(manifest);
  return manifest;
}

} // namespace blpa::driver
