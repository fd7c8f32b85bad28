//===- Augment.cpp - Random crops and flips of training images ------------===//

#include "Augment.h"
#include "Error.h"

#include "../Common/DropoutMask.h"

#include <algorithm>
#include <cstdlib>

namespace blpa::driver {

Augmentation parseAugmentation(const std::string &list) {
  Augmentation result;
  if (list.empty())
    return result;
  for (size_t at = 0; at <= list.size();) {
    size_t comma = std::min(list.find(',', at), list.size());
    std::string item = list.substr(at, comma - at);
    char *end = nullptr;
    long padding = item.rfind("crop", 0) == 0 && item.size() > 4
                       ? std::strtol(item.c_str() + 4, &end, 10)
                       : 0;
    if (item == "flip")
      result.flip = true;
    else if (padding > 0 && end && !*end)
      result.cropPadding = padding;
    else
      throw DriverError("--augment: '" + item +
                        "' is not cropP (a random crop of the image padded "
                        "by P pixels) or flip");
    at = comma + 1;
  }
  return result;
}

void augmentImage(const Augmentation &augmentation, float *image,
                  int64_t channels, int64_t height, int64_t width,
                  uint64_t seed, uint64_t counter,
                  std::vector<float> &scratch) {
  // One 64-bit draw per image: 8 bits per shift, one bit for the flip.
  uint64_t draw = blpa::mix64(blpa::mix64(seed ^ 0xa5a5a5a5ull) ^ counter);
  int64_t span = 2 * augmentation.cropPadding + 1;
  int64_t dy = int64_t(draw & 0xff) % span - augmentation.cropPadding;
  int64_t dx = int64_t(draw >> 8 & 0xff) % span - augmentation.cropPadding;
  bool mirror = augmentation.flip && (draw >> 16 & 1);
  scratch.assign(image, image + channels * height * width);
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t y = 0; y < height; ++y)
      for (int64_t x = 0; x < width; ++x) {
        int64_t sy = y + dy, sx = (mirror ? width - 1 - x : x) + dx;
        bool inside = sy >= 0 && sy < height && sx >= 0 && sx < width;
        image[(c * height + y) * width + x] =
            inside ? scratch[(c * height + sy) * width + sx] : 0.0f;
      }
}

} // namespace blpa::driver
