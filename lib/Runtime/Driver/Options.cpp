//===- Options.cpp - Command line of a blpa executable --------------------===//

#include "Options.h"
#include "Error.h"
#include "Manifest.h"
#include "Normalize.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>

namespace blpa::driver {

namespace {

/// What a run does; each flag lists the actions it means something for.
enum Action : unsigned {
  TrainOnData = 1,
  TrainOnSynthetic = 2,
  CheckStep = 4,
  Forward = 8,
  Training = TrainOnData | TrainOnSynthetic,
  AnyAction = Training | CheckStep | Forward,
};

using Setter = void (*)(Options &, const std::string &flag,
                        const std::string &value);

struct FlagSpec {
  const char *name;
  /// nullptr for switches.
  const char *valueName;
  unsigned actions;
  const char *help;
  Setter set;
  /// Takes every following argument up to the next flag.
  bool takesList = false;
};

int64_t parseInteger(const std::string &flag, const std::string &value,
                     int64_t minimum) {
  errno = 0;
  char *end = nullptr;
  long long result = std::strtoll(value.c_str(), &end, 10);
  if (value.empty() || *end || errno || result < minimum)
    throw DriverError(flag + ": expected an integer >= " +
                      std::to_string(minimum) + ", got '" + value + "'");
  return result;
}

double parseNumber(const std::string &flag, const std::string &value) {
  errno = 0;
  char *end = nullptr;
  double result = std::strtod(value.c_str(), &end);
  if (value.empty() || *end || errno || !std::isfinite(result))
    throw DriverError(flag + ": expected a number, got '" + value + "'");
  return result;
}

const FlagSpec flagSpecs[] = {
    {"--data", "DIR|X.npy,Y.npy", TrainOnData,
     "train on the data in DIR ((Fashion-)MNIST IDX files, CIFAR-10/100 "
     "binary files, or x_train.npy/y_train.npy with x_test.npy/y_test.npy) "
     "or on the arrays X.npy, Y.npy, then report the test accuracy",
     [](Options &o, const std::string &, const std::string &v) {
       o.dataDir = v;
     }},
    {"--synthetic", nullptr, TrainOnSynthetic,
     "train on random N(0,1) inputs and random labels",
     [](Options &o, const std::string &, const std::string &) {
       o.synthetic = true;
     }},
    {"--check-step", nullptr, CheckStep,
     "one step from the initial weights without updating them; dumps "
     "DIR/loss.npy and DIR/grads/<param>.npy",
     [](Options &o, const std::string &, const std::string &) {
       o.checkStep = true;
     }},
    {"--forward", nullptr, Forward,
     "run the forward pass on --inputs; dumps DIR/output_<i>.npy (the "
     "default for an --infer executable)",
     [](Options &o, const std::string &, const std::string &) {
       o.forward = true;
     }},
    {"--steps", "S", Training, "number of training steps",
     [](Options &o, const std::string &f, const std::string &v) {
       o.steps = parseInteger(f, v, 1);
     }},
    {"--epochs", "E", Training,
     "train E epochs (passes over the training split; with --synthetic, "
     "over the --synthetic-batches) instead of --steps",
     [](Options &o, const std::string &f, const std::string &v) {
       o.epochs = parseInteger(f, v, 1);
     }},
    {"--lr-schedule", "constant|step:E1,E2,...:GAMMA|cosine", Training,
     "learning-rate schedule: constant (default); multiplied by GAMMA at "
     "each epoch E_i; or cosine annealing to 0 over the run",
     [](Options &o, const std::string &, const std::string &v) {
       o.lrSchedule = v;
     }},
    {"--warmup", "K", Training,
     "raise the rate linearly over the first K steps (default 0)",
     [](Options &o, const std::string &f, const std::string &v) {
       o.warmup = parseInteger(f, v, 0);
     }},
    {"--augment", "crop4,flip", TrainOnData,
     "augment training images: a random crop of the image padded by P "
     "pixels (cropP) and a random horizontal flip (flip), seeded",
     [](Options &o, const std::string &, const std::string &v) {
       o.augment = v;
     }},
    {"--normalize", "auto|none|MEAN,...:STD,...", TrainOnData,
     "normalize each channel as (value - mean) / std, value being pixel / "
     "255 for byte images; auto measures the training split (the default "
     "for byte images; NumPy arrays are used as they are by default)",
     [](Options &o, const std::string &, const std::string &v) {
       parseNormalization(v); // Refuse a bad value before loading data.
       o.normalize = v;
     }},
    {"--eval-every", "K", TrainOnData,
     "also evaluate on the test split every K steps",
     [](Options &o, const std::string &f, const std::string &v) {
       o.evalEvery = parseInteger(f, v, 1);
     }},
    {"--checkpoint", "FILE", Training,
     "write the training state (parameters, momenta, step) to FILE "
     "atomically at the end, every --checkpoint-every steps and on SIGINT",
     [](Options &o, const std::string &, const std::string &v) {
       o.checkpointPath = v;
     }},
    {"--checkpoint-every", "K", Training, "also checkpoint every K steps",
     [](Options &o, const std::string &f, const std::string &v) {
       o.checkpointEvery = parseInteger(f, v, 1);
     }},
    {"--resume", "FILE", Training,
     "continue from a --checkpoint FILE: --steps still counts from the "
     "start (a 20-step checkpoint with --steps 40 runs steps 21 to 40)",
     [](Options &o, const std::string &, const std::string &v) {
       o.resumePath = v;
     }},
    {"--lr", "LR", Training | CheckStep, "learning rate",
     [](Options &o, const std::string &f, const std::string &v) {
       o.lr = parseNumber(f, v);
     }},
    {"--momentum", "M", Training | CheckStep, "SGD momentum (default 0.9)",
     [](Options &o, const std::string &f, const std::string &v) {
       o.momentum = parseNumber(f, v);
     }},
    {"--weight-decay", "WD", Training | CheckStep,
     "L2 weight decay (default 0)",
     [](Options &o, const std::string &f, const std::string &v) {
       o.weightDecay = parseNumber(f, v);
     }},
    {"--seed", "K", Training,
     "seed of the shuffling, the synthetic data and the dropout masks "
     "(default 0)",
     [](Options &o, const std::string &f, const std::string &v) {
       o.seed = parseInteger(f, v, 0);
     }},
    {"--log", "FILE.jsonl", Training,
     "write one JSON object per step (and the test accuracy) to FILE",
     [](Options &o, const std::string &, const std::string &v) {
       o.logPath = v;
     }},
    {"--profile", "FILE.json", Training,
     "time every op of the training step and write the times (from the "
     "second step on) to FILE, for blpa-opt --profile",
     [](Options &o, const std::string &, const std::string &v) {
       o.profilePath = v;
     }},
    {"--eval-batches", "B", TrainOnData,
     "evaluate on only B test batches (default all; 0 skips the evaluation)",
     [](Options &o, const std::string &f, const std::string &v) {
       o.evalBatches = parseInteger(f, v, 0);
     }},
    {"--synthetic-batches", "K", TrainOnSynthetic,
     "number of distinct random batches cycled through (default 1)",
     [](Options &o, const std::string &f, const std::string &v) {
       o.syntheticBatches = parseInteger(f, v, 1);
     }},
    {"--save", "OUT.onnx", Training,
     "after training, write the model with the trained weights to OUT.onnx",
     [](Options &o, const std::string &, const std::string &v) {
       o.savePath = v;
     }},
    {"--save-inference", "OUT.onnx", Training,
     "after training, write the trained model for deployment: batch norms "
     "use the running statistics, dropouts pass values through",
     [](Options &o, const std::string &, const std::string &v) {
       o.saveInferencePath = v;
     }},
    {"--inputs", "A.npy [B.npy ...]", CheckStep | Forward,
     "one .npy per data input of the model, in graph order",
     [](Options &o, const std::string &, const std::string &v) {
       o.inputPaths.push_back(v);
     },
     /*takesList=*/true},
    {"--labels", "Y.npy", CheckStep, "int64 labels for --check-step",
     [](Options &o, const std::string &, const std::string &v) {
       o.labelsPath = v;
     }},
    {"--dump", "DIR", CheckStep | Forward,
     "directory for the .npy results (created if missing)",
     [](Options &o, const std::string &, const std::string &v) {
       o.dumpDir = v;
     }},
    {"--weights", "IN.onnx", AnyAction,
     "take the initial weights from IN.onnx (e.g. a --save of this "
     "executable) instead of the embedded model",
     [](Options &o, const std::string &, const std::string &v) {
       o.weightsPath = v;
     }},
    {"--comm-timeout", "SECONDS", AnyAction,
     "data-parallel executables (blpa-opt --data-parallel, started by mpirun "
     "or srun): end the job with an error naming this replica when the "
     "others have not joined an all-reduce within SECONDS (default 300; "
     "on cuda it bounds joining and each whole step too)",
     [](Options &o, const std::string &f, const std::string &v) {
       o.commTimeoutSeconds = parseNumber(f, v);
       if (o.commTimeoutSeconds <= 0)
         throw DriverError(
             f + ": expected a positive number of seconds, got '" + v + "'");
     }},
    {"--threads", "T", AnyAction,
     "kernel threads (default: the compiled-in count, 0 = library default)",
     [](Options &o, const std::string &f, const std::string &v) {
       o.threads = parseInteger(f, v, 0);
     }},
    {"--no-cuda-graph", nullptr, AnyAction,
     "run every step's kernels one by one instead of replaying the step "
     "recorded as a CUDA graph (CUDA executables; no effect on the CPU)",
     [](Options &o, const std::string &, const std::string &) {
       o.replaySteps = false;
     }},
    {"--help", nullptr, AnyAction, "print this help",
     [](Options &o, const std::string &, const std::string &) {
       o.help = true;
     }},
};

const FlagSpec *findFlag(const std::string &name) {
  for (const FlagSpec &spec : flagSpecs)
    if (name == spec.name)
      return &spec;
  return nullptr;
}

bool looksLikeFlag(const std::string &arg) {
  return arg.size() > 1 && arg[0] == '-' &&
         !std::isdigit(static_cast<unsigned char>(arg[1])) && arg[1] != '.';
}

/// Whether `arg` can be the value of `spec`: a known flag never is (so a
/// forgotten value is reported, not swallowed), and a list ends at anything
/// that looks like a flag.
bool canBeValue(const FlagSpec &spec, const std::string &arg) {
  if (findFlag(arg.substr(0, arg.find('='))) || arg == "-h")
    return false;
  return !spec.takesList || !looksLikeFlag(arg);
}

} // namespace

Options parseCommandLine(int argc, char **argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h")
      arg = "--help";
    size_t equals = arg.find('=');
    std::string name = arg.substr(0, equals);
    const FlagSpec *spec = findFlag(name);
    if (!spec) {
      throw DriverError(
          (looksLikeFlag(arg) ? "unknown flag '" : "unexpected argument '") +
          arg + "'; run " + argv[0] + " --help for the usage");
    }
    options.flagsGiven.push_back(name);
    if (!spec->valueName) {
      if (equals != std::string::npos)
        throw DriverError(name + " takes no value");
      spec->set(options, name, "");
      continue;
    }
    std::vector<std::string> values;
    if (equals != std::string::npos)
      values.push_back(arg.substr(equals + 1));
    // A list flag takes arguments up to the next flag; others take one.
    while ((values.empty() || spec->takesList) && i + 1 < argc &&
           canBeValue(*spec, argv[i + 1]))
      values.push_back(argv[++i]);
    if (values.empty())
      throw DriverError(name + " needs a value (" + spec->valueName + ")");
    for (const std::string &value : values)
      spec->set(options, name, value);
  }
  return options;
}

