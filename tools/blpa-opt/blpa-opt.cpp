//===- blpa-opt.cpp - The blpa compiler driver ----------------------------===//
//
// Two faces:
//  * mlir-opt: `blpa-opt FILE [pass flags]` parses FILE (.mlir, or an ONNX
//    model it imports first) and runs the given passes, printing the result.
//  * compiler: `blpa-opt MODEL --train|--infer --batch-size N -o EXE` runs
//    the whole pipeline and links a training or inference executable
//    (`--emit mlir|obj` stops earlier).
//
//===----------------------------------------------------------------------===//

#include "blpa/Conversion/Passes.h"
#include "blpa/Dialect/Blpa/IR/BlpaDialect.h"
#include "blpa/Dialect/Blpa/Transforms/CostModel.h"
#include "blpa/Dialect/Blpa/Transforms/MemoryPlan.h"
#include "blpa/Dialect/Blpa/Transforms/Passes.h"
#include "blpa/Import/OnnxImporter.h"
#include "blpa/Target/Executable.h"

#include "BudgetSolver.h"
#include "CandidatePlans.h"
#include "MemoryBudget.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/AsmState.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Support/Timing.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FileUtilities.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/ToolOutputFile.h"

#include <chrono>
#include <map>

using namespace mlir;
using namespace mlir::blpa;
namespace cl = llvm::cl;

static cl::OptionCategory compileCategory(
    "blpa compiler options",
    "Compile an ONNX model (or blpa IR) into a training or inference "
    "executable");

static cl::opt<bool> trainMode("train",
                               cl::desc("Compile a training executable"),
                               cl::cat(compileCategory));
static cl::opt<int64_t> ignoreIndex(
    "ignore-index",
    cl::desc("With --train: the label of rows the loss leaves out (a "
             "language model's padding; default -100, as PyTorch's)"),
    cl::init(-100), cl::cat(compileCategory));

static cl::opt<bool> inferMode("infer",
                               cl::desc("Compile an inference executable"),
                               cl::cat(compileCategory));
static cl::opt<bool> listOnnxOps(
    "list-onnx-ops",
    cl::desc("Print the supported ONNX ops, one per line: OP MIN_OPSET "
             "MAX_OPSET, and exit"),
    cl::cat(compileCategory));
static cl::opt<std::string> batchSizeOption(
    "batch-size",
    cl::desc("Fix the model's symbolic batch dimension to N (required when "
             "the model's batch dimension is symbolic); 'max' with "
             "--memory-limit picks the largest batch that fits"),
    cl::value_desc("N|max"), cl::init(""), cl::cat(compileCategory));
static cl::opt<std::string> memoryLimitOption(
    "memory-limit",
    cl::desc("Fail when the executable would need more than SIZE bytes "
             "(arena, parameters and optimizer state, batch buffers), "
             "saying what would fit; SIZE is bytes or e.g. 512MiB, 2GB"),
    cl::value_desc("SIZE"), cl::init(""), cl::cat(compileCategory));
static cl::opt<std::string> actBitsOption(
    "act-bits",
    cl::desc("Bits per saved activation for the backward pass: 0 keeps them "
             "exact; 8, 4 or 2 keep only K-bit codes (the forward pass stays "
             "exact); auto (the default with --memory-limit) chooses float32, "
             "codes or recompute per node: the fastest predicted plan that "
             "fits the limit"),
    cl::value_desc("0|8|4|2|auto"), cl::init(""), cl::cat(compileCategory));
static cl::opt<int> minActBits(
    "min-act-bits",
    cl::desc("With --act-bits auto: the narrowest codes the plan may use "
             "(8, 4 or 2; default 4)"),
    cl::value_desc("8|4|2"), cl::init(4), cl::cat(compileCategory));
static cl::opt<std::string> preferOption(
    "prefer",
    cl::desc("With --act-bits auto: speed (default: the least predicted "
             "step time) or exactness (recompute and 8 bits before any "
             "tensor goes below 8 bits)"),
    cl::value_desc("speed|exactness"), cl::init("speed"),
    cl::cat(compileCategory));
static cl::opt<bool> noBudgetRecompute(
    "no-budget-recompute",
    cl::desc("With --act-bits auto: choose only between float32 and codes, "
             "never recomputation"),
    cl::init(false), cl::cat(compileCategory));
static cl::opt<bool> printBudgetSearch(
    "print-budget-search",
    cl::desc("With --act-bits auto: print each plan the budget solver "
             "compiles (its choices, planned total, predicted step time)"),
    cl::init(false), cl::cat(compileCategory));
static cl::opt<std::string> budgetSearch(
    "budget-search",
    cl::desc("With --act-bits auto: greedy (default: structured plans, then "
             "moves ranked by bytes saved per second added) or exhaustive "
             "(every combination of choices, at most 100000 plans: for "
             "checking the greedy search on small models)"),
    cl::value_desc("greedy|exhaustive"), cl::init("greedy"),
    cl::cat(compileCategory));
static cl::opt<bool> actQuantNaive(
    "act-quant-naive",
    cl::desc("With --act-bits: quantize inside the forward pass instead (the "
             "paper's naive baseline, for accuracy comparisons)"),
    cl::init(false), cl::cat(compileCategory));
static cl::list<std::string> actPolicy(
    "act-policy",
    cl::desc("Pins what the backward pass keeps of the saved outputs of "
             "ONNX node NODE (float32 also of the inputs its gradient "
             "reads): float32 (exact), 8, 4 or 2 (K-bit codes), recompute "
             "(run again in the backward pass), quantize (the generic "
             "quantizer even when small) or auto (no pin); NODE * pins "
             "every node; of several pins on one tensor the most exact "
             "wins; repeatable"),
    cl::value_desc("NODE=float32|8|4|2|recompute|quantize|auto"),
    cl::cat(compileCategory));
