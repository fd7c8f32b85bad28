//===- Batches.cpp - Where a training loop's batches come from ------------===//

#include "Batches.h"
#include "Random.h"

#include <algorithm>
#include <numeric>

namespace blpa::driver {

namespace {

/// Epochs over `count` samples in a fresh shuffled order each, in full
/// batches (an epoch's tail that does not fill one is left out): the order
/// depends only on the seed and the position in the run.
class ShuffledEpochs {
public:
  ShuffledEpochs(int64_t count, int64_t batchSize, uint64_t seed)
      : batchSize(batchSize), random(seed), order(count), position(count) {
    std::iota(order.begin(), order.end(), 0);
  }

  /// The samples of the next batch (valid until the next call).
  const int64_t *nextBatch() {
    if (position + batchSize > int64_t(order.size())) {
      random.shuffle(order);
      position = 0;
    }
    position += batchSize;
    return &order[position - batchSize];
  }

private:
  int64_t batchSize;
  Random random;
  std::vector<int64_t> order;
  int64_t position;
};

/// Batches from a labelled set whose subclass writes each sample (fill);
/// two buffers alternate, so a batch stays valid for one more call of
/// next() than the contract asks (what a loader thread needs).
template <typename Value> class ShuffledBatches : public BatchSource {
public:
  ShuffledBatches(int64_t count, int64_t batchSize, int64_t valuesPerSample,
                  int64_t labelsPerSample, uint64_t seed, Shard shard)
      : batchSize(batchSize), valuesPerSample(valuesPerSample),
        labelsPerSample(labelsPerSample), shard(shard),
        epochs(count, batchSize * shard.count, seed) {
    for (Buffer &buffer : buffers) {
      buffer.values.resize(batchSize * valuesPerSample);
      buffer.labels.resize(batchSize * labelsPerSample);
    }
  }

  void skip(int64_t count) override {
    for (int64_t i = 0; i < count; ++i)
      epochs.nextBatch();
    served += count * jobBatch();
  }

  Batch next() override {
    Buffer &buffer = buffers[served / jobBatch() % 2];
    int64_t first = shard.index * batchSize;
    const int64_t *indices = epochs.nextBatch() + first;
    for (int64_t i = 0; i < batchSize; ++i)
      fill(indices[i], served + first + i, &buffer.values[i * valuesPerSample],
           &buffer.labels[i * labelsPerSample]);
    served += jobBatch();
    return {{buffer.values.data()}, buffer.labels.data()};
  }

protected:
  /// Writes sample `index`, the run's sample number `drawn`.
  virtual void fill(int64_t index, uint64_t drawn, Value *values,
                    int64_t *labels) = 0;

private:
  struct Buffer {
    std::vector<Value> values;
    std::vector<int64_t> labels;
  };

  /// The samples of one step over every replica.
  int64_t jobBatch() const { return batchSize * shard.count; }

  int64_t batchSize, valuesPerSample, labelsPerSample;
  Shard shard;
  ShuffledEpochs epochs;
  /// Samples the job has handed out so far: the augmentation's draw
  /// counter.
  uint64_t served = 0;
  Buffer buffers[2];
};

class DatasetBatches : public ShuffledBatches<float> {
public:
  /// `imageShape` is one sample's [C, H, W] when augmenting.
  DatasetBatches(const ImageSet &images, int64_t batchSize, uint64_t seed,
                 Augmentation augmentation, Shape imageShape, Shard shard)
      : ShuffledBatches(images.count, batchSize, images.pixelsPerImage, 1, seed,
                        shard),
        images(images), seed(seed), augmentation(augmentation),
        imageShape(std::move(imageShape)) {}

private:
  void fill(int64_t index, uint64_t drawn, float *image,
            int64_t *label) override {
    images.normalizedImage(index, image);
    if (augmentation.enabled())
      augmentImage(augmentation, image, imageShape[0], imageShape[1],
                   imageShape[2], seed, drawn, scratch);
    *label = images.labels[index];
  }

  const ImageSet &images;
  uint64_t seed;
  Augmentation augmentation;
  Shape imageShape;
  std::vector<float> scratch;
};

class TokenBatches : public ShuffledBatches<int64_t> {
public:
  TokenBatches(const TokenSet &tokens, int64_t batchSize, uint64_t seed,
               Shard shard)
      : ShuffledBatches(tokens.count, batchSize, tokens.window, tokens.window,
                        seed, shard),
        tokens(tokens) {}

private:
  void fill(int64_t index, uint64_t, int64_t *input,
            int64_t *labels) override {
    tokens.sample(index, input, labels);
  }

