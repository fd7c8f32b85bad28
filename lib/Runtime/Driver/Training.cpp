//===- Training.cpp - Training loops of a blpa executable -----------------===//

#include "Training.h"
#include "Augment.h"
#include "Batches.h"
#include "Checkpoint.h"
#include "Cifar.h"
#include "Error.h"
#include "FileUtil.h"
#include "Idx.h"
#include "Manifest.h"
#include "Model.h"
#include "Normalize.h"
#include "NpyData.h"
#include "Options.h"
#include "Profile.h"
#include "Replicas.h"
#include "Schedule.h"
#include "Session.h"
#include "TokenData.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <functional>

namespace blpa::driver {

namespace {

/// The --log file: one JSON object per line, flushed as written so that a
/// killed run keeps the steps it did.
class JsonlLog {
public:
  explicit JsonlLog(const std::string &path) {
    if (path.empty())
      return;
    file = std::fopen(path.c_str(), "w");
    if (!file)
      throw DriverError("--log " + path + ": cannot open: " + errnoMessage());
  }
  ~JsonlLog() {
    if (file)
      std::fclose(file);
  }
  JsonlLog(const JsonlLog &) = delete;
  JsonlLog &operator=(const JsonlLog &) = delete;

  void write(const std::string &line) {
    if (!file)
      return;
    std::fprintf(file, "%s\n", line.c_str());
    std::fflush(file);
  }

private:
  FILE *file = nullptr;
};

/// A measurement as a JSON number in `format` (JSON has no NaN or
/// infinity; those become null).
std::string jsonNumber(double value, const char *format) {
  if (!std::isfinite(value))
    return "null";
  char text[64];
  std::snprintf(text, sizeof(text), format, value);
  return text;
}

/// A float32 the run computed (a loss, the rate the kernels use) as a JSON
/// number that reads back as exactly that float32: 9 significant digits
/// suffice, and lie so close to the value that reading them as a double
/// first (Python's json, then numpy.float32) cannot round to a neighbour.
std::string jsonNumber(float value) { return jsonNumber(value, "%.9g"); }

/// A double (an accuracy) as the shortest JSON number that reads back as
/// exactly that double.
std::string jsonNumber(double value) {
  if (!std::isfinite(value))
    return "null";
  char text[32];
  return std::string(text, std::to_chars(text, text + sizeof(text), value).ptr);
}

/// Split "train" or "test" of the data set `--data` names: NumPy arrays,
/// CIFAR binary files or (Fashion-)MNIST IDX files.
ImageSet loadSplit(const std::string &data, const std::string &split) {
  if (isNpyData(data))
    return loadNpyData(data, split, "--data");
  if (isCifarDirectory(data))
    return loadCifar(data, split, "--data");
  return loadImageSet(data, split == "test" ? "t10k" : split, "--data");
}

/// With --resume, restores the checkpoint's parameters, momenta and step
/// and moves the data past the batches already trained on; returns the
/// number of steps done, at most `lastStep`.
int64_t resumeFrom(const Options &options, const Manifest &manifest,
                   int64_t lastStep, Session &session, BatchSource &source) {
  if (options.resumePath.empty())
    return 0;
  Checkpoint checkpoint = loadCheckpoint(options.resumePath, manifest);
  if (checkpoint.seed != options.seed)
    throw DriverError("--resume " + options.resumePath +
                      " was written with "
                      "--seed " +
                      std::to_string(checkpoint.seed) +
                      "; resume with the same seed");
  if (checkpoint.step > uint64_t(lastStep))
    throw DriverError("--resume " + options.resumePath + " is after step " +
                      std::to_string(checkpoint.step) + ", past this run's " +
                      "last step " + std::to_string(lastStep) +
                      " (--steps counts from the start of training)");
  for (size_t i = 0; i < manifest.params.size(); ++i)
    session.restore(i, checkpoint.params[i], checkpoint.momenta[i]);
  session.setStep(checkpoint.step);
  source.skip(int64_t(checkpoint.step));
  std::printf("resumed after step %llu from %s\n",
              static_cast<unsigned long long>(checkpoint.step),
              options.resumePath.c_str());
  return int64_t(checkpoint.step);
}

/// This replica's part of each batch.
Shard replicaShard() { return {replicas().rank, replicas().size}; }

/// The samples of one step over every replica of the job.
int64_t jobBatchSize(const Manifest &manifest) {
  return manifest.batchSize() * replicas().size;
}

/// Throws unless a classifier of this manifest can learn from `images`.
void checkDataFitsModel(const Manifest &manifest, const ImageSet &images,
                        const std::string &dir) {
  const TensorRecord &input = manifest.inputs[0];
  int64_t perSample = numElements(input.shape) / manifest.batchSize();
  if (manifest.inputs.size() != 1 || perSample != images.pixelsPerImage)
    throw DriverError(
        "--data " + dir + ": the images have " +
        std::to_string(images.pixelsPerImage) +
        " values, so the model needs one data input of that many values per "
        "sample (e.g. [N, 1, 28, 28] for MNIST, [N, 3, 32, 32] for CIFAR), "
        "but its first input is '" +
        input.name + "' " + formatShape(input.shape) + " and it has " +
        std::to_string(manifest.inputs.size()) + " data input(s)");
  if (images.count < jobBatchSize(manifest))
    throw DriverError("--data " + dir + ": " + std::to_string(images.count) +
                      " images are fewer than one batch of " +
                      std::to_string(jobBatchSize(manifest)));
  int64_t maxLabel =
      *std::max_element(images.labels.begin(), images.labels.end());
  if (maxLabel >= manifest.classCount())
    throw DriverError("--data " + dir + ": labels go up to " +
                      std::to_string(maxLabel) + " but output 0 of the " +
                      "model has only " +
                      std::to_string(manifest.classCount()) + " classes");
}

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

/// SIGINT asks the loop to stop after the step in flight.
volatile std::sig_atomic_t interruptRequested = 0;

extern "C" void requestInterrupt(int) { interruptRequested = 1; }

/// The progress of a run on stdout: on a terminal one line rewritten after
/// every step; otherwise (a log, a pipe) a plain line every twentieth of
/// the run. Each says the step, the epoch, the mean loss and throughput
/// since the previous line, and the time left at that throughput.
class Progress {
public:
  Progress(int64_t firstStep, int64_t steps, int64_t stepsPerEpoch,
           int64_t batchSize)
      : steps(steps), stepsPerEpoch(std::max<int64_t>(1, stepsPerEpoch)),
        batchSize(batchSize), terminal(isatty(STDOUT_FILENO)),
        every(std::max<int64_t>(1, (steps - firstStep) / 20)) {}