static cl::opt<std::string> target(
    "target",
    cl::desc("Code generation target: cpu, or cuda (cuDNN, cuBLAS and our "
             "kernels on an NVIDIA GPU; the executable carries the shared "
             "libraries a GPU machine lacks in blpa-cuda-libs/ beside it)"),
    cl::value_desc("cpu|cuda"), cl::init("cpu"), cl::cat(compileCategory));
static cl::opt<bool> embedWeights(
    "embed-weights",
    cl::desc("Embed the model's initial weights in the executable (default "
             "on); with --embed-weights=false it embeds only their names and "
             "shapes and takes them from --weights MODEL.onnx at run time"),
    cl::init(true), cl::cat(compileCategory));
static cl::opt<std::string> cudaWorkspaceOption(
    "cuda-workspace",
    cl::desc("Scratch space reserved in the arena for cuDNN's convolution "
             "algorithms and cuBLAS (--target cuda; default 64MiB): the "
             "fastest algorithms that fit it are chosen at start-up"),
    cl::value_desc("SIZE"), cl::init("64MiB"), cl::cat(compileCategory));
static cl::opt<std::string> cpuWorkspaceOption(
    "cpu-workspace",
    cl::desc("Most scratch reserved in the arena for oneDNN's convolutions "
             "(--target cpu; default 32MiB): the plan reserves what the "
             "largest convolution needs over the whole batch, up to SIZE, "
             "and larger ones run over the batch in chunks that fit; 0 "
             "reserves none (their scratch is then outside the plan)"),
    cl::value_desc("SIZE"), cl::init("32MiB"), cl::cat(compileCategory));
static cl::opt<std::string> memoryReport(
    "memory-report",
    cl::desc("Write the memory plan's report (peak_bytes, lower_bound_bytes, "
             "saved_activation_bytes, ...) as JSON to FILE"),
    cl::value_desc("FILE.json"), cl::init(""), cl::cat(compileCategory));
static cl::opt<bool> recomputeRelu(
    "recompute-relu",
    cl::desc("Recompute the output of each batch norm's ReLU in the "
             "backward pass from the batch norm's input instead of keeping "
             "it (exact; default on; --recompute-relu=false keeps it)"),
    cl::init(true), cl::cat(compileCategory));
static cl::opt<bool> dataParallel(
    "data-parallel",
    cl::desc("Train as one replica of a data-parallel job started by mpirun "
             "or srun (MPI on --target cpu, NCCL on cuda): --batch-size is "
             "each replica's batch, and gradients are averaged over the "
             "replicas in buckets that are summed while the backward pass "
             "goes on"),
    cl::init(false), cl::cat(compileCategory));
static cl::opt<bool> syncBatchNorm(
    "sync-batch-norm",
    cl::desc("With --data-parallel: batch norms normalize with the "
             "statistics of every replica's batch together (PyTorch's "
             "SyncBatchNorm) instead of each replica's own"),
    cl::init(false), cl::cat(compileCategory));
static cl::opt<std::string> bucketSizeOption(
    "bucket-size",
    cl::desc("Largest gradient bucket of --data-parallel (default 1MiB): "
             "smaller buckets start summing earlier, larger ones make fewer "
             "calls"),
    cl::value_desc("SIZE"), cl::init("1MiB"), cl::cat(compileCategory));
/// --bucket-size in bytes (checkCompileOptions reads it).
static int64_t bucketBytes = 1 << 20;
static cl::opt<bool> scheduleForMemory(
    "schedule-for-memory",
    cl::desc("Order independent ops (branches, their gradients) so that "
             "fewer bytes are live at once (default on)"),
    cl::init(true), cl::cat(compileCategory));

static cl::opt<bool> noVerifyMemoryPlan(
    "no-verify-memory-plan",
    cl::desc("Skip the independent check of the memory plan "
             "(--blpa-verify-memory-plan), which every compile runs; only "
             "for measuring what that check costs"),
    cl::init(false), cl::cat(compileCategory));
static cl::opt<bool> printMemory(
    "print-memory",
    cl::desc("Print the memory plan: totals by category, what is live at "
             "the peak, the largest buffers"),
    cl::init(false), cl::cat(compileCategory));
static cl::opt<std::string> memoryTimeline(
    "memory-timeline",
    cl::desc("Draw live bytes over the schedule by category as an SVG"),
    cl::value_desc("FILE.svg"), cl::init(""), cl::cat(compileCategory));
enum class EmitKind { Mlir, Object, Executable };
static cl::opt<EmitKind> emitKind(
    "emit", cl::desc("Where the compiler stops (with --train/--infer)"),
    cl::values(clEnumValN(EmitKind::Mlir, "mlir",
                          "lowered MLIR (LLVM dialect)"),
               clEnumValN(EmitKind::Object, "obj", "a native object file"),
               clEnumValN(EmitKind::Executable, "exe",
                          "a linked executable (default)")),
    cl::init(EmitKind::Executable), cl::cat(compileCategory));

static cl::list<std::string> profileOption(
    "profile",
    cl::desc("Op times a training executable of this model and batch size "
             "measured (its --profile): calibrates the cost model; repeat it "
             "for profiles of several plans (e.g. the exact and a 4-bit one), "
             "so that the budget solver knows where codes are faster"),
    cl::value_desc("FILE.json"), cl::cat(compileCategory));

/// --act-bits as a number (0 when auto), and whether it is auto.
static int actBits = 0;
static bool actBitsAuto = false;

