//===- Cifar.cpp - CIFAR-10/100 binary files ------------------------------===//

#include "Cifar.h"
#include "Error.h"
#include "FileUtil.h"

namespace blpa::driver {

namespace {

constexpr int64_t channels = 3, imageBytes = 3 * 32 * 32;

/// The two flavours: CIFAR-10 has one label byte per record and 10
/// classes, CIFAR-100 a coarse and a fine label byte and 100 classes.
struct Flavour {
  int64_t labelBytes, classes;
  std::vector<std::string> files;
};

Flavour flavourOf(const std::string &dir, const std::string &split) {
  if (pathExists(dir + "/train.bin") || pathExists(dir + "/test.bin"))
    return {2, 100, {dir + "/" + split + ".bin"}};
  if (split == "test")
    return {1, 10, {dir + "/test_batch.bin"}};
  Flavour flavour{1, 10, {}};
  for (int k = 1; pathExists(dir + "/data_batch_" + std::to_string(k) + ".bin");
       ++k)
    flavour.files.push_back(dir + "/data_batch_" + std::to_string(k) + ".bin");
  return flavour;
}

/// Appends the records of one file to `set`.
void appendRecords(const std::string &path, const Flavour &flavour,
                   const std::string &flag, ImageSet &set) {
  std::string bytes = readWholeFile(path, flag);
  int64_t recordBytes = flavour.labelBytes + imageBytes;
  if (bytes.empty() || bytes.size() % recordBytes != 0)
    throw DriverError(
        flag + ": " + path + " has " + std::to_string(bytes.size()) +
        " bytes, not a whole number of " + std::to_string(recordBytes) +
        "-byte CIFAR records (truncated?)");
  for (size_t at = 0; at < bytes.size(); at += recordBytes) {
    auto label = uint8_t(bytes[at + flavour.labelBytes - 1]);
    if (label >= flavour.classes)
      throw DriverError(flag + ": " + path + ": record " +
                        std::to_string(at / recordBytes) + " has label " +
                        std::to_string(label) + "; CIFAR-" +
                        std::to_string(flavour.classes) + " labels are 0 to " +
                        std::to_string(flavour.classes - 1));
    set.labels.push_back(label);
    const char *pixels = bytes.data() + at + flavour.labelBytes;
    set.pixels.insert(set.pixels.end(), pixels, pixels + imageBytes);
  }
}

ImageSet loadFiles(const std::string &dir, const std::string &split,
                   const std::string &flag) {
  Flavour flavour = flavourOf(dir, split);
  if (flavour.files.empty())
    throw DriverError(flag + " " + dir + ": no CIFAR " + split + " files");
  ImageSet set;
  set.pixelsPerImage = imageBytes;
  set.channels = channels;
  for (const std::string &file : flavour.files)
    appendRecords(file, flavour, flag, set);
  set.count = int64_t(set.labels.size());
  return set;
}

} // namespace

bool isCifarDirectory(const std::string &dir) {
  return pathExists(dir + "/data_batch_1.bin") ||
         pathExists(dir + "/train.bin");
}

ImageSet loadCifar(const std::string &dir, const std::string &split,
                   const std::string &flag) {
  return loadFiles(dir, split, flag);
}

} // namespace blpa::driver
