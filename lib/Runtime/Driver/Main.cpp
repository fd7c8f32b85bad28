//===- Main.cpp - main() of every executable blpa-opt links ---------------===//
//
// blpa-opt compiles an ONNX model into an object that defines the manifest,
// the embedded model and the step functions of blpa/Runtime/Runtime.h; this
// driver turns it into a program that trains, checks or runs the model.
//
//===----------------------------------------------------------------------===//

#include "Error.h"
#include "Manifest.h"
#include "MemoryCheck.h"
#include "Model.h"
#include "Options.h"
#include "Replicas.h"
#include "Session.h"
#include "SingleStep.h"
#include "Training.h"

#include "blpa/Runtime/Runtime.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <optional>

using namespace blpa::driver;

namespace {

/// What --help says about this particular executable.
std::string describeExecutable(const Manifest &manifest) {
  std::string text =
      std::string("\nthis executable: compiled for ") +
      (manifest.training ? "training" : "inference") + " on " +
      manifest.target + ", batch " + std::to_string(manifest.batchSize()) +
      ", " + std::to_string(manifest.params.size()) + " parameter tensors\n";
  for (const TensorRecord &input : manifest.inputs)
    text += "  input  '" + input.name + "' " + formatShape(input.shape) + "\n";
  for (const TensorRecord &output : manifest.outputs)
    text +=
        "  output '" + output.name + "' " + formatShape(output.shape) + "\n";
  return text;
}

/// Drops the pages of the embedded model bytes that parsing brought into
/// memory: the parsed copy is all that is used from here on, and pages of
/// the executable's file come back from the file if anything reads them
/// again. Otherwise a large model's bytes would stay resident all run.
void releaseEmbeddedModelPages() {
  uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  auto begin = reinterpret_cast<uintptr_t>(blpa_model_onnx);
  uintptr_t first = (begin + page - 1) / page * page;
  uintptr_t last = (begin + blpa_model_onnx_size) / page * page;
  if (last > first)
    madvise(reinterpret_cast<void *>(first), last - first, MADV_DONTNEED);
}

int run(int argc, char **argv) {
  Options options = parseCommandLine(argc, argv);
  if (options.help) {
    std::fputs(helpText(argv[0]).c_str(), stdout);
    std::fputs(describeExecutable(parseManifest(blpa_manifest)).c_str(),
               stdout);
    return 0;
  }
  Manifest manifest = parseManifest(blpa_manifest);
  if (manifest.training && !hasTrainStep())
    throw DriverError("the manifest says 'mode train' but the executable "
                      "defines no blpa_train_step; rebuild it with blpa-opt");
  validateOptions(options, manifest);
  // Joining first: a replica on a GPU chooses its device there.
  joinReplicas(manifest, options, &argc, &argv);
  // Before anything of the batch's size is allocated or read.
  checkPlanFits(manifest);

  OnnxModel embeddedModel(blpa_model_onnx, blpa_model_onnx_size,
                          "the embedded model");
  std::optional<OnnxModel> weightsModel;
  if (!options.weightsPath.empty())
    weightsModel.emplace(readModelFile(options.weightsPath, "--weights"));
  OnnxModel &initialWeights = weightsModel ? *weightsModel : embeddedModel;
  if (weightsModel)
    embeddedModel.useWeightsFrom(*weightsModel, manifest.params);
  releaseEmbeddedModelPages();

  if (options.checkStep)
    runCheckStep(manifest, options, initialWeights);
  else if (!options.dataDir.empty() || options.synthetic)
    runTraining(manifest, options, embeddedModel, initialWeights);
  else
    runForward(manifest, options, initialWeights);
  leaveReplicas();
  return 0;
}

/// Ends the run after an error: a replica of a data-parallel job takes the
/// others with it, so that none waits for it until its time-out.
int fail() {
  if (replicas().comm)
    replicas().abort(1);
  return 1;
}

} // namespace

int main(int argc, char **argv) {
  try {
    return run(argc, argv);
  } catch (const Interrupted &interrupted) {
    std::fflush(stdout);
    std::fprintf(stderr, "%s\n", interrupted.what());
    return 130;
  } catch (const DriverError &error) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", error.what());
  } catch (const std::bad_alloc &) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: out of memory\n");
  } catch (const std::exception &error) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: internal error: %s\n", error.what());
  }
  return fail();
}