/// --batch-size and --memory-limit, read by checkCompileOptions.
static std::optional<int64_t> batchSize;
static bool batchSizeMax = false;
static std::optional<int64_t> memoryLimit;
/// --cuda-workspace in bytes; 0 for the CPU target.
static int64_t workspaceBytes = 0;
/// --cpu-workspace in bytes; 0 for the CUDA target.
static int64_t cpuWorkspaceLimit = 0;

/// The cost model of this compile (analytical, or calibrated by --profile),
/// for the plan's choices; set by readCostModel.
static std::optional<CostModel> costModel;

/// Reads --profile, if given, and checks that it describes `module`'s model
/// at its batch size.
static LogicalResult readCostModel(ModuleOp module) {
  SmallVector<std::string> profiles(profileOption.begin(), profileOption.end());
  llvm::Expected<CostModel> model = CostModel::forModule(module, profiles);
  if (!model)
    return emitError(module.getLoc()) << llvm::toString(model.takeError());
  costModel = std::move(*model);
  return success();
}

/// Whether an --act-policy entry forces the generic quantizer (a pin of
/// --blpa-compress-activations itself, not a choice of
/// --blpa-assign-activation-choices).
static bool isQuantizePin(StringRef entry) {
  return entry.rsplit('=').second == "quantize";
}

/// Whether an --act-policy entry pins a bit width, so that the compression
/// pass must run even at --act-bits 0.
static bool isBitWidthPin(StringRef entry) {
  return llvm::is_contained({"8", "4", "2"}, entry.rsplit('=').second);
}

static bool isOnnxFile(StringRef path) {
  return path.ends_with(".onnx") || path.ends_with(".onnxtext");
}

/// "FILE: node 'NAME': " for locations the importer made from ONNX nodes,
/// "FILE:LINE:COL: " for textual IR.
static std::string locationPrefix(Location loc) {
  std::string prefix;
  if (auto name = dyn_cast<NameLoc>(loc)) {
    if (auto file = dyn_cast<FileLineColLoc>(name.getChildLoc()))
      prefix = (file.getFilename().getValue() + ": ").str();
    return prefix + "node '" + name.getName().getValue().str() + "': ";
  }
  if (auto file = dyn_cast<FileLineColLoc>(loc))
    if (file.getLine() > 0)
      return llvm::formatv("{0}:{1}:{2}: ", file.getFilename().getValue(),
                           file.getLine(), file.getColumn())
          .str();
  return prefix;
}

/// Prints each error or warning as one line; a user of the compiler gets
/// the ONNX node, not an IR dump.
static LogicalResult printDiagnostic(Diagnostic &diag) {
  StringRef severity = diag.getSeverity() == DiagnosticSeverity::Error ? "error"
                       : diag.getSeverity() == DiagnosticSeverity::Warning
                           ? "warning"
                           : "note";
  if (diag.getSeverity() == DiagnosticSeverity::Note ||
      diag.getSeverity() == DiagnosticSeverity::Remark)
    return success();
  std::string message = diag.str();
  // Importer messages already name the file and node.
  std::string prefix = StringRef(message).contains(": node '")
                           ? std::string()
                           : locationPrefix(diag.getLocation());
  llvm::errs() << severity << ": " << prefix << message << "\n";
  return success();
}

static OwningOpRef<ModuleOp> loadModule(MLIRContext &context, StringRef path,
                                        std::optional<int64_t> batch) {
  if (isOnnxFile(path)) {
    ImportOptions options;
    options.batchSize = batch;
    FailureOr<OwningOpRef<ModuleOp>> module =
        importOnnxFile(&context, path, options);
    return succeeded(module) ? std::move(*module) : nullptr;
  }
  std::string error;
  auto file = openInputFile(path, &error);
  if (!file) {
    emitError(UnknownLoc::get(&context)) << path << ": " << error;
    return nullptr;
  }
  llvm::SourceMgr sourceMgr;
  sourceMgr.AddNewSourceBuffer(std::move(file), llvm::SMLoc());
  return parseSourceFile<ModuleOp>(sourceMgr, &context);
}

/// An executable or object file needs -o, into a directory that exists.
static LogicalResult checkOutputPath(Location loc, StringRef outputPath) {
  if (emitKind == EmitKind::Mlir)
    return success();
  if (outputPath == "-")
    return emitError(loc, "-o FILE is required to write an executable or "
                          "object file");
  StringRef dir = llvm::sys::path::parent_path(outputPath);
  if (!dir.empty() && !llvm::sys::fs::is_directory(dir))
    return emitError(loc, "cannot write ")
           << outputPath << ": directory '" << dir << "' does not exist";
  return success();
}

/// Compile options that are recognised but not available yet, and values
/// that are invalid, are reported before any work is done.
/// Reads --batch-size (N or max) and --memory-limit.
static LogicalResult readBatchAndLimit(Location loc) {
  if (!memoryLimitOption.empty()) {
    llvm::Expected<int64_t> limit =
        parseMemorySize(memoryLimitOption, memoryLimitOption.ArgStr);
    if (!limit)
      return emitError(loc, llvm::toString(limit.takeError()));
    memoryLimit = *limit;
  }
  if (batchSizeOption == "max") {
    batchSizeMax = true;
    if (!memoryLimit)
      return emitError(loc, "--batch-size max needs --memory-limit SIZE");
    return success();
  }
  if (batchSizeOption.empty())
    return success();
  int64_t value;
  if (StringRef(batchSizeOption).getAsInteger(10, value) || value <= 0)
    return emitError(loc, "--batch-size must be a positive integer or 'max', "
                          "got '")
           << batchSizeOption << "'";
  batchSize = value;
  return success();
}