namespace {

unsigned chosenAction(const Options &options, const Manifest &manifest) {
  if (!manifest.training)
    return Forward;
  std::vector<std::string> chosen;
  unsigned action = 0;
  auto consider = [&](bool given, const char *flag, Action which) {
    if (!given)
      return;
    chosen.push_back(flag);
    action = which;
  };
  consider(!options.dataDir.empty(), "--data", TrainOnData);
  consider(options.synthetic, "--synthetic", TrainOnSynthetic);
  consider(options.checkStep, "--check-step", CheckStep);
  consider(options.forward, "--forward", Forward);
  if (chosen.empty())
    throw DriverError("nothing to do: give --data DIR, --synthetic, "
                      "--check-step (with --inputs, --labels, --dump) or "
                      "--forward (with --inputs, --dump); see --help");
  if (chosen.size() > 1)
    throw DriverError(chosen[0] + " and " + chosen[1] +
                      " cannot be combined; give one of them");
  return action;
}

const char *actionFlag(unsigned action) {
  switch (action) {
  case TrainOnData:
    return "--data";
  case TrainOnSynthetic:
    return "--synthetic";
  case CheckStep:
    return "--check-step";
  default:
    return "--forward";
  }
}

void requireFlag(bool given, const char *flag, unsigned action,
                 const Manifest &manifest) {
  if (given)
    return;
  std::string what =
      manifest.training ? actionFlag(action) : "this --infer executable";
  throw DriverError(what + " needs " + flag + "; see --help");
}

} // namespace

