//===- NpyData.cpp - Training data as NumPy arrays ------------------------===//

#include "NpyData.h"
#include "Error.h"
#include "FileUtil.h"
#include "Npy.h"

namespace blpa::driver {

namespace {

/// The (samples, labels) paths of `split`, empty when the split is absent.
std::pair<std::string, std::string> splitPaths(const std::string &data,
                                               const std::string &split) {
  size_t comma = data.find(',');
  if (comma != std::string::npos)
    return split == "train"
               ? std::make_pair(data.substr(0, comma), data.substr(comma + 1))
               : std::make_pair(std::string(), std::string());
  std::string x = data + "/x_" + split + ".npy",
              y = data + "/y_" + split + ".npy";
  return pathExists(x) ? std::make_pair(x, y)
                       : std::make_pair(std::string(), std::string());
}

} // namespace

bool isNpyData(const std::string &data) {
  return data.find(',') != std::string::npos ||
         pathExists(data + "/x_train.npy");
}

ImageSet loadNpyData(const std::string &data, const std::string &split,
                     const std::string &flag) {
  auto [xPath, yPath] = splitPaths(data, split);
  ImageSet set;
  if (xPath.empty())
    return set;
  auto samples = std::make_shared<const MappedNpy>(xPath, flag);
  const NpyArray &x = samples->header;
  if (x.dtype != "<f4" || x.shape.empty())
    throw DriverError(flag + " " + xPath +
                      ": the samples must be a float32 "
                      "array [N, ...], not " +
                      x.dtype + " " + formatShape(x.shape) +
                      " (numpy.save(path, "
                      "x.astype(numpy.float32)))");
  std::vector<int64_t> labels = npyToInt64(readNpy(yPath, flag), flag);
  if (int64_t(labels.size()) != x.shape[0])
    throw DriverError(flag + " " + yPath + ": " +
                      std::to_string(labels.size()) + " labels for " +
                      std::to_string(x.shape[0]) + " samples in " + xPath);
  for (size_t i = 0; i < labels.size(); ++i)
    if (labels[i] < 0)
      throw DriverError(flag + " " + yPath + ": label " + std::to_string(i) +
                        " is " + std::to_string(labels[i]) +
                        "; labels are class indices from 0");
  set.count = x.shape[0];
  set.pixelsPerImage = set.count ? numElements(x.shape) / set.count : 0;
  // [N, C, ...] has C channels; [N, F] one.
  set.channels = x.shape.size() >= 3 ? x.shape[1] : 1;
  set.values = reinterpret_cast<const float *>(samples->data);
  set.mapping = std::move(samples);
  set.labels = std::move(labels);
  return set;
}

} // namespace blpa::driver