/// Reads --act-bits: a width, or auto (the default for training under
/// --memory-limit), with --min-act-bits and --prefer.
static LogicalResult readActBits(Location loc) {
  StringRef option = actBitsOption;
  if (option.empty())
    option = memoryLimit && trainMode ? "auto" : "0";
  actBitsAuto = option == "auto";
  if (!actBitsAuto && (option.getAsInteger(10, actBits) ||
                       !llvm::is_contained({0, 2, 4, 8}, actBits)))
    return emitError(loc, "--act-bits must be 0, 8, 4, 2 or auto");
  if (actBitsAuto && (!memoryLimit || !trainMode))
    return emitError(loc, "--act-bits auto needs --train and --memory-limit "
                          "SIZE (the budget it plans to)");
  if (!llvm::is_contained({2, 4, 8}, minActBits.getValue()))
    return emitError(loc, "--min-act-bits must be 8, 4 or 2");
  if (preferOption != "speed" && preferOption != "exactness")
    return emitError(loc, "--prefer must be speed or exactness");
  if (budgetSearch != "greedy" && budgetSearch != "exhaustive")
    return emitError(loc, "--budget-search must be greedy or exhaustive");
  return success();
}

static LogicalResult checkCompileOptions(MLIRContext &context,
                                         StringRef inputPath,
                                         StringRef outputPath) {
  Location loc = UnknownLoc::get(&context);
  if (trainMode == inferMode)
    return emitError(loc, "pass exactly one of --train and --infer");
  if (failed(readBatchAndLimit(loc)) || failed(readActBits(loc)))
    return failure();
  if (actBits == 0 && actQuantNaive)
    return emitError(loc, "--act-quant-naive needs --act-bits 8, 4 or 2");
  if (actBits == 0 && llvm::any_of(actPolicy, isQuantizePin))
    return emitError(loc, "--act-policy NODE=quantize needs --act-bits 8, 4 "
                          "or 2 (the width of the generic quantizer)");
  if (!actPolicy.empty() && inferMode)
    return emitError(loc, "--act-policy applies to --train only");
  if (actBits != 0 && inferMode)
    return emitError(loc, "--act-bits applies to --train only (inference "
                          "keeps no activations for a backward pass)");
  if (failed(checkTargetAvailable(loc, target)))
    return failure();
  if (syncBatchNorm && !dataParallel)
    return emitError(loc, "--sync-batch-norm needs --data-parallel");
  if (syncBatchNorm && target == "cuda")
    return emitError(loc, "--sync-batch-norm is built for --target cpu only "
                          "so far; on cuda each replica's batch norms use "
                          "their own batch (leave the flag out)");
  if (dataParallel) {
    if (!trainMode)
      return emitError(loc, "--data-parallel applies to --train only");
    if (failed(checkDataParallelAvailable(loc, target)))
      return failure();
    llvm::Expected<int64_t> bytes =
        parseMemorySize(bucketSizeOption, bucketSizeOption.ArgStr);
    if (!bytes)
      return emitError(loc, llvm::toString(bytes.takeError()));
    bucketBytes = *bytes;
  }
  bool cuda = target == "cuda";
  auto &workspaceOption = cuda ? cudaWorkspaceOption : cpuWorkspaceOption;
  auto &otherWorkspace = cuda ? cpuWorkspaceOption : cudaWorkspaceOption;
  if (otherWorkspace.getNumOccurrences())
    return emitError(loc, "--")
           << otherWorkspace.ArgStr << " applies to --target "
           << (cuda ? "cpu" : "cuda") << " only; with --target " << target
           << " give --" << workspaceOption.ArgStr;
  llvm::Expected<int64_t> workspace = parseMemorySize(
      workspaceOption, workspaceOption.ArgStr, /*allowZero=*/true);
  if (!workspace)
    return emitError(loc, llvm::toString(workspace.takeError()));
  (cuda ? workspaceBytes : cpuWorkspaceLimit) = *workspace;
  if (batchSizeMax && !isOnnxFile(inputPath))
    return emitError(loc, "--batch-size max needs an ONNX model (.onnx or "
                          ".onnxtext) whose batch dimension is symbolic");
  return checkOutputPath(loc, outputPath);
}

/// The passes up to the choices of what is saved: autodiff (when the module
/// has no training step yet), evaluation mode and the user's pins.
static void buildFrontPipeline(PassManager &pm, ModuleOp module) {
  if (!module.lookupSymbol("train_step"))
    pm.addNestedPass<func::FuncOp>(createBlpaFuseGelu());
  if (trainMode && !module.lookupSymbol("train_step")) {
    BlpaAutodiffOptions options;
    options.ignoreIndex = ignoreIndex;
    pm.addPass(createBlpaAutodiff(options));
  }
  if (trainMode)
    pm.addPass(createBlpaInferenceBatchNorm());
  // The user's pins become each saved tensor's blpa.act_choice; the passes
  // after it apply the choices. `quantize` is the compression pass's own.
  SmallVector<std::string> choicePins;
  for (const std::string &entry : actPolicy)
    if (!isQuantizePin(entry))
      choicePins.push_back(entry);
  if (trainMode && !choicePins.empty()) {
    BlpaAssignActivationChoicesOptions options;
    options.policy.assign(choicePins.begin(), choicePins.end());
    pm.addPass(createBlpaAssignActivationChoices(options));
  }
}