void validateOptions(const Options &options, const Manifest &manifest) {
  unsigned action = chosenAction(options, manifest);
  for (const std::string &flag : options.flagsGiven) {
    if (findFlag(flag)->actions & action)
      continue;
    if (!manifest.training)
      throw DriverError(flag + " is only for training executables; this "
                               "one was compiled with blpa-opt --infer and "
                               "runs as: --inputs A.npy [B.npy ...] --dump "
                               "DIR");
    throw DriverError(flag + " has no effect with " + actionFlag(action) +
                      "; see --help");
  }
  if (action & Training) {
    requireFlag(options.steps.has_value() || options.epochs.has_value(),
                "--steps S or --epochs E", action, manifest);
    if (options.steps && options.epochs)
      throw DriverError("give --steps or --epochs, not both");
    if (options.checkpointEvery && options.checkpointPath.empty())
      throw DriverError("--checkpoint-every needs --checkpoint FILE");
    requireFlag(options.lr.has_value(), "--lr LR", action, manifest);
  } else {
    requireFlag(!options.inputPaths.empty(), "--inputs A.npy ...", action,
                manifest);
    requireFlag(!options.dumpDir.empty(), "--dump DIR", action, manifest);
    if (action == CheckStep)
      requireFlag(!options.labelsPath.empty(), "--labels Y.npy", action,
                  manifest);
  }
}

std::string helpText(const std::string &program) {
  std::string text =
      "usage: " + program +
      " --data DIR --steps S --lr LR [options]   train, then test\n"
      "       " +
      program +
      " --synthetic --steps S --lr LR [options]  train on random data\n"
      "       " +
      program +
      " --check-step --inputs X.npy --labels Y.npy --dump DIR\n"
      "       " +
      program +
      " --inputs A.npy [B.npy ...] --dump DIR    (--infer executables)\n"
      "\nflags:\n";
  for (const FlagSpec &spec : flagSpecs) {
    std::string usage = std::string("  ") + spec.name;
    if (spec.valueName)
      usage += std::string(" ") + spec.valueName;
    usage.resize(std::max<size_t>(usage.size() + 2, 30), ' ');
    text += usage + spec.help + "\n";
  }
  return text;
}

} // namespace blpa::driver
