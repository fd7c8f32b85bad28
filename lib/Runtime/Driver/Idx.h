//===- Idx.h - (Fashion-)MNIST IDX files ------------------------*- C++ -*-===//
//
// Loads one split ("train" or "t10k") of an MNIST-format data set from the
// IDX files in a directory, gzip-compressed (as Debian ships them) or not.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_DRIVER_IDX_H
#define BLPA_RUNTIME_DRIVER_IDX_H

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace blpa::driver {

class MappedNpy;

/// A labelled data set: byte images (IDX, CIFAR), normalized as they are
/// read, or float32 samples used as they are (NumPy arrays, mapped).
struct ImageSet {
  int64_t count = 0;
  int64_t pixelsPerImage = 0;
  /// count * pixelsPerImage raw bytes, image after image (channel planes
  /// one after the other within an image).
  std::vector<uint8_t> pixels;
  /// Or count * pixelsPerImage float32 values, kept mapped by `mapping`.
  const float *values = nullptr;
  std::shared_ptr<const MappedNpy> mapping;
  std::vector<int64_t> labels;
  /// Channels per sample (the planes of a sample are one after the other).
  int64_t channels = 1;
  /// Per-channel mean and standard deviation (of pixel / 255 for byte
  /// images) to normalize with, one each per channel; empty: none.
  std::vector<float> mean, stddev;

  /// Writes sample `index` to `out[0 .. pixelsPerImage)`: byte images as
  /// pixel / 255, each channel normalized with its mean and standard
  /// deviation when the set has them.
  void normalizedImage(int64_t index, float *out) const;
  /// The sample's value `i` before normalization (pixel / 255 for bytes).
  float rawValue(int64_t index, int64_t i) const {
    return values ? values[index * pixelsPerImage + i]
                  : pixels[index * pixelsPerImage + i] / 255.0f;
  }
};

/// Loads DIR/<split>-images-idx3-ubyte[.gz] and DIR/<split>-labels-idx1-
/// ubyte[.gz]; `flag` names the option that gave `dir`.
ImageSet loadImageSet(const std::string &dir, const std::string &split,
                      const std::string &flag);

} // namespace blpa::driver

#endif // BLPA_RUNTIME_DRIVER_IDX_H