  const TokenSet &tokens;
};

class SyntheticBatches : public BatchSource {
public:
  SyntheticBatches(const Manifest &manifest, int64_t batchCount,
                   uint64_t seed) {
    Random random(seed);
    int64_t classes = manifest.classCount();
    for (int64_t b = 0; b < batchCount; ++b) {
      for (const TensorRecord &input : manifest.inputs) {
        inputs.emplace_back(input.indices ? 0 : numElements(input.shape));
        ids.emplace_back(input.indices ? numElements(input.shape) : 0);
        for (float &value : inputs.back())
          value = random.normal();
        for (int64_t &id : ids.back())
          id = random.below(std::max<int64_t>(input.indexBound, 1));
      }
      labels.emplace_back(manifest.labelCount());
      for (int64_t &label : labels.back())
        label = random.below(classes);
    }
    inputsPerBatch = manifest.inputs.size();
  }

  void skip(int64_t count) override {
    current = (current + count) % labels.size();
  }

  Batch next() override {
    Batch batch;
    for (size_t i = current * inputsPerBatch; i < (current + 1) * inputsPerBatch;
         ++i)
      batch.inputs.push_back(inputs[i].empty() ? static_cast<const void *>(
                                                     ids[i].data())
                                               : inputs[i].data());
    batch.labels = labels[current].data();
    current = (current + 1) % labels.size();
    return batch;
  }

private:
  /// Per batch and input: random values, and token ids for index inputs.
  std::vector<std::vector<float>> inputs;
  std::vector<std::vector<int64_t>> ids;
  std::vector<std::vector<int64_t>> labels;
  size_t inputsPerBatch = 0;
  size_t current = 0;
};

} // namespace

std::unique_ptr<BatchSource>
makeDatasetBatches(const ImageSet &images, int64_t batchSize, uint64_t seed,
                   Augmentation augmentation, Shape imageShape, Shard shard) {
  return std::make_unique<DatasetBatches>(images, batchSize, seed, augmentation,
                                          std::move(imageShape), shard);
}

std::unique_ptr<BatchSource> makeTokenBatches(const TokenSet &tokens,
                                              int64_t batchSize, uint64_t seed,
                                              Shard shard) {
  return std::make_unique<TokenBatches>(tokens, batchSize, seed, shard);
}

std::unique_ptr<BatchSource> makeSyntheticBatches(const Manifest &manifest,
                                                  int64_t batchCount,
                                                  uint64_t seed) {
  return std::make_unique<SyntheticBatches>(manifest, batchCount, seed);
}

PrefetchingBatches::PrefetchingBatches(std::unique_ptr<BatchSource> inner)
    : inner(std::move(inner)) {}

PrefetchingBatches::~PrefetchingBatches() {
  {
    std::lock_guard<std::mutex> lock(mutex);
    stopping = true;
  }
  changed.notify_all();
  if (loader.joinable())
    loader.join();
}

void PrefetchingBatches::skip(int64_t count) {
  // Before the loader starts, `inner` is this thread's alone.
  if (loader.joinable())
    throw std::logic_error("PrefetchingBatches::skip after next()");
  inner->skip(count);
}

Batch PrefetchingBatches::next() {
  if (!loader.joinable())
    loader = std::thread([this] { loadAhead(); });
  std::unique_lock<std::mutex> lock(mutex);
  changed.wait(lock, [this] { return ready || failure; });
  if (failure)
    std::rethrow_exception(failure);
  Batch batch = std::move(*ready);
  ready.reset();
  lock.unlock();
  // The caller is done with the previous batch: its buffer may be refilled.
  changed.notify_all();
  return batch;
}

void PrefetchingBatches::loadAhead() {
  std::unique_lock<std::mutex> lock(mutex);
  while (true) {
    changed.wait(lock, [this] { return stopping || !ready; });
    if (stopping)
      return;
    lock.unlock();
    std::optional<Batch> batch;
    std::exception_ptr error;
    try {
      batch = inner->next();
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    ready = std::move(batch);
    failure = error;
    changed.notify_all();
    if (failure)
      return;
  }
}

} // namespace blpa::driver
