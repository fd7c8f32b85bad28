//===- TokenData.h - Token streams for language models ----------*- C++ -*-===//
//
// A language model's --data is one stream of token ids: a .npy of integers
// (int32 or int64, any shape, read in C order) or any other file read as
// UTF-8 bytes (a vocabulary of 256). The stream is cut into windows of the
// model's sequence length T, one after the other; a window's input is T
// tokens and its labels the T tokens that follow each (next-token
// prediction). The last twentieth of the windows is the test split.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_DRIVER_TOKENDATA_H
#define BLPA_RUNTIME_DRIVER_TOKENDATA_H

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace blpa::driver {

/// Windows [first, first + count) of a token stream.
struct TokenSet {
  std::shared_ptr<const std::vector<int64_t>> tokens;
  int64_t window = 0;
  int64_t first = 0, count = 0;
  /// The largest token id, plus one.
  int64_t vocabulary = 0;

  /// Writes window `index`'s T input tokens and T next-token labels.
  void sample(int64_t index, int64_t *input, int64_t *labels) const;
};

/// Both splits of one stream, sharing its tokens (read once).
struct TokenSplits {
  std::shared_ptr<TokenSet> train, test;
};

/// The stream in file `path` cut into windows of `window` tokens, split
/// into training and test windows; `flag` names the option in errors.
TokenSplits loadTokenSets(const std::string &path, int64_t window,
                          const std::string &flag);

} // namespace blpa::driver

#endif // BLPA_RUNTIME_DRIVER_TOKENDATA_H