/// The passes from the choices to the checked memory plan. Compression
/// runs at --act-bits 8|4|2, for pinned widths, and for the budget
/// solver's plans (`withChoices`), whose choices are on the ops.
static void buildTailPipeline(PassManager &pm, int bits, bool withChoices,
                              bool withReports, bool verify = true) {
  SmallVector<std::string> compressPins;
  bool pinsWidths = false;
  for (const std::string &entry : actPolicy) {
    if (isQuantizePin(entry))
      compressPins.push_back(entry);
    pinsWidths |= isBitWidthPin(entry);
  }
  // Recomputation first: the copies' operands are then saved tensors that
  // compression sees like any other. Without a recompute choice it does
  // nothing.
  if (trainMode) {
    BlpaRecomputeOptions options;
    options.bits = bits;
    pm.addPass(createBlpaRecompute(options));
  }
  if (trainMode && (bits != 0 || pinsWidths || withChoices)) {
    BlpaCompressActivationsOptions options;
    options.bits = bits;
    options.naive = actQuantNaive;
    options.policy.assign(compressPins.begin(), compressPins.end());
    pm.addPass(createBlpaCompressActivations(options));
  }
  if (trainMode) {
    BlpaFuseBatchNormReluOptions fuseOptions;
    fuseOptions.recompute = recomputeRelu;
    pm.addPass(createBlpaFuseBatchNormRelu(fuseOptions));
  }
  // The updates first move as early as they can, so that the scheduler
  // starts from (and must beat) that order.
  if (trainMode)
    pm.addPass(createBlpaScheduleUpdates());
  if (scheduleForMemory)
    pm.addPass(createBlpaScheduleForMemory());
  // After the schedulers, which would otherwise move the waits (and with
  // them the updates) back up to the starts, ending the overlap.
  if (trainMode && dataParallel) {
    BlpaAllreduceGradientsOptions options;
    options.bucketBytes = bucketBytes;
    options.syncBatchNorm = syncBatchNorm;
    pm.addPass(createBlpaAllreduceGradients(options));
  }
  BlpaPlanMemoryOptions planOptions;
  // What differs between targets is planner options, not the pipeline.
  if (target == "cuda") {
    planOptions.alignment = 256;
    planOptions.workspaceBytes = workspaceBytes;
  } else {
    planOptions.cpuWorkspaceLimit = cpuWorkspaceLimit;
  }
  if (withReports) {
    planOptions.reportFile = memoryReport;
    planOptions.print = printMemory;
    planOptions.timelineFile = memoryTimeline;
    // The report's predicted times use the model the solver used.
    planOptions.profile.assign(profileOption.begin(), profileOption.end());
  }
  pm.addPass(createBlpaPlanMemory(planOptions));
  // A wrong plan would silently corrupt training, so every plan is checked
  // against lifetimes derived afresh by code that shares nothing with the
  // planner.
  if (verify && !noVerifyMemoryPlan)
    pm.addPass(createBlpaVerifyMemoryPlan());
}

/// The passes up to the memory plan the module still needs, judged from
/// what it already has, so that `.mlir` files saved at any stage compile
/// too.
static void buildPlanningPipeline(PassManager &pm, ModuleOp module, int bits,
                                  bool withReports) {
  if (module.getOps<func::FuncOp>().empty())
    return;
  buildFrontPipeline(pm, module);
  buildTailPipeline(pm, bits, /*withChoices=*/false, withReports);
}

/// The plan's totals for the model at `batch` and `bits`, from a trial
/// compile up to the plan that prints nothing: a batch the model cannot
/// take is a failure, not an error for the user.
static FailureOr<MemoryTotals>
planTotals(MLIRContext &context, StringRef inputPath, int64_t batch, int bits) {
  ScopedDiagnosticHandler quiet(&context,
                                [](Diagnostic &) { return success(); });
  OwningOpRef<ModuleOp> module = loadModule(context, inputPath, batch);
  if (!module)
    return failure();
  PassManager pm(&context);
  buildPlanningPipeline(pm, *module, bits, /*withReports=*/false);
  if (failed(pm.run(*module)))
    return failure();
  return getMemoryTotals(*module);
}

/// planTotals of one model, each (batch, bits) planned once: the answers
/// to --memory-limit and --batch-size max ask for some of them repeatedly
/// (batch 1 and 2 for every bit width's prediction, the chosen batch).
class TrialPlans {
public:
  TrialPlans(MLIRContext &context, StringRef inputPath)
      : context(context), inputPath(inputPath) {}

  FailureOr<MemoryTotals> operator()(int64_t batch, int bits) {
    auto [it, inserted] = plans.try_emplace({batch, bits}, failure());
    if (inserted)
      it->second = planTotals(context, inputPath, batch, bits);
    return it->second;
  }

private:
  MLIRContext &context;
  StringRef inputPath;
  std::map<std::pair<int64_t, int>, FailureOr<MemoryTotals>> plans;
};

/// The budget solver's options from the command line.
static BudgetOptions getBudgetOptions() {
  BudgetOptions options;
  options.limit = memoryLimit.value_or(0);
  options.minBits = minActBits;
  options.preferExactness = preferOption == "exactness";
  options.exhaustive = budgetSearch == "exhaustive";
  options.allowRecompute = !noBudgetRecompute;
  options.profiled = costModel && costModel->isCalibrated();
  return options;
}

/// The plan --batch-size max chose the batch by, with --act-bits auto: the
/// solver's first plan after the unconstrained one, so that it finds one
/// that fits.
static std::optional<NodeChoices> batchPlan;

/// The model at `batch` after the front of the pipeline; null when it
/// cannot be compiled so (quietly: a batch the model cannot take is not an
/// error for the user).
static OwningOpRef<ModuleOp> loadFront(MLIRContext &context,
                                       StringRef inputPath, int64_t batch) {
  ScopedDiagnosticHandler quiet(&context,
                                [](Diagnostic &) { return success(); });
  OwningOpRef<ModuleOp> module = loadModule(context, inputPath, batch);
  if (!module)
    return nullptr;
  PassManager pm(&context);
  buildFrontPipeline(pm, *module);
  if (failed(pm.run(*module)))
    return nullptr;
  return module;
}