  void record(int64_t step, float loss, double seconds) {
    lossSum += loss;
    secondsSum += seconds;
    ++count;
    bool last = step == steps;
    if (!terminal && step % every != 0 && !last)
      return;
    double perStep = secondsSum / count;
    long long left = std::llround(perStep * double(steps - step));
    std::printf("%sstep %lld/%lld  epoch %lld  loss %.4f  %.1f images/s  "
                "%lld:%02lld left%s",
                terminal ? "\r" : "", static_cast<long long>(step),
                static_cast<long long>(steps),
                static_cast<long long>((step - 1) / stepsPerEpoch + 1),
                lossSum / count, count * batchSize / secondsSum, left / 60,
                left % 60, terminal && !last ? "\033[K" : "\n");
    std::fflush(stdout);
    if (terminal && step % every != 0 && !last)
      return;
    lossSum = secondsSum = 0;
    count = 0;
  }

private:
  int64_t steps, stepsPerEpoch, batchSize;
  bool terminal;
  int64_t every;
  double lossSum = 0, secondsSum = 0;
  int64_t count = 0;
};

/// What the training loop calls besides the steps.
struct LoopHooks {
  int64_t stepsPerEpoch = 1;
  std::optional<int64_t> evalEvery, checkpointEvery;
  std::function<void(int64_t)> evaluateAt;
  /// Null when no --checkpoint was given.
  std::function<void(int64_t)> checkpointAt;
  /// With --profile: folds in the step's op times.
  StepProfiler *profiler = nullptr;
};

/// Runs steps firstStep + 1 to `steps` at the schedule's rates, printing
/// the mean loss and throughput of every twentieth of the run, logging
/// every step, evaluating and checkpointing as `hooks` ask, and stopping
/// cleanly (a checkpoint first, when asked for) on SIGINT.
void trainSteps(Session &session, BatchSource &source, const Manifest &manifest,
                int64_t firstStep, int64_t steps,
                const LearningRateSchedule &schedule, const LoopHooks &hooks,
                JsonlLog &log) {
  int64_t jobBatch = jobBatchSize(manifest);
  Progress progress(firstStep, steps, hooks.stepsPerEpoch, jobBatch);
  for (int64_t step = firstStep + 1; step <= steps; ++step) {
    Clock::time_point start = Clock::now();
    Batch batch = source.next();
    double lr = schedule.at(step - 1);
    session.setLearningRate(lr);
    // The job's loss: the mean of the replicas' (each over its part).
    auto loss =
        float(replicas().mean(session.trainStep(batch.inputs, batch.labels)));
    double seconds = secondsSince(start);
    if (hooks.profiler)
      hooks.profiler->endStep(session.lastStepSeconds());
    double imagesPerSecond = jobBatch / seconds;
    // A float32 loss in 9 significant digits reads back bit for bit, so
    // two runs' logs can be compared exactly (scripts/gpu-check does).
    log.write("{\"step\": " + std::to_string(step) + ", \"loss\": " +
              jsonNumber(loss) + ", \"lr\": " + jsonNumber(float(lr)) +
              ", \"images_per_s\": " + jsonNumber(imagesPerSecond, "%.1f") +
              ", \"step_ms\": " +
              jsonNumber(session.lastStepSeconds() * 1e3, "%.3f") + "}");
    if (hooks.evalEvery && step % *hooks.evalEvery == 0 && step != steps)
      hooks.evaluateAt(step);
    if (hooks.checkpointAt && hooks.checkpointEvery &&
        step % *hooks.checkpointEvery == 0 && step != steps)
      hooks.checkpointAt(step);
    if (interruptRequested) {
      if (hooks.checkpointAt)
        hooks.checkpointAt(step);
      throw Interrupted("interrupted after step " + std::to_string(step) +
                        (hooks.checkpointAt ? "; the checkpoint has it"
                                            : "; no --checkpoint was given"));
    }
    if (!std::isfinite(loss))
      throw DriverError(std::string("the loss is ") +
                        (std::isnan(loss) ? "NaN" : "infinite") + " at step " +
                        std::to_string(step) +
                        ": training diverged; use a smaller --lr");
    progress.record(step, loss, seconds);
  }
}

/// -log softmax(logits)[label] over `classes` logits, in double, and
/// whether the label is the largest logit's.
std::pair<double, bool> crossEntropy(const float *logits, int64_t classes,
                                     int64_t label) {
  const float *top = std::max_element(logits, logits + classes);
  double sum = 0;
  for (int64_t j = 0; j < classes; ++j)
    sum += std::exp(double(logits[j]) - *top);
  return {std::log(sum) + *top - logits[label], top - logits == label};
}

/// Accuracy and mean loss of output 0 (the logits) over full test batches,
/// logged with the number of training steps done.
void evaluate(Session &session, const Manifest &manifest,
              const ImageSet &images, std::optional<int64_t> maxBatches,
              int64_t step, JsonlLog &log) {
  int64_t batchSize = manifest.batchSize();
  int64_t batches =
      std::min(images.count / batchSize, maxBatches.value_or(images.count));
  if (batches == 0)
    return;
  HostOutputs outputs(manifest);
  int64_t classes = outputs.values[0].size() / batchSize;
  std::vector<float> pixels(batchSize * images.pixelsPerImage);
  // Replicas deal the batches round-robin and add up their sums.
  const Replicas &job = replicas();
  std::vector<double> sums = {0, 0}; // loss, correct
  for (int64_t b = job.rank; b < batches; b += job.size) {
    for (int64_t i = 0; i < batchSize; ++i)
      images.normalizedImage(b * batchSize + i,
                             &pixels[i * images.pixelsPerImage]);
    session.forward({static_cast<const void *>(pixels.data())},
                    outputs.pointers);
    for (int64_t i = 0; i < batchSize; ++i) {
      auto [loss, right] =
          crossEntropy(&outputs.values[0][i * classes], classes,
                       images.labels[b * batchSize + i]);
      sums[0] += loss;
      sums[1] += right;
    }
  }
  job.sum(sums);
  int64_t total = batches * batchSize;
  double accuracy = sums[1] / total;
  std::printf("test accuracy: %.4f (%lld images), loss %.4f\n", accuracy,
              static_cast<long long>(total), sums[0] / total);
  log.write("{\"test_accuracy\": " + jsonNumber(accuracy) +
            ", \"test_loss\": " + jsonNumber(sums[0] / total) +
            ", \"test_images\": " + std::to_string(total) +
            ", \"after_step\": " + std::to_string(step) + "}");
}

/// The mean next-token loss and accuracy of output 0 (logits [B, T, V])
/// over full batches of the test windows, logged with the number of
/// training steps done.
void evaluateTokens(Session &session, const Manifest &manifest,
                    const TokenSet &tokens, std::optional<int64_t> maxBatches,
                    int64_t step, JsonlLog &log) {
  int64_t batchSize = manifest.batchSize(), window = tokens.window;
  int64_t batches =
      std::min(tokens.count / batchSize, maxBatches.value_or(tokens.count));
  if (batches == 0)
    return;
  HostOutputs outputs(manifest);
  int64_t vocab = manifest.classCount();
  std::vector<int64_t> input(batchSize * window), labels(batchSize * window);
  // Replicas deal the batches round-robin and add up their sums.
  const Replicas &job = replicas();
  std::vector<double> sums = {0, 0}; // loss, correct
  for (int64_t b = job.rank; b < batches; b += job.size) {
    for (int64_t i = 0; i < batchSize; ++i)
      tokens.sample(b * batchSize + i, &input[i * window], &labels[i * window]);
    session.forward({static_cast<const void *>(input.data())},
                    outputs.pointers);
    for (size_t r = 0; r < labels.size(); ++r) {
      auto [loss, right] =
          crossEntropy(&outputs.values[0][r * vocab], vocab, labels[r]);
      sums[0] += loss;
      sums[1] += right;
    }
  }
  job.sum(sums);
  int64_t total = batches * batchSize * window;
  double loss = sums[0] / double(total);
  double accuracy = sums[1] / double(total);
  std::printf("test loss: %.4f, next-token accuracy %.4f (%lld tokens)\n",
              loss, accuracy, static_cast<long long>(total));
  log.write("{\"test_loss\": " + jsonNumber(loss) +
            ", \"test_accuracy\": " + jsonNumber(accuracy) +
            ", \"test_tokens\": " + std::to_string(total) +
            ", \"after_step\": " + std::to_string(step) + "}");
}

/// Gives every replica rank 0's state parameters (batch-norm running
/// statistics, each replica's own unless synchronized), as DDP broadcasts
/// its buffers, so that the replicas' shares of an evaluation evaluate the
/// one model rank 0 saves. Trainable parameters are the same everywhere.
void shareLeadersState(Session &session, const Manifest &manifest) {
  if (replicas().size == 1)
    return;
  for (size_t i = 0; i < manifest.params.size(); ++i) {
    if (manifest.params[i].trainable)
      continue;
    std::vector<float> values = session.readParam(i);
    replicas().shareLeaders(values.data(),
                            int64_t(values.size() * sizeof(float)));
    session.restore(i, values, {});
  }
}

/// Where a run's batches come from, how many make an epoch, and how it is
/// evaluated.
struct TrainingData {
  /// The data sets, declared first so that they outlive the source's
  /// loader thread.
  std::shared_ptr<const void> trainSet, testSet;
  std::unique_ptr<BatchSource> source;
  int64_t stepsPerEpoch = 1;
  /// Null for synthetic data.
  std::function<void(Session &, int64_t, JsonlLog &)> evaluate;
};

/// Training on `batches` of `trainSet` (loaded a batch ahead), evaluated
/// on `testSet` by `evaluateSplit`.
template <typename Set, typename EvaluateFn>
TrainingData makeTrainingData(const Manifest &manifest, const Options &options,
                              std::shared_ptr<Set> trainSet,
                              std::shared_ptr<Set> testSet,
                              std::unique_ptr<BatchSource> batches,
                              EvaluateFn evaluateSplit) {
  TrainingData data;
  data.source = std::make_unique<PrefetchingBatches>(std::move(batches));
  data.stepsPerEpoch = trainSet->count / jobBatchSize(manifest);
  data.trainSet = trainSet;
  data.testSet = testSet;
  data.evaluate = [&manifest, &options, testSet,
                   evaluateSplit](Session &session, int64_t step,
                                  JsonlLog &log) {
    evaluateSplit(session, manifest, *testSet, options.evalBatches, step, log);
  };
  return data;
}

/// Labelled images (--data DIR or arrays), normalized and augmented as
/// asked.
TrainingData loadImageData(const Manifest &manifest, const Options &options) {
  auto trainSet = std::make_shared<ImageSet>(loadSplit(options.dataDir, "train"));
  auto testSet = std::make_shared<ImageSet>(loadSplit(options.dataDir, "test"));
  checkDataFitsModel(manifest, *trainSet, options.dataDir);
  if (testSet->count)
    checkDataFitsModel(manifest, *testSet, options.dataDir);
  std::string normalized = applyNormalization(
      parseNormalization(options.normalize), *trainSet, *testSet);
  if (!normalized.empty())
    std::printf("%s\n", normalized.c_str());
  Augmentation augmentation = parseAugmentation(options.augment);
  Shape imageShape(manifest.inputs[0].shape.begin() + 1,
                   manifest.inputs[0].shape.end());
  if (augmentation.enabled() && imageShape.size() != 3)
    throw DriverError("--augment needs image inputs [N, C, H, W]; input '" +
                      manifest.inputs[0].name + "' is " +
                      formatShape(manifest.inputs[0].shape));
  return makeTrainingData(manifest, options, trainSet, testSet,
                          makeDatasetBatches(*trainSet, manifest.batchSize(),
                                             options.seed, augmentation,
                                             imageShape, replicaShard()),
                          evaluate);
}

/// A language model's token stream (--data FILE): windows of its sequence
/// length, next-token labels.
TrainingData loadTokenData(const Manifest &manifest, const Options &options) {
  const TensorRecord &input = manifest.inputs[0];
  if (manifest.inputs.size() != 1 || input.shape.size() != 2 ||
      manifest.labelShape != input.shape)
    throw DriverError(
        "--data " + options.dataDir +
        ": a token stream trains a language model with one input of token "
        "ids [N, T] and logits [N, T, vocab]; this model's first input is '" +
        input.name + "' " + formatShape(input.shape) + " and its labels " +
        formatShape(manifest.labelShape));
  int64_t window = input.shape[1];
  auto [trainSet, testSet] = loadTokenSets(options.dataDir, window, "--data");
  int64_t vocab = std::min(manifest.classCount(),
                           input.indexBound ? input.indexBound : INT64_MAX);
  if (trainSet->vocabulary > vocab)
    throw DriverError("--data " + options.dataDir + ": token ids go up to " +
                      std::to_string(trainSet->vocabulary - 1) +
                      " but the model's vocabulary has " +
                      std::to_string(vocab) + " entries");
  if (trainSet->count < jobBatchSize(manifest))
    throw DriverError("--data " + options.dataDir + ": " +
                      std::to_string(trainSet->count) +
                      " training windows of " + std::to_string(window) +
                      " tokens are fewer than one batch of " +
                      std::to_string(jobBatchSize(manifest)));
  std::printf("%s: %lld training and %lld test windows of %lld tokens\n",
              options.dataDir.c_str(), static_cast<long long>(trainSet->count),
              static_cast<long long>(testSet->count),
              static_cast<long long>(window));
  return makeTrainingData(manifest, options, trainSet, testSet,
                          makeTokenBatches(*trainSet, manifest.batchSize(),
                                           options.seed, replicaShard()),
                          evaluateTokens);
}

/// Writes `embeddedModel` with the trained weights to `path`, with its
/// weights in external data when `externalData` (the initial weights were
/// stored so) or when they do not fit in 2 GiB.
void saveModel(const Session &session, const Manifest &manifest,
               const OnnxModel &embeddedModel, bool externalData,
               const std::string &path, const std::string &flag,
               bool forInference) {
  std::vector<std::vector<float>> params = session.readParams();
  std::vector<float *> pointers;
  for (std::vector<float> &param : params)
    pointers.push_back(param.data());
  std::string dataPath;
  try {
    dataPath = embeddedModel.saveWithParams(manifest.params, pointers, path,
                                            externalData, forInference);
  } catch (const DriverError &error) {
    throw DriverError(flag + " " + path + ": " + error.what());
  }
  std::printf("saved the trained model%s to %s%s\n",
              forInference ? " for inference" : "", path.c_str(),
              dataPath.empty() ? ""
                               : (" (weights in " + dataPath + ")").c_str());
}

} // namespace

void runTraining(const Manifest &manifest, const Options &options,
                 const OnnxModel &embeddedModel, OnnxModel &initialWeights) {
  if (manifest.classCount() < 1)
    throw DriverError("training needs the model's output 0 to be the logits "
                      "[N, classes]; this executable has no such output");
  if (!options.savePath.empty())
    checkWritableDestination(options.savePath, "--save");
  if (!options.saveInferencePath.empty())
    checkWritableDestination(options.saveInferencePath, "--save-inference");
  TrainingData data;
  if (options.synthetic) {
    // Each replica draws its own random batches.
    data.source = makeSyntheticBatches(
        manifest, options.syntheticBatches,
        options.seed + uint64_t(replicas().rank) * 0x9e3779b97f4a7c15ull);
    data.stepsPerEpoch = options.syntheticBatches;
  } else {
    data = manifest.inputs[0].indices ? loadTokenData(manifest, options)
                                      : loadImageData(manifest, options);
  }
  // One replica speaks for the job: it logs, checkpoints and saves.
  bool leads = replicas().isLeader();
  JsonlLog log(leads ? options.logPath : std::string());
  std::unique_ptr<Session> session =
      openSession(manifest, options, initialWeights, /*skipUpdate=*/false);
  const char *memoryKind = manifest.target == "cpu" ? "host" : "device";
  std::printf("%s memory: %llu bytes allocated at start (arena %llu)\n",
              memoryKind,
              static_cast<unsigned long long>(session->allocatedBytes()),
              static_cast<unsigned long long>(manifest.arenaBytes));
  int64_t steps =
      options.steps.value_or(options.epochs.value_or(0) * data.stepsPerEpoch);
  LearningRateSchedule schedule(options.lrSchedule, *options.lr, options.warmup,
                                steps, data.stepsPerEpoch);
  LoopHooks hooks;
  hooks.stepsPerEpoch = data.stepsPerEpoch;
  hooks.evalEvery = options.evalEvery;
  hooks.checkpointEvery = options.checkpointEvery;
  hooks.evaluateAt = [&](int64_t step) {
    if (!data.evaluate)
      return;
    shareLeadersState(*session, manifest);
    data.evaluate(*session, step, log);
  };
  if (!options.checkpointPath.empty() && leads)
    hooks.checkpointAt = [&](int64_t step) {
      saveCheckpoint(options.checkpointPath, *session, manifest, step,
                     options.seed);
    };
  std::unique_ptr<StepProfiler> profiler;
  if (!options.profilePath.empty()) {
    profiler = std::make_unique<StepProfiler>(manifest, options.profilePath);
    session->setProfile(profiler->hookTarget());
    hooks.profiler = profiler.get();
  }
  int64_t firstStep =
      resumeFrom(options, manifest, steps, *session, *data.source);
  replicas().requireSame(uint64_t(firstStep), [&](uint64_t leaders) {
    return "resumes after step " + std::to_string(firstStep) +
           " but rank 0 after step " + std::to_string(leaders) +
           "; give every rank the same --resume checkpoint";
  });
  std::signal(SIGINT, requestInterrupt);
  trainSteps(*session, *data.source, manifest, firstStep, steps, schedule, hooks,
             log);
  std::signal(SIGINT, SIG_DFL);
  if (int64_t outside = session->outsideBytes())
    std::printf("%s memory: the kernels also took %lld bytes of scratch "
                "outside the plan\n",
                memoryKind, static_cast<long long>(outside));
  if (profiler && leads)
    profiler->write(options.threads.value_or(manifest.defaultThreads));
  // Also when a resume had no steps left: the checkpoint written is then
  // what was restored, byte for byte.
  if (hooks.checkpointAt)
    hooks.checkpointAt(steps);
  hooks.evaluateAt(steps);
  if (!options.savePath.empty() && leads)
    saveModel(*session, manifest, embeddedModel,
              initialWeights.usesExternalData(), options.savePath, "--save",
              /*forInference=*/false);
  if (!options.saveInferencePath.empty() && leads)
    saveModel(*session, manifest, embeddedModel,
              initialWeights.usesExternalData(), options.saveInferencePath,
              "--save-inference", /*forInference=*/true);
}

} // namespace blpa::driver
