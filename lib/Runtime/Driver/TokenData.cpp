//===- TokenData.cpp - Token streams for language models ------------------===//

#include "TokenData.h"
#include "Error.h"
#include "FileUtil.h"
#include "Npy.h"

#include <algorithm>

namespace blpa::driver {

namespace {

bool endsWith(const std::string &text, const std::string &suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::vector<int64_t> readTokens(const std::string &path,
                                const std::string &flag) {
  if (endsWith(path, ".npy")) {
    std::vector<int64_t> tokens = npyToInt64(readNpy(path, flag), flag);
    auto negative = std::find_if(tokens.begin(), tokens.end(),
                                 [](int64_t t) { return t < 0; });
    if (negative != tokens.end())
      throw DriverError(flag + " " + path + ": token " +
                        std::to_string(*negative) + " at position " +
                        std::to_string(negative - tokens.begin()) +
                        " is negative; token ids start at 0");
    return tokens;
  }
  std::string bytes = readWholeFile(path, flag);
  return std::vector<int64_t>(
      reinterpret_cast<const unsigned char *>(bytes.data()),
      reinterpret_cast<const unsigned char *>(bytes.data()) + bytes.size());
}

} // namespace

void TokenSet::sample(int64_t index, int64_t *input, int64_t *labels) const {
  const int64_t *start = tokens->data() + (first + index) * window;
  std::copy(start, start + window, input);
  std::copy(start + 1, start + 1 + window, labels);
}

TokenSplits loadTokenSets(const std::string &path, int64_t window,
                          const std::string &flag) {
  auto tokens = std::make_shared<std::vector<int64_t>>(readTokens(path, flag));
  int64_t windows =
      tokens->size() > 1 ? int64_t(tokens->size() - 1) / window : 0;
  int64_t testWindows = windows / 20;
  TokenSet all;
  all.tokens = tokens;
  all.window = window;
  all.vocabulary = tokens->empty()
                       ? 0
                       : *std::max_element(tokens->begin(), tokens->end()) + 1;
  TokenSplits splits{std::make_shared<TokenSet>(all),
                     std::make_shared<TokenSet>(all)};
  splits.train->count = windows - testWindows;
  splits.test->first = windows - testWindows;
  splits.test->count = testWindows;
  return splits;
}

} // namespace blpa::driver