/// planTotals with the budget solver's `choices` given to the decided ops.
static FailureOr<MemoryTotals> planTotals(MLIRContext &context,
                                          StringRef inputPath, int64_t batch,
                                          const NodeChoices &choices) {
  OwningOpRef<ModuleOp> module = loadFront(context, inputPath, batch);
  if (!module)
    return failure();
  ScopedDiagnosticHandler quiet(&context,
                                [](Diagnostic &) { return success(); });
  CandidatePlanner::applyChoices(*module, choices);
  PassManager pm(&context);
  buildTailPipeline(pm, /*bits=*/0, /*withChoices=*/true,
                    /*withReports=*/false, /*verify=*/false);
  if (failed(pm.run(*module)))
    return failure();
  return getMemoryTotals(*module);
}

/// The largest batch at which one of the plans likeliest to be the
/// smallest (getSmallestPlanCandidates) fits, and that plan (batch 0 when
/// none fits at batch 1).
static FailureOr<std::pair<int64_t, NodeChoices>>
findLargestSolvedBatch(MLIRContext &context, StringRef inputPath) {
  OwningOpRef<ModuleOp> front = loadFront(context, inputPath, 1);
  if (!front)
    return failure();
  // Only the nodes and blocks are asked for, which need no costs.
  CostModel noCosts;
  CandidatePlanner planner(*front, noCosts, [](PassManager &) {});
  BudgetOptions options = getBudgetOptions();
  std::optional<std::pair<int64_t, NodeChoices>> best;
  for (const NodeChoices &plan : getSmallestPlanCandidates(
           planner.getDecidedNodes(), planner.getBlocks(), options)) {
    std::map<int64_t, FailureOr<MemoryTotals>> totals;
    auto planAt = [&](int64_t batch, int) {
      auto [it, inserted] = totals.try_emplace(batch, failure());
      if (inserted)
        it->second = planTotals(context, inputPath, batch, plan);
      return it->second;
    };
    // Searched only where its prediction comes near the best so far: the
    // total is affine in the batch but for alignment.
    FailureOr<int64_t> predicted =
        predictLargestBatch(planAt, 0, options.limit);
    if (failed(predicted))
      return failure();
    if (best && *predicted < best->first - best->first / 16)
      continue;
    FailureOr<int64_t> batch = findLargestBatch(planAt, 0, options.limit);
    if (failed(batch))
      return failure();
    if (!best || *batch > best->first)
      best = {*batch, plan};
  }
  return *best;
}

/// --batch-size max: the largest batch whose plan fits --memory-limit: at
/// --act-bits, or with auto the largest at which the solver has a plan.
static LogicalResult chooseLargestBatch(MLIRContext &context,
                                        StringRef inputPath) {
  int bits = actBitsAuto ? minActBits : actBits;
  TrialPlans totals(context, inputPath);
  FailureOr<int64_t> best = findLargestBatch(totals, bits, *memoryLimit);
  Location loc = UnknownLoc::get(&context);
  if (failed(best))
    return emitError(loc, "--batch-size max: the model could not be planned "
                          "at batch sizes 1 and 2; give --batch-size N");
  if (*best == 0) {
    FailureOr<MemoryTotals> one = totals(1, bits);
    return emitError(loc, "--batch-size max: not even batch 1 fits: " +
                              explainOverLimit(totals, *one, 1, bits,
                                               *memoryLimit,
                                               /*batchCanChange=*/false,
                                               /*bitsCanChange=*/trainMode));
  }
  batchSize = *best;
  if (actBitsAuto) {
    FailureOr<std::pair<int64_t, NodeChoices>> solved =
        findLargestSolvedBatch(context, inputPath);
    if (failed(solved))
      return emitError(loc, "--batch-size max: the budget solver's plans "
                            "could not be compiled; give --act-bits 8, 4 or "
                            "2");
    if (solved->first > *best) {
      batchSize = solved->first;
      batchPlan = solved->second;
    }
    llvm::errs() << llvm::formatv(
        "note: --batch-size max: {0} ({1}x the {2} of uniform {3}-bit codes "
        "at --memory-limit {4})\n",
        *batchSize, llvm::format("%.2f", double(*batchSize) / *best), *best,
        bits, formatSize(*memoryLimit));
    return success();
  }
  llvm::errs() << "note: --batch-size max: " << *best << " (the plan needs "
               << formatSize(totals(*best, bits)->total())
               << " of --memory-limit " << formatSize(*memoryLimit) << ")\n";
  return success();
}

/// "40 float32, 12 at 8 bits, 3 recomputed" for the solver's choices of
/// `nodes`.
static std::string describeChoices(ArrayRef<std::string> nodes,
                                   const NodeChoices &choices) {
  std::map<std::string, int> counts;
  for (const std::string &node : nodes) {
    auto it = choices.find(node);
    ++counts[it == choices.end() ? "float32" : it->second];
  }
  SmallVector<std::string> parts;
  for (StringRef choice : {"float32", "8", "4", "2", "recompute"}) {
    int count = counts[choice.str()];
    if (count == 0)
      continue;
    std::string what = choice == "float32"     ? "float32"
                       : choice == "recompute" ? "recomputed"
                                               : "at " + choice.str() + " bits";
    parts.push_back(std::to_string(count) + " " + what);
  }
  return llvm::join(parts, ", ");
}

