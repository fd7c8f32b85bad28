//===- Batches.cpp - Where a training loop's batches come from ------------===//

#include "Batches.h"
#include "Random.h"

#include <numeric>

namespace blpa::driver {

namespace {

class DatasetBatches : public BatchSource {
public:
  /// `imageShape` is one sample's [C, H, W] when augmenting.
  DatasetBatches(const ImageSet &images, int64_t batchSize, uint64_t seed,
                 Augmentation augmentation, Shape imageShape)
      : images(images), batchSize(batchSize), seed(seed), random(seed),
        order(images.count), augmentation(augmentation),
        imageShape(std::move(imageShape)) {
    std::iota(order.begin(), order.end(), 0);
    position = images.count; // Shuffle before the first batch.
    for (Buffer &buffer : buffers) {
      buffer.pixels.resize(batchSize * images.pixelsPerImage);
      buffer.labels.resize(batchSize);
    }
  }

  void skip(int64_t count) override {
    for (int64_t i = 0; i < count; ++i) {
      startEpochIfDone();
      position += batchSize;
      served += batchSize;
    }
  }

  Batch next() override {
    startEpochIfDone();
    Buffer &buffer = buffers[served / batchSize % 2];
    for (int64_t i = 0; i < batchSize; ++i) {
      int64_t index = order[position + i];
      float *image = &buffer.pixels[i * images.pixelsPerImage];
      images.normalizedImage(index, image);
      if (augmentation.enabled())
        augmentImage(augmentation, image, imageShape[0], imageShape[1],
                     imageShape[2], seed, served + i, scratch);
      buffer.labels[i] = images.labels[index];
    }
    position += batchSize;
    served += batchSize;
    return {{buffer.pixels.data()}, buffer.labels.data()};
  }

private:
  void startEpochIfDone() {
    if (position + batchSize > images.count) {
      random.shuffle(order);
      position = 0;
    }
  }

  struct Buffer {
    std::vector<float> pixels;
    std::vector<int64_t> labels;
  };

  const ImageSet &images;
  int64_t batchSize;
  uint64_t seed;
  Random random;
  std::vector<int64_t> order;
  int64_t position;
  /// Samples handed out so far: the augmentation's draw counter.
  uint64_t served = 0;
  Augmentation augmentation;
  Shape imageShape;
  Buffer buffers[2];
  std::vector<float> scratch;
};

class SyntheticBatches : public BatchSource {
public:
  SyntheticBatches(const Manifest &manifest, int64_t batchCount,
                   uint64_t seed) {
    Random random(seed);
    int64_t classes = manifest.classCount();
    for (int64_t b = 0; b < batchCount; ++b) {
      for (const TensorRecord &input : manifest.inputs) {
        inputs.emplace_back(numElements(input.shape));
        for (float &value : inputs.back())
          value = random.normal();
      }
      labels.emplace_back(manifest.labelCount);
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
    for (size_t i = 0; i < inputsPerBatch; ++i)
      batch.inputs.push_back(inputs[current * inputsPerBatch + i].data());
    batch.labels = labels[current].data();
    current = (current + 1) % labels.size();
    return batch;
  }

private:
  std::vector<std::vector<float>> inputs;
  std::vector<std::vector<int64_t>> labels;
  size_t inputsPerBatch = 0;
  size_t current = 0;
};

} // namespace

std::unique_ptr<BatchSource>
makeDatasetBatches(const ImageSet &images, int64_t batchSize, uint64_t seed,
                   Augmentation augmentation, Shape imageShape) {
  return std::make_unique<DatasetBatches>(images, batchSize, seed, augmentation,
                                          std::move(imageShape));
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
