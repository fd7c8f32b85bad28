//===- Npy.h - NumPy .npy files ---------------------------------*- C++ -*-===//
//
// Reads NPY versions 1-3 in little-endian float32/float64/int32/int64 C
// order; writes version 1.0. That is what numpy.save produces and what the
// tests that compare the driver against PyTorch read back.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_DRIVER_NPY_H
#define BLPA_RUNTIME_DRIVER_NPY_H

#include "Manifest.h"

#include <string>
#include <vector>

namespace blpa::driver {

struct NpyArray {
  std::string path;
  /// The numpy descr, e.g. "<f4".
  std::string dtype;
  Shape shape;
  std::string bytes;
};

NpyArray readNpy(const std::string &path, const std::string &flag);

/// An .npy file mapped read-only into memory (training data of any size):
/// the header's dtype and shape in `header` (no bytes), the values at
/// `data`, paged in as they are read.
class MappedNpy {
public:
  MappedNpy(const std::string &path, const std::string &flag);
  ~MappedNpy();
  MappedNpy(const MappedNpy &) = delete;
  MappedNpy &operator=(const MappedNpy &) = delete;

  NpyArray header;
  const char *data = nullptr;

private:
  void *base = nullptr;
  size_t size = 0;
};

/// The array's values as float32 (float64 and integers are converted).
std::vector<float> npyToFloat32(const NpyArray &array);
/// The array's values as int64; only integer arrays are accepted.
std::vector<int64_t> npyToInt64(const NpyArray &array, const std::string &flag);

/// Throws unless the array has exactly `expected` as its shape.
void checkNpyShape(const NpyArray &array, const Shape &expected,
                   const std::string &flag, const std::string &what);

void writeNpy(const std::string &path, const Shape &shape, const float *values);
void writeNpy(const std::string &path, const Shape &shape,
              const int64_t *values);

} // namespace blpa::driver

#endif // BLPA_RUNTIME_DRIVER_NPY_H
