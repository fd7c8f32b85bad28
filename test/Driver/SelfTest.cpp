//===- SelfTest.cpp - End-to-end tests of the blpa driver -----------------===//
//
// Runs the driver linked with the fake linear "generated object" as a
// subprocess, the way users and scripts do, and checks its outputs, files
// and error messages. Prints "N passed, M failed"; exits 1 on any failure.
//
//===----------------------------------------------------------------------===//

#include "Error.h"
#include "FileUtil.h"
#include "LinearModel.h"
#include "Model.h"
#include "Npy.h"
#include "Random.h"

#include "blpa/Onnx/ExternalData.h"

#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <dirent.h>
#include <fcntl.h>
#include <functional>
#include <sstream>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace blpa::driver;
using namespace blpa::test;

namespace {

const std::string trainExe = BLPA_FAKE_TRAIN_EXE;
const std::string inferExe = BLPA_FAKE_INFER_EXE;
const std::string fakeModelPath = BLPA_FAKE_MODEL_ONNX;
const std::string fashionMnistDir = "/usr/share/datasets/fashion-mnist";

int passed = 0, failed = 0;
std::string tmpDir;

void check(bool ok, const std::string &what) {
  ++(ok ? passed : failed);
  if (!ok)
    std::printf("FAIL: %s\n", what.c_str());
}

std::string tmpPath(const std::string &name) { return tmpDir + "/" + name; }

bool fileExists(const std::string &path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0;
}

bool contains(const std::string &text, const std::string &part) {
  return text.find(part) != std::string::npos;
}

/// Whether `dir` holds a leftover `*.tmp-<pid>` of an atomic write.
bool directoryHasTemporaryFile(const std::string &dir) {
  bool found = false;
  if (DIR *listing = opendir(dir.c_str())) {
    while (dirent *entry = readdir(listing))
      found |= contains(entry->d_name, ".tmp-");
    closedir(listing);
  }
  return found;
}

struct RunResult {
  int status = -1;
  std::string out, err;
  std::string describe() const {
    return "status " + std::to_string(status) + ", stdout:\n" + out +
           "stderr:\n" + err;
  }
};

/// Runs `exe args...` with stdout and stderr captured in files.
RunResult run(const std::string &exe, const std::vector<std::string> &args) {
  std::string outPath = tmpPath("stdout.txt"), errPath = tmpPath("stderr.txt");
  pid_t pid = fork();
  if (pid == 0) {
    int out = open(outPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = open(errPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(out, 1);
    dup2(err, 2);
    std::vector<char *> argv{const_cast<char *>(exe.c_str())};
    for (const std::string &arg : args)
      argv.push_back(const_cast<char *>(arg.c_str()));
    argv.push_back(nullptr);
    execv(exe.c_str(), argv.data());
    _exit(127);
  }
  int waitStatus = 0;
  waitpid(pid, &waitStatus, 0);
  RunResult result;
  result.status = WIFEXITED(waitStatus) ? WEXITSTATUS(waitStatus)
                                        : 128 + WTERMSIG(waitStatus);
  result.out = readWholeFile(outPath, "stdout");
  result.err = readWholeFile(errPath, "stderr");
  return result;
}

/// The run must fail with status 1 and exactly one `error: ` line.
void expectError(const std::string &exe, const std::vector<std::string> &args,
                 const std::string &expected) {
  RunResult result = run(exe, args);
  bool oneLine = result.err.rfind("error: ", 0) == 0 &&
                 result.err.find('\n') == result.err.size() - 1;
  check(result.status == 1 && oneLine && contains(result.err, expected),
        "expected one error line containing '" + expected + "'; got " +
            result.describe());
}

std::vector<ParamRecord> linearParams() {
  return {{weightName, {classes, features}, true},
          {biasName, {classes}, true},
          {inputMeanName, {1}, false}};
}

std::vector<std::vector<float>> readModelParams(const std::string &path) {
  OnnxModel model = readModelFile(path, "model");
  std::vector<std::vector<float>> values;
  std::vector<float *> pointers;
  for (const ParamRecord &param : linearParams()) {
    values.emplace_back(numElements(param.shape));
    pointers.push_back(values.back().data());
  }
  model.readParams(linearParams(), pointers);
  return values;
}

float maxAbsDiff(const std::vector<float> &a, const std::vector<float> &b) {
  if (a.size() != b.size())
    return INFINITY;
  float diff = 0;
  for (size_t i = 0; i < a.size(); ++i)
    diff = std::fmax(diff, std::fabs(a[i] - b[i]));
  return diff;
}

std::vector<float> readFloatNpy(const std::string &path, Shape *shape) {
  NpyArray array = readNpy(path, "dump");
  if (shape)
    *shape = array.shape;
  return npyToFloat32(array);
}

/// Random inputs X.npy, labels Y.npy in the temporary directory.
struct StepInputs {
  std::vector<float> x;
  std::vector<int64_t> labels;
};

StepInputs writeStepInputs() {
  Random random(7);
  StepInputs inputs{std::vector<float>(batchSize * features),
                    std::vector<int64_t>(batchSize)};
  for (float &value : inputs.x)
    value = random.normal();
  for (int64_t &label : inputs.labels)
    label = random.below(classes);
  writeNpy(tmpPath("X.npy"), {batchSize, features}, inputs.x.data());
  writeNpy(tmpPath("Y.npy"), {batchSize}, inputs.labels.data());
  return inputs;
}

/// --check-step from `weightsPath` (empty: the embedded model) must dump
/// the loss and gradients of LinearModel.h at those weights.
void checkStepAgainstReference(const StepInputs &inputs,
                               const std::string &weightsPath) {
  std::string dump = tmpPath("check-step");
  std::vector<std::string> args = {"--check-step",
                                   "--inputs",
                                   tmpPath("X.npy"),
                                   "--labels",
                                   tmpPath("Y.npy"),
                                   "--dump",
                                   dump};
  if (!weightsPath.empty())
    args.insert(args.end(), {"--weights", weightsPath});
  RunResult result = run(trainExe, args);
  check(result.status == 0, "--check-step runs: " + result.describe());
  if (result.status != 0)
    return;

  auto params =
      readModelParams(weightsPath.empty() ? fakeModelPath : weightsPath);
  std::vector<float> logits(batchSize * classes), dlogits(logits.size());
  std::vector<float> dweight(classes * features), dbias(classes);
  linearForward(inputs.x.data(), params[0].data(), params[1].data(),
                logits.data());
  float loss =
      softmaxCrossEntropy(logits.data(), inputs.labels.data(), dlogits.data());
  linearBackward(inputs.x.data(), dlogits.data(), dweight.data(), dbias.data());

  Shape lossShape, weightShape;
  std::vector<float> dumpedLoss = readFloatNpy(dump + "/loss.npy", &lossShape);
  check(lossShape.empty() && maxAbsDiff(dumpedLoss, {loss}) < 1e-5f,
        "loss.npy is the scalar loss " + std::to_string(loss));
  check(maxAbsDiff(readFloatNpy(dump + "/grads/fc.weight.npy", &weightShape),
                   dweight) < 1e-6f &&
            weightShape == Shape{classes, features},
        "grads/fc.weight.npy is the weight gradient [10, 784]");
  check(maxAbsDiff(readFloatNpy(dump + "/grads/fc_bias.npy", nullptr), dbias) <
            1e-6f,
        "grads/fc_bias.npy (sanitized 'fc/bias') is the bias gradient");
  check(!fileExists(dump + "/grads/input_mean.npy"),
        "no gradient is dumped for the state param");
}

std::vector<double> loggedLosses(const std::string &logPath) {
  std::istringstream lines(readWholeFile(logPath, "log"));
  std::vector<double> losses;
  for (std::string line; std::getline(lines, line);)
    if (contains(line, "\"step\""))
      losses.push_back(std::atof(line.c_str() + line.find("\"loss\": ") + 8));
  return losses;
}

void testHelpAndFlagErrors() {
  RunResult help = run(trainExe, {"--help"});
  check(help.status == 0 && contains(help.out, "--check-step") &&
            contains(help.out, "compiled for training"),
        "--help: " + help.describe());
  expectError(trainExe, {"--bogus"}, "unknown flag '--bogus'");
  expectError(trainExe, {"stray"}, "unexpected argument 'stray'");
  expectError(trainExe, {}, "nothing to do");
  expectError(trainExe, {"--synthetic", "--steps", "abc", "--lr", "0.1"},
              "--steps: expected an integer");
  expectError(trainExe, {"--synthetic", "--lr", "0.1"},
              "--synthetic needs --steps");
  expectError(trainExe, {"--synthetic", "--steps", "1", "--lr"},
              "--lr needs a value");
  expectError(trainExe, {"--synthetic", "--log", "--steps", "1"},
              "--log needs a value");
  expectError(trainExe,
              {"--synthetic", "--data", "/x", "--steps", "1", "--lr", "1"},
              "--data and --synthetic cannot be combined");
  expectError(trainExe,
              {"--synthetic", "--steps", "1", "--lr", "1", "--labels", "y"},
              "--labels has no effect with --synthetic");
  // The fake model's manifest names no ops: nothing to profile.
  expectError(trainExe,
              {"--synthetic", "--steps", "2", "--lr", "1", "--profile",
               "p.json"},
              "--profile needs an executable whose manifest names the "
              "step's ops");
  expectError(trainExe, {"--check-step", "--profile", "p.json"},
              "--profile has no effect with --check-step");
  expectError(trainExe, {"--inputs", "x.npy", "--dump", "d"}, "nothing to do");
  expectError(trainExe, {"--check-step", "--inputs", "x.npy", "--dump", "d"},
              "--check-step needs --labels");
  expectError(inferExe, {"--steps", "10", "--inputs", "x.npy"},
              "--steps is only for training executables");
  expectError(inferExe, {"--synthetic"}, "--synthetic is only for training");
  expectError(inferExe, {"--inputs", "x.npy"},
              "this --infer executable needs --dump DIR");
}

void testFileErrors() {
  writeStepInputs();
  std::string garbage = tmpPath("garbage.bin");
  writeFileAtomically(garbage, "not a model", 11);
  std::vector<float> small(12);
  writeNpy(tmpPath("small.npy"), {3, 4}, small.data());
  std::vector<float> floatLabels(batchSize);
  writeNpy(tmpPath("floatLabels.npy"), {batchSize}, floatLabels.data());
  std::vector<int64_t> badLabels(batchSize, 3);
  badLabels[5] = 12;
  writeNpy(tmpPath("badLabels.npy"), {batchSize}, badLabels.data());
  auto checkStep = [&](const std::string &x, const std::string &y) {
    return std::vector<std::string>{"--check-step", "--inputs", x,
                                    "--labels",     y,          "--dump",
                                    tmpPath("dump")};
  };
  std::string x = tmpPath("X.npy"), y = tmpPath("Y.npy");
  expectError(trainExe, checkStep(tmpPath("small.npy"), y),
              "has shape [3, 4] but data input 'x' needs shape [64, 784]");
  expectError(trainExe, checkStep(x, tmpPath("badLabels.npy")),
              "label 12 at index 5 is outside [0, 10)");
  expectError(trainExe, checkStep(x, tmpPath("floatLabels.npy")),
              "integer labels");
  expectError(trainExe, checkStep(garbage, y), "not a .npy file");
  expectError(trainExe, checkStep(tmpPath("missing.npy"), y),
              "--inputs " + tmpPath("missing.npy") + ": cannot open");
  expectError(trainExe,
              {"--check-step", "--inputs", x, x, "--labels", y, "--dump",
               tmpPath("dump")},
              "got 2 file(s) but the model has 1 data input(s)");
  writeFileAtomically(tmpPath("plainfile"), "x", 1);
  std::vector<std::string> dumpOnFile = checkStep(x, y);
  dumpOnFile.back() = tmpPath("plainfile");
  expectError(trainExe, dumpOnFile,
              "--dump " + tmpPath("plainfile") +
                  ": exists and is not a directory");
}

/// A copy of the fake model with `edit` applied, written to `name`.
std::string editedModel(const std::string &name,
                        const std::function<void(onnx::GraphProto &)> &edit) {
  std::string bytes = readWholeFile(fakeModelPath, "model");
  onnx::ModelProto model;
  model.ParseFromString(bytes);
  edit(*model.mutable_graph());
  std::string path = tmpPath(name);
  bytes = model.SerializeAsString();
  writeFileAtomically(path, bytes.data(), bytes.size());
  return path;
}

void testWeightsAndSaveErrors() {
  std::vector<std::string> train = {"--synthetic", "--steps", "1", "--lr",
                                    "0.1"};
  auto with = [&](std::vector<std::string> extra) {
    extra.insert(extra.begin(), train.begin(), train.end());
    return extra;
  };
  expectError(trainExe, with({"--weights", "/nonexistent.onnx"}),
              "--weights /nonexistent.onnx: cannot open");
  expectError(trainExe, with({"--weights", tmpPath("garbage.bin")}),
              "not a valid ONNX model");
  std::string wrongShape =
      editedModel("wrongShape.onnx", [](onnx::GraphProto &graph) {
        graph.mutable_initializer(1)->set_dims(0, 5);
      });
  expectError(trainExe, with({"--weights", wrongShape}),
              "initializer 'fc/bias' has shape [5] but the executable "
              "expects [10]");
  std::string missing =
      editedModel("missing.onnx", [](onnx::GraphProto &graph) {
        graph.mutable_initializer()->RemoveLast();
      });
  expectError(trainExe, with({"--weights", missing}),
              "initializer 'input mean' is missing");
  std::string external =
      editedModel("external.onnx", [](onnx::GraphProto &graph) {
        graph.mutable_initializer(0)->set_data_location(
            onnx::TensorProto::EXTERNAL);
      });
  expectError(trainExe, with({"--weights", external}),
              "initializer 'fc.weight': external data without a 'location' "
              "entry; the model is corrupt");
  expectError(trainExe, with({"--save", "/nonexistent/dir/m.onnx"}),
              "--save /nonexistent/dir/m.onnx: cannot write into");
  expectError(trainExe,
              {"--synthetic", "--steps", "5", "--lr", "1e38",
               "--synthetic-batches", "2"},
              "the loss is NaN at step 2: training diverged");
}

void testSyntheticTraining() {
  std::string log = tmpPath("synthetic.jsonl");
  std::vector<std::string> args = {"--synthetic", "--steps", "40", "--lr",
                                   "0.01",        "--log",   log};
  RunResult first = run(trainExe, args);
  check(first.status == 0 && contains(first.out, "step 40/40  epoch ") &&
            contains(first.out, "step 2/40  epoch 2  loss ") &&
            contains(first.out, " images/s  ") &&
            contains(first.out, " left\n"),
        "--synthetic trains with progress lines: " + first.describe());
  std::vector<double> losses = loggedLosses(log);
  check(losses.size() == 40 && losses.front() > 2 * losses.back(),
        "--synthetic loss falls (" +
            std::to_string(losses.empty() ? 0 : losses.front()) + " -> " +
            std::to_string(losses.empty() ? 0 : losses.back()) + ")");
  run(trainExe, args);
  check(loggedLosses(log) == losses, "same flags give the same losses");
  args.insert(args.end(), {"--seed", "3"});
  run(trainExe, args);
  check(loggedLosses(log) != losses, "--seed changes the data");
}

void testCheckStepAndSave() {
  StepInputs inputs = writeStepInputs();
  checkStepAgainstReference(inputs, "");

  std::string saved = tmpPath("trained.onnx");
  RunResult result = run(trainExe, {"--synthetic", "--steps", "5", "--lr",
                                    "0.01", "--save", saved});
  check(result.status == 0 && contains(result.out, "saved the trained model"),
        "--save: " + result.describe());
  auto initial = readModelParams(fakeModelPath);
  auto trained = readModelParams(saved);
  check(maxAbsDiff(initial[0], trained[0]) > 1e-4f &&
            maxAbsDiff(initial[1], trained[1]) > 1e-4f &&
            trained[2][0] != initial[2][0],
        "--save stores the trained weights and the updated state");
  onnx::ModelProto model;
  model.ParseFromString(readWholeFile(saved, "saved model"));
  const onnx::TensorProto &bias = model.graph().initializer(1);
  check(bias.name() == biasName && bias.float_data_size() == 0 &&
            bias.raw_data().size() == classes * sizeof(float) &&
            model.graph().node_size() == 1,
        "--save rewrites initializers as raw_data and keeps the graph");
  check(!fileExists(saved + ".tmp-" + std::to_string(getpid())) &&
            !directoryHasTemporaryFile(tmpDir),
        "no temporary files are left behind");

  // Resuming from the saved file starts from its weights.
  checkStepAgainstReference(inputs, saved);
}

/// A copy of the fake model, `dir`/model.onnx, whose weight is external
/// data at `location`; with `dataFile`, also `dir`/`dataFile` holding the
/// weight's first `dataBytes` bytes (all of them when -1).
std::string externalModel(const std::string &dir, const std::string &location,
                          const std::string &dataFile = "",
                          int64_t dataBytes = -1) {
  makeDirectories(dir, "test");
  onnx::ModelProto model;
  model.ParseFromString(readWholeFile(fakeModelPath, "model"));
  onnx::TensorProto &weight = *model.mutable_graph()->mutable_initializer(0);
  std::string values = weight.raw_data();
  blpa::onnxdata::setExternalData(weight, location, 0, values.size());
  if (!dataFile.empty())
    writeFileAtomically(dir + "/" + dataFile, values.data(),
                        dataBytes < 0 ? values.size() : dataBytes);
  std::string path = dir + "/model.onnx", bytes = model.SerializeAsString();
  writeFileAtomically(path, bytes.data(), bytes.size());
  return path;
}

void testExternalData() {
  StepInputs inputs = writeStepInputs();
  std::string model = externalModel(tmpPath("ext"), "w.bin", "w.bin");
  checkStepAgainstReference(inputs, model);

  // Weights that came from external data are saved as external data, beside
  // the output and relative to it.
  std::string saved = tmpPath("ext/out/trained.onnx");
  makeDirectories(tmpPath("ext/out"), "test");
  RunResult result =
      run(trainExe, {"--synthetic", "--steps", "3", "--lr", "0.01", "--weights",
                     model, "--save", saved});
  check(result.status == 0 &&
            contains(result.out, "(weights in " + saved + ".data)"),
        "--save of external weights: " + result.describe());
  onnx::ModelProto savedModel;
  savedModel.ParseFromString(readWholeFile(saved, "saved model"));
  const onnx::TensorProto &weight = savedModel.graph().initializer(0);
  const std::string *location = blpa::onnxdata::findEntry(weight, "location");
  check(blpa::onnxdata::isExternal(weight) && location &&
            *location == "trained.onnx.data" &&
            !blpa::onnxdata::isExternal(savedModel.graph().initializer(1)) &&
            !directoryHasTemporaryFile(tmpPath("ext/out")),
        "--save writes the weight to trained.onnx.data, the small bias "
        "inline, no temporary files");
  check(maxAbsDiff(readModelParams(model)[0], readModelParams(saved)[0]) >
            1e-4f,
        "the saved external weight is the trained one");
  checkStepAgainstReference(inputs, saved);

  std::string train[] = {"--synthetic", "--steps", "1",
                         "--lr",        "0.1",     "--weights"};
  auto refused = [&](const std::string &weights, const std::string &what) {
    std::vector<std::string> args(std::begin(train), std::end(train));
    args.push_back(weights);
    expectError(trainExe, args,
                "--weights " + weights + ": initializer 'fc.weight': " + what);
  };
  refused(externalModel(tmpPath("ext-abs"), tmpPath("ext/w.bin")),
          "external data location '" + tmpPath("ext/w.bin") +
              "' is an absolute path");
  refused(externalModel(tmpPath("ext-dots/sub"), "../w.bin", "../w.bin"),
          "external data location '../w.bin' has a '..' component");
  std::string linked = externalModel(tmpPath("ext-link"), "w.bin");
  symlink(tmpPath("ext/w.bin").c_str(), tmpPath("ext-link/w.bin").c_str());
  refused(linked, "external data location 'w.bin' resolves to '" +
                      tmpPath("ext/w.bin") + "', outside the model's");
  refused(externalModel(tmpPath("ext-missing"), "w.bin"),
          "cannot open external data file 'w.bin'");
  refused(externalModel(tmpPath("ext-short"), "w.bin", "w.bin", 100),
          "external data file 'w.bin' has 100 bytes, fewer than offset 0 + "
          "length 31360");
}

void testForward() {
  StepInputs inputs = writeStepInputs();
  auto params = readModelParams(fakeModelPath);
  std::vector<float> logits(batchSize * classes);
  linearForward(inputs.x.data(), params[0].data(), params[1].data(),
                logits.data());
  for (const std::string &exe : {inferExe, trainExe}) {
    std::string dump = tmpPath("forward");
    std::vector<std::string> args = {"--inputs", tmpPath("X.npy"), "--dump",
                                     dump};
    if (exe == trainExe)
      args.push_back("--forward");
    RunResult result = run(exe, args);
    Shape shape;
    check(result.status == 0 &&
              maxAbsDiff(readFloatNpy(dump + "/output_0.npy", &shape), logits) <
                  1e-5f &&
              shape == Shape{batchSize, classes},
          "forward dumps output_0.npy with the logits: " + result.describe());
  }
}

/// Writes an IDX file of unsigned bytes, gzip-compressed if `path` ends in
/// ".gz".
void writeIdx(const std::string &path, std::vector<int64_t> dims,
              const std::vector<uint8_t> &data) {
  std::string bytes = {0, 0, 8, static_cast<char>(dims.size())};
  for (int64_t dim : dims)
    for (int shift = 24; shift >= 0; shift -= 8)
      bytes += static_cast<char>((dim >> shift) & 0xff);
  bytes.append(data.begin(), data.end());
  if (path.size() < 3 || path.compare(path.size() - 3, 3, ".gz") != 0) {
    writeFileAtomically(path, bytes.data(), bytes.size());
    return;
  }
  gzFile file = gzopen(path.c_str(), "wb");
  gzwrite(file, bytes.data(), bytes.size());
  gzclose(file);
}

/// A tiny learnable data set: image of class c is bright in band c.
void writeToyDataSet(const std::string &dir, const std::string &split,
                     int64_t count, bool compressed) {
  Random random(count);
  std::vector<uint8_t> pixels(count * features), labels(count);
  for (int64_t i = 0; i < count; ++i) {
    labels[i] = random.below(classes);
    for (int64_t p = 0; p < features; ++p)
      pixels[i * features + p] =
          p / 78 == labels[i] ? 200 + random.below(56) : random.below(60);
  }
  std::string suffix = compressed ? ".gz" : "";
  writeIdx(dir + "/" + split + "-images-idx3-ubyte" + suffix, {count, 28, 28},
           pixels);
  writeIdx(dir + "/" + split + "-labels-idx1-ubyte" + suffix, {count}, labels);
}

void testDataTraining() {
  std::string dir = tmpPath("toy-data");
  makeDirectories(dir, "test");
  expectError(trainExe, {"--data", dir, "--steps", "1", "--lr", "0.1"},
              "--data " + dir + ": cannot open " + dir +
                  "/train-images-idx3-ubyte.gz (or " + dir +
                  "/train-images-idx3-ubyte): No such file or directory");
  writeToyDataSet(dir, "train", 300, /*compressed=*/true);
  writeToyDataSet(dir, "t10k", 200, /*compressed=*/false);
  std::string log = tmpPath("toy.jsonl");
  RunResult result = run(
      trainExe, {"--data", dir, "--steps", "30", "--lr", "0.01", "--log", log});
  check(result.status == 0 && contains(result.out, "test accuracy: 1.0000 "
                                                   "(192 images)"),
        "--data trains on a toy data set: " + result.describe());
  std::string logText = readWholeFile(log, "log");
  check(contains(logText, "{\"test_accuracy\": 1, \"test_loss\": ") &&
            contains(logText, ", \"test_images\": 192, \"after_step\": 30}"),
        "the log ends with the test accuracy and loss");
  result = run(trainExe, {"--data", dir, "--steps", "1", "--lr", "0.01",
                          "--eval-batches", "1"});
  check(contains(result.out, "(64 images)"),
        "--eval-batches 1: " + result.describe());
  writeFileAtomically(dir + "/t10k-labels-idx1-ubyte", "garbage!", 8);
  expectError(trainExe, {"--data", dir, "--steps", "1", "--lr", "0.1"},
              "t10k-labels-idx1-ubyte is not an IDX file");
}

void testFashionMnist() {
  if (!fileExists(fashionMnistDir + "/train-images-idx3-ubyte.gz")) {
    std::printf("skipped: Fashion-MNIST training (no %s)\n",
                fashionMnistDir.c_str());
    return;
  }
  std::string log = tmpPath("fashion.jsonl");
  RunResult result = run(trainExe, {"--data", fashionMnistDir, "--steps", "300",
                                    "--lr", "0.01", "--log", log});
  std::vector<double> losses = loggedLosses(log);
  size_t at = result.out.find("test accuracy: ");
  double accuracy =
      at == std::string::npos ? 0 : std::atof(result.out.c_str() + at + 15);
  std::printf("Fashion-MNIST, 300 steps: loss %.4f -> %.4f, test accuracy "
              "%.4f\n",
              losses.empty() ? 0 : losses.front(),
              losses.empty() ? 0 : losses.back(), accuracy);
  check(result.status == 0 && accuracy > 0.7 && losses.size() == 300 &&
            losses.front() > losses.back(),
        "Fashion-MNIST trains to > 0.7 test accuracy: " + result.describe());
}

} // namespace

int main() {
  char pattern[] = "/tmp/blpa-driver-selftest-XXXXXX";
  if (!mkdtemp(pattern)) {
    std::perror("mkdtemp");
    return 1;
  }
  tmpDir = pattern;
  try {
    testHelpAndFlagErrors();
    testFileErrors();
    testWeightsAndSaveErrors();
    testSyntheticTraining();
    testCheckStepAndSave();
    testExternalData();
    testForward();
    testDataTraining();
    testFashionMnist();
  } catch (const DriverError &error) {
    check(false, std::string("unexpected error: ") + error.what());
  }
  std::system(("rm -rf '" + tmpDir + "'").c_str());
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