/// --act-bits auto: runs the front of the pipeline on `module`, finds the
/// fastest predicted plan that fits --memory-limit, and leaves its choices
/// on the module's ops for the rest of the pipeline.
static LogicalResult solveForLimit(MLIRContext &context, ModuleOp module) {
  PassManager frontPm(&context);
  buildFrontPipeline(frontPm, module);
  if (failed(frontPm.run(module)))
    return failure();
  auto buildTail = [](PassManager &pm) {
    // The solver's candidates are not run: only the chosen plan, compiled
    // again after the search, is, and that compile verifies it.
    buildTailPipeline(pm, /*bits=*/0, /*withChoices=*/true,
                      /*withReports=*/false, /*verify=*/false);
  };
  CandidatePlanner planner(module, *costModel, buildTail);
  SmallVector<std::string> nodes = planner.getDecidedNodes();
  BudgetOptions options = getBudgetOptions();
  if (batchPlan)
    options.seeds.push_back(*batchPlan);
  if (options.exhaustive &&
      countPlans(nodes.size(), options) > double(options.maxExhaustivePlans))
    return module.emitError(llvm::formatv(
        "--budget-search exhaustive: {0} nodes to decide is more than {1} "
        "plans; use the default search (greedy) or pin nodes with "
        "--act-policy",
        nodes.size(), options.maxExhaustivePlans));
  auto start = std::chrono::steady_clock::now();
  int traced = 0;
  auto evaluate = [&](const NodeChoices &choices)
      -> FailureOr<CandidateFigures> {
    FailureOr<CandidateFigures> figures = planner(choices);
    if (printBudgetSearch)
      llvm::errs() << llvm::formatv(
          "budget plan {0}: {1}; {2}\n", ++traced,
          succeeded(figures)
              ? llvm::formatv("total {0} bytes, predicted step {1} ms",
                              figures->totals.total(),
                              llvm::format("%.4g", figures->seconds * 1e3))
                    .str()
              : std::string("not compiled"),
          describeChoices(nodes, choices));
    return figures;
  };
  FailureOr<BudgetSolution> solution =
      solveBudget(nodes, planner.getBlocks(), evaluate, options);
  double elapsed = std::chrono::duration<double>(
                       std::chrono::steady_clock::now() - start)
                       .count();
  if (failed(solution))
    return module.emitError("--act-bits auto: the model could not be "
                            "planned; give --act-bits 0, 8, 4 or 2");
  const MemoryTotals &plan = solution->figures.totals;
  if (!solution->fits)
    return module.emitError(llvm::formatv(
        "--memory-limit {0}: no plan fits; the smallest of {1} plans found "
        "needs {2} (arena {3}: {4}); raise the limit{5} or lower the batch "
        "size",
        formatSize(*memoryLimit), solution->evaluations,
        formatSize(plan.total()), formatSize(plan.arena),
        describeChoices(nodes, solution->choices),
        minActBits > 2 ? ", allow --min-act-bits 2" : ""));
  if (printBudgetSearch)
    llvm::errs() << llvm::formatv(
        "budget answer: total {0} bytes, charged step {1} s, exact step {2} "
        "s, time step {3}, approximation {4}\n",
        plan.total(), llvm::format("%.9g", solution->chargedSeconds),
        llvm::format("%.9g", solution->unconstrained.seconds),
        solution->timeStep, solution->approximation);
  if (printBudgetSearch && solution->windowSeconds > 0) {
    llvm::errs() << llvm::formatv(
        "budget fastest: charged {0} s, window {1} s",
        llvm::format("%.9g", solution->fastestSeconds),
        llvm::format("%.9g", solution->windowSeconds));
    for (const auto &[width, seconds] : solution->uniformSeconds)
      llvm::errs() << llvm::formatv("; uniform {0} charged {1} s", width,
                                    llvm::format("%.9g", seconds));
    llvm::errs() << "\n";
  }
  CandidatePlanner::applyChoices(module, solution->choices);
  llvm::errs() << llvm::formatv(
      "note: --memory-limit {0}: plan total {1} (arena {2}), predicted step "
      "{3} ms, {4:f2}x the unconstrained plan ({5}); {6}; {7} plans in "
      "{8:f1} s\n",
      formatSize(*memoryLimit), formatSize(plan.total()),
      formatSize(plan.arena),
      llvm::format("%.3g", solution->chargedSeconds * 1e3),
      solution->chargedSeconds / solution->unconstrained.seconds,
      formatSize(solution->unconstrained.totals.total()),
      describeChoices(nodes, solution->choices), solution->evaluations,
      elapsed);
  return success();
}

/// --memory-limit: the planned module's totals against the limit.
static LogicalResult checkMemoryLimit(MLIRContext &context, ModuleOp module,
                                      StringRef inputPath) {
  MemoryTotals plan = getMemoryTotals(module);
  if (!memoryLimit || plan.total() <= *memoryLimit)
    return success();
  TrialPlans totals(context, inputPath);
  bool canVary = isOnnxFile(inputPath);
  int64_t batch = batchSize.value_or(0);
  return module.emitError(explainOverLimit(totals, plan, batch, actBits,
                                           *memoryLimit, canVary,
                                           canVary && trainMode));
}

static FailureOr<std::string> modelBytesFor(ModuleOp module,
                                            StringRef inputPath) {
  std::string source = inputPath.str();
  if (!isOnnxFile(inputPath)) {
    auto attr = module->getAttrOfType<StringAttr>("blpa.source");
    if (!attr)
      return module.emitError("the module has no 'blpa.source' ONNX model "
                              "to take the initial weights from");
    source = attr.getValue().str();
  }
  return readSerializedModel(module.getContext(), source, embedWeights);
}

