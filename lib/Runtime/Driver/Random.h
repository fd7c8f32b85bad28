//===- Random.h - Reproducible random numbers -------------------*- C++ -*-===//
//
// std::uniform_int_distribution, std::normal_distribution and std::shuffle
// are implementation-defined, so the same seed could give different data
// with another standard library; these helpers fix the algorithms.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_DRIVER_RANDOM_H
#define BLPA_RUNTIME_DRIVER_RANDOM_H

#include <cmath>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace blpa::driver {

class Random {
public:
  explicit Random(uint64_t seed) : engine(seed) {}

  /// Uniform in [0, bound), without modulo bias.
  uint64_t below(uint64_t bound) {
    uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    uint64_t value;
    do
      value = engine();
    while (value >= limit);
    return value % bound;
  }

  /// Standard normal (Box-Muller).
  float normal() {
    const double unit = 1.0 / 9007199254740992.0; // 2^-53
    double u1 = ((engine() >> 11) + 1) * unit;    // (0, 1]
    double u2 = (engine() >> 11) * unit;          // [0, 1)
    return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) *
                              std::cos(2.0 * M_PI * u2));
  }

  /// Fisher-Yates.
  template <typename T> void shuffle(std::vector<T> &values) {
    for (size_t i = values.size(); i > 1; --i)
      std::swap(values[i - 1], values[below(i)]);
  }

private:
  std::mt19937_64 engine;
};

} // namespace blpa::driver

#endif // BLPA_RUNTIME_DRIVER_RANDOM_H
