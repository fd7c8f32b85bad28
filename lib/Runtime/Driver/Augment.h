//===- Augment.h - Random crops and flips of training images ----*- C++ -*-===//
//
// `--augment crop<P>,flip` (the paper's CIFAR recipe is crop4,flip): each
// training image [C, H, W] is shifted by up to P pixels each way with the
// border filled with 0 (the normalized mean), as a crop of the image padded
// by P, and mirrored left-right with probability 1/2. The draws are a hash
// of (seed, the sample's position in the run), not a sequential generator,
// so a resumed run augments exactly as an uninterrupted one.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_DRIVER_AUGMENT_H
#define BLPA_RUNTIME_DRIVER_AUGMENT_H

#include "Manifest.h"

#include <cstdint>
#include <string>
#include <vector>

namespace blpa::driver {

struct Augmentation {
  int64_t cropPadding = 0;
  bool flip = false;

  bool enabled() const { return cropPadding > 0 || flip; }
};

/// Parses `--augment`'s list; throws DriverError on an unknown item.
Augmentation parseAugmentation(const std::string &list);

/// Augments `image` ([channels, height, width], in place) as draw number
/// `counter` of the run with `seed`; `scratch` is reused between calls.
void augmentImage(const Augmentation &augmentation, float *image,
                  int64_t channels, int64_t height, int64_t width,
                  uint64_t seed, uint64_t counter, std::vector<float> &scratch);

} // namespace blpa::driver

#endif // BLPA_RUNTIME_DRIVER_AUGMENT_H
