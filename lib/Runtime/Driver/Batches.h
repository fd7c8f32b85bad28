//===- Batches.h - Where a training loop's batches come from ----*- C++ -*-===//
//
// Shuffled epochs over a data set (augmented as asked), a few cycled random
// batches for --synthetic, and a loader thread that makes the next batch
// while the current step runs.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_DRIVER_BATCHES_H
#define BLPA_RUNTIME_DRIVER_BATCHES_H

#include "Augment.h"
#include "Idx.h"
#include "Manifest.h"
#include "TokenData.h"

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace blpa::driver {

/// One batch: a pointer per model input and the labels, valid until the
/// caller asks its source for the following batch.
struct Batch {
  /// float32 values, or int64 token ids for an index input.
  std::vector<const void *> inputs;
  const int64_t *labels = nullptr;
};

class BatchSource {
public:
  virtual ~BatchSource() = default;
  virtual Batch next() = 0;
  /// Moves past `count` batches as next() would, without making them (a
  /// resumed run replays the order from the seed). Only before next().
  virtual void skip(int64_t count) = 0;
};

/// This process's part of each batch of a data-parallel job: replica
/// `index` of `count` takes the index-th run of `batchSize` samples of each
/// batch of count * batchSize, so that the replicas' batches together are
/// the single-process batches of that size, augmented alike.
struct Shard {
  int64_t index = 0;
  int64_t count = 1;
};

/// Epochs over a data set in a fresh shuffled order each, in full batches;
/// its batches depend only on the seed and their position in the run. It
/// alternates between two buffers, so a batch stays valid for one more
/// call of next() than the contract asks (what a loader thread needs).
std::unique_ptr<BatchSource>
makeDatasetBatches(const ImageSet &images, int64_t batchSize, uint64_t seed,
                   Augmentation augmentation, Shape imageShape,
                   Shard shard = {});

/// Epochs over the windows of a token stream, shuffled as images are.
std::unique_ptr<BatchSource> makeTokenBatches(const TokenSet &tokens,
                                              int64_t batchSize, uint64_t seed,
                                              Shard shard = {});

/// A few random batches, made up front and cycled, so that generating them
/// does not count against the measured throughput.
std::unique_ptr<BatchSource> makeSyntheticBatches(const Manifest &manifest,
                                                  int64_t batchCount,
                                                  uint64_t seed);

/// Runs `inner`'s next() on a loader thread one batch ahead of the caller,
/// so that decoding, normalizing and augmenting batch k + 1 overlaps step k.
/// `inner` must keep a batch valid through the call of next() after the
/// one that returned it (as makeDatasetBatches' does). The
/// batches and their order are `inner`'s, so training is unchanged.
class PrefetchingBatches : public BatchSource {
public:
  explicit PrefetchingBatches(std::unique_ptr<BatchSource> inner);
  ~PrefetchingBatches() override;
  PrefetchingBatches(const PrefetchingBatches &) = delete;
  PrefetchingBatches &operator=(const PrefetchingBatches &) = delete;

  Batch next() override;
  void skip(int64_t count) override;

private:
  void loadAhead();

  std::unique_ptr<BatchSource> inner;
  std::thread loader;
  std::mutex mutex;
  std::condition_variable changed;
  /// The batch made ahead, or what went wrong making it.
  std::optional<Batch> ready;
  std::exception_ptr failure;
  bool stopping = false;
};

} // namespace blpa::driver

#endif // BLPA_RUNTIME_DRIVER_BATCHES_H