static LogicalResult emitOutput(ModuleOp module, StringRef inputPath,
                                StringRef outputPath) {
  if (emitKind == EmitKind::Mlir) {
    std::string error;
    auto out = openOutputFile(outputPath, &error);
    if (!out)
      return module.emitError(error);
    module.print(out->os());
    out->keep();
    return success();
  }
  FailureOr<std::string> model = modelBytesFor(module, inputPath);
  if (failed(model))
    return failure();
  if (emitKind == EmitKind::Object)
    return emitObjectFile(module, *model, outputPath);
  SmallString<128> objectPath;
  if (llvm::sys::fs::createTemporaryFile("blpa-step", "o", objectPath))
    return module.emitError("cannot create a temporary object file");
  llvm::FileRemover removeObject(objectPath);
  if (failed(emitObjectFile(module, *model, objectPath)))
    return failure();
  return linkExecutable(module.getLoc(), objectPath, outputPath, target,
                        dataParallel);
}

static LogicalResult compile(MLIRContext &context, StringRef inputPath,
                             StringRef outputPath) {
  if (failed(checkCompileOptions(context, inputPath, outputPath)))
    return failure();
  if (batchSizeMax && failed(chooseLargestBatch(context, inputPath)))
    return failure();
  OwningOpRef<ModuleOp> module = loadModule(context, inputPath, batchSize);
  if (!module)
    return failure();
  if (inferMode && module->lookupSymbol("train_step"))
    return module->emitError("--infer needs a module without @train_step");
  if (failed(readCostModel(*module)))
    return failure();
  DefaultTimingManager timing;
  applyDefaultTimingManagerCLOptions(timing);
  TimingScope timingScope = timing.getRootScope();
  PassManager planning(&context), lowering(&context);
  for (PassManager *pm : {&planning, &lowering}) {
    if (failed(applyPassManagerCLOptions(*pm)))
      return failure();
    pm->enableTiming(timingScope);
  }
  if (actBitsAuto) {
    if (failed(solveForLimit(context, *module)))
      return failure();
    buildTailPipeline(planning, /*bits=*/0, /*withChoices=*/true,
                      /*withReports=*/true);
  } else {
    buildPlanningPipeline(planning, *module, actBits, /*withReports=*/true);
  }
  if (!module->getOps<func::FuncOp>().empty()) {
    BlpaLowerToLLVMOptions lowerOptions;
    lowerOptions.target = target;
    lowering.addPass(createBlpaLowerToLLVM(lowerOptions));
  }
  if (failed(planning.run(*module)) ||
      failed(checkMemoryLimit(context, *module, inputPath)) ||
      failed(lowering.run(*module)))
    return failure();
  return emitOutput(*module, inputPath, outputPath);
}

/// mlir-opt over an imported ONNX model: import, print with locations (so
/// the ONNX node names survive), and hand the text to MlirOptMain.
static LogicalResult optOnnx(DialectRegistry &registry, MLIRContext &context,
                             StringRef inputPath, StringRef outputPath) {
  Location loc = UnknownLoc::get(&context);
  if (failed(readBatchAndLimit(loc)))
    return failure();
  OwningOpRef<ModuleOp> module = loadModule(context, inputPath, batchSize);
  if (!module)
    return failure();
  std::string text;
  llvm::raw_string_ostream os(text);
  module->print(os, OpPrintingFlags().enableDebugInfo());
  std::string error;
  auto out = openOutputFile(outputPath, &error);
  if (!out) {
    llvm::errs() << "error: " << error << "\n";
    return failure();
  }
  if (failed(MlirOptMain(out->os(),
                         llvm::MemoryBuffer::getMemBufferCopy(text, inputPath),
                         registry, MlirOptMainConfig::createFromCLOptions())))
    return failure();
  out->keep();
  return success();
}

/// libLLVM registers hundreds of code generator options at load time; keep
/// them out of --help (they stay in --help-hidden) so that the compiler's and
/// mlir-opt's own options are readable.
static void hideBackendOptions() {
  for (auto &entry : cl::getRegisteredOptions()) {
    cl::Option *option = entry.second;
    bool ours = llvm::is_contained(option->Categories, &compileCategory);
    if (!ours && option->getOptionHiddenFlag() == cl::NotHidden)
      option->setHiddenFlag(cl::Hidden);
  }
}

int main(int argc, char **argv) {
  llvm::InitLLVM initLLVM(argc, argv);
  hideBackendOptions();
  DialectRegistry registry;
  registry.insert<BlpaDialect, func::FuncDialect, LLVM::LLVMDialect>();
  registerBlpaPasses();
  registerBlpaConversionPasses();
  registerTransformsPasses();

  auto [inputPath, outputPath] = registerAndParseCLIOptions(
      argc, argv,
      "blpa-opt: memory-efficient training compiler for ONNX models\n\n"
      "  blpa-opt MODEL.onnx --train --batch-size N [--act-bits 0|8|4|2] "
      "[--memory-report F] -o EXE\n"
      "  blpa-opt MODEL.onnx --infer --batch-size N -o EXE\n"
      "  blpa-opt FILE.mlir|MODEL.onnx [pass flags]   (mlir-opt mode)\n",
      registry);

  if (listOnnxOps) {
    for (const OnnxOpSupport &op : supportedOnnxOps())
      llvm::outs() << op.opType << " " << op.minOpset << " " << op.maxOpset
                   << "\n";
    return 0;
  }

  bool compileMode = trainMode || inferMode;
  if (!compileMode && !isOnnxFile(inputPath))
    return failed(MlirOptMain(argc, argv, inputPath, outputPath, registry));

  MLIRContext context(registry);
  context.loadAllAvailableDialects();
  ScopedDiagnosticHandler handler(&context, printDiagnostic);
  LogicalResult result =
      compileMode ? compile(context, inputPath, outputPath)
                  : optOnnx(registry, context, inputPath, outputPath);
  return failed(result) ? 1 : 0;
}
