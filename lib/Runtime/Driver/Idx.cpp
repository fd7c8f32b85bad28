//===- Idx.cpp - (Fashion-)MNIST IDX files --------------------------------===//

#include "Idx.h"
#include "Error.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>

namespace blpa::driver {

namespace {

/// Reads a whole file, gzip-compressed or not (zlib reads plain files
/// transparently). Tries `name.gz` first, then `name`.
std::string readMaybeCompressed(const std::string &dir, const std::string &name,
                                const std::string &flag) {
  std::string compressedPath = dir + "/" + name + ".gz";
  std::string plainPath = dir + "/" + name;
  std::string path = compressedPath;
  errno = 0;
  gzFile file = gzopen(compressedPath.c_str(), "rb");
  if (!file) {
    path = plainPath;
    file = gzopen(plainPath.c_str(), "rb");
  }
  if (!file)
    throw DriverError(flag + " " + dir + ": cannot open " + compressedPath +
                      " (or " + plainPath + "): " + errnoMessage() +
                      "; point " + flag +
                      " at a directory with the (Fashion-)MNIST IDX files");
  std::string content;
  char chunk[1 << 16];
  int got;
  while ((got = gzread(file, chunk, sizeof(chunk))) > 0)
    content.append(chunk, got);
  int errorCode = Z_OK;
  std::string zlibMessage = got < 0 ? gzerror(file, &errorCode) : "";
  gzclose(file);
  if (got < 0)
    throw DriverError(flag + " " + dir + ": cannot read " + path + ": " +
                      zlibMessage);
  return content;
}

/// The big-endian 32-bit field `index` of an IDX header.
int64_t headerField(const std::string &file, int index) {
  const auto *bytes =
      reinterpret_cast<const unsigned char *>(file.data()) + 4 * index;
  return (int64_t(bytes[0]) << 24) | (bytes[1] << 16) | (bytes[2] << 8) |
         bytes[3];
}

/// Checks the magic number and size of an IDX file and returns its dims.
std::vector<int64_t> parseIdxHeader(const std::string &file, int rank,
                                    const std::string &name,
                                    const std::string &flag) {
  auto fail = [&](const std::string &what) -> std::vector<int64_t> {
    throw DriverError(flag + ": " + name +
                      " is not an IDX file of unsigned "
                      "bytes with " +
                      std::to_string(rank) + " dimensions (" + what + ")");
  };
  size_t headerSize = 4 + 4 * rank;
  if (file.size() < headerSize)
    return fail("too short");
  if (headerField(file, 0) != 0x800 + rank)
    return fail("bad magic number");
  std::vector<int64_t> dims;
  int64_t count = 1;
  for (int i = 0; i < rank; ++i) {
    dims.push_back(headerField(file, i + 1));
    count *= dims.back();
  }
  if (file.size() != headerSize + count)
    return fail("size does not match the header");
  return dims;
}

} // namespace

void ImageSet::normalizedImage(int64_t index, float *out) const {
  for (int64_t i = 0; i < pixelsPerImage; ++i)
    out[i] = rawValue(index, i);
  if (mean.empty())
    return;
  int64_t plane = pixelsPerImage / channels;
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t i = c * plane; i < (c + 1) * plane; ++i)
      out[i] = (out[i] - mean[c]) / stddev[c];
}

ImageSet loadImageSet(const std::string &dir, const std::string &split,
                      const std::string &flag) {
  std::string imagesName = split + "-images-idx3-ubyte";
  std::string labelsName = split + "-labels-idx1-ubyte";
  std::string images = readMaybeCompressed(dir, imagesName, flag);
  std::string labels = readMaybeCompressed(dir, labelsName, flag);
  std::vector<int64_t> imageDims = parseIdxHeader(images, 3, imagesName, flag);
  std::vector<int64_t> labelDims = parseIdxHeader(labels, 1, labelsName, flag);
  if (imageDims[0] != labelDims[0])
    throw DriverError(flag + " " + dir + ": " + imagesName + " has " +
                      std::to_string(imageDims[0]) + " images but " +
                      labelsName + " has " + std::to_string(labelDims[0]) +
                      " labels");
  ImageSet set;
  set.count = imageDims[0];
  set.pixelsPerImage = imageDims[1] * imageDims[2];
  set.pixels.assign(images.begin() + 16, images.end());
  for (size_t i = 8; i < labels.size(); ++i)
    set.labels.push_back(static_cast<uint8_t>(labels[i]));
  return set;
}

} // namespace blpa::driver
