//===- Checkpoint.cpp - Training state that resumes bitwise ---------------===//

#include "Checkpoint.h"
#include "Error.h"
#include "FileUtil.h"
#include "Session.h"

#include <cstring>

namespace blpa::driver {

namespace {

const char magic[8] = {'B', 'L', 'P', 'A', 'C', 'K', 'P', 'T'};
const uint32_t version = 1;

template <typename T> void put(AtomicFile &file, T value) {
  file.write(&value, sizeof(value));
}

/// Sequential reads from the checkpoint's bytes, failing with one line.
class Reader {
public:
  Reader(std::string bytes, std::string path)
      : bytes(std::move(bytes)), path(std::move(path)) {}

  const char *take(size_t size) {
    if (size > bytes.size() - at)
      fail("ends early (truncated?)");
    const char *data = bytes.data() + at;
    at += size;
    return data;
  }
  template <typename T> T get() {
    T value;
    std::memcpy(&value, take(sizeof(T)), sizeof(T));
    return value;
  }
  std::vector<float> floats(uint64_t count) {
    std::vector<float> values(count);
    std::memcpy(values.data(), take(count * sizeof(float)),
                count * sizeof(float));
    return values;
  }
  [[noreturn]] void fail(const std::string &what) const {
    throw DriverError("--resume " + path + ": " + what);
  }
  bool done() const { return at == bytes.size(); }

private:
  std::string bytes, path;
  size_t at = 0;
};

} // namespace

void saveCheckpoint(const std::string &path, const Session &session,
                    const Manifest &manifest, uint64_t step, uint64_t seed) {
  std::vector<std::vector<float>> params = session.readParams();
  AtomicFile file(path);
  file.write(magic, sizeof(magic));
  put(file, version);
  put(file, step);
  put(file, seed);
  put(file, uint32_t(params.size()));
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string &name = manifest.params[i].name;
    put(file, uint32_t(name.size()));
    file.write(name.data(), name.size());
    put(file, uint64_t(params[i].size()));
    std::vector<float> momentum = session.readMomentum(i);
    put(file, uint8_t(!momentum.empty()));
    file.write(params[i].data(), params[i].size() * sizeof(float));
    file.write(momentum.data(), momentum.size() * sizeof(float));
  }
  file.commit();
}

Checkpoint loadCheckpoint(const std::string &path, const Manifest &manifest) {
  Reader in(readWholeFile(path, "--resume"), path);
  if (std::memcmp(in.take(sizeof(magic)), magic, sizeof(magic)) != 0 ||
      in.get<uint32_t>() != version)
    in.fail("not a blpa checkpoint (written by --checkpoint)");
  Checkpoint checkpoint;
  checkpoint.step = in.get<uint64_t>();
  checkpoint.seed = in.get<uint64_t>();
  if (in.get<uint32_t>() != manifest.params.size())
    in.fail("holds another model's parameters");
  for (const ParamRecord &param : manifest.params) {
    uint32_t length = in.get<uint32_t>();
    std::string name(in.take(length), length);
    uint64_t count = in.get<uint64_t>();
    if (name != param.name || count != uint64_t(numElements(param.shape)))
      in.fail("parameter '" + name + "' does not match this executable's '" +
              param.name + "' " + formatShape(param.shape));
    bool hasMomentum = in.get<uint8_t>() != 0;
    if (hasMomentum != param.trainable)
      in.fail("parameter '" + name + "' " +
              (hasMomentum ? "has a momentum but is state"
                           : "has no momentum but is trainable") +
              " in this executable");
    checkpoint.params.push_back(in.floats(count));
    checkpoint.momenta.push_back(hasMomentum ? in.floats(count)
                                             : std::vector<float>());
  }
  if (!in.done())
    in.fail("has trailing bytes");
  return checkpoint;
}

} // namespace blpa::driver
