//===- Options.h - Command line of a blpa executable ------------*- C++ -*-===//
//
// The flags are a contract that scripts and tests rely on; see --help and
// docs/design.md.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_DRIVER_OPTIONS_H
#define BLPA_RUNTIME_DRIVER_OPTIONS_H

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace blpa::driver {

struct Manifest;

struct Options {
  bool help = false;
  // What to do.
  std::string dataDir;
  bool synthetic = false;
  bool checkStep = false;
  bool forward = false;
  // Training.
  std::optional<int64_t> steps;
  /// Training length in epochs instead of --steps.
  std::optional<int64_t> epochs;
  std::optional<double> lr;
  std::string lrSchedule = "constant";
  /// --augment's list (empty: none).
  std::string augment;
  /// --normalize's value (empty: the default).
  std::string normalize;
  int64_t warmup = 0;
  /// Evaluate on the test split every K steps as well as at the end.
  std::optional<int64_t> evalEvery;
  double momentum = 0.9;
  double weightDecay = 0;
  uint64_t seed = 0;
  std::optional<int64_t> evalBatches;
  int64_t syntheticBatches = 1;
  std::string logPath;
  /// --profile: where per-op times of the training step go.
  std::string profilePath;
  /// Checkpoints: where, every how many steps (and at the end and on
  /// SIGINT), and the one to continue from.
  std::string checkpointPath;
  std::optional<int64_t> checkpointEvery;
  std::string resumePath;
  std::string savePath;
  /// --save-inference: the trained model in inference mode.
  std::string saveInferencePath;
  // Inputs and outputs of single steps.
  std::vector<std::string> inputPaths;
  std::string labelsPath;
  std::string dumpDir;
  // Any mode.
  std::string weightsPath;
  std::optional<int32_t> threads;
  bool replaySteps = true;
  /// Data-parallel executables: how long a replica waits for the others
  /// before it ends the job.
  double commTimeoutSeconds = 300;

  /// Every flag given, in order, for the checks of validateOptions.
  std::vector<std::string> flagsGiven;
};

/// Parses argv; throws DriverError on unknown flags or bad values.
Options parseCommandLine(int argc, char **argv);

/// Throws unless the flags make sense together and for this executable.
void validateOptions(const Options &options, const Manifest &manifest);

/// The --help text; `program` is argv[0].
std::string helpText(const std::string &program);

} // namespace blpa::driver

#endif // BLPA_RUNTIME_DRIVER_OPTIONS_H
