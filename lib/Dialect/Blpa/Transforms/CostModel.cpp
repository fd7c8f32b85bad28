//===- CostModel.cpp - Predicted time and gradient error of a plan --------===//
//
// A roofline over CostOpInterface's figures, optionally calibrated by a
// profile that a training executable wrote with --profile, and the
// gradient-error proxy of K-bit codes. docs/design.md ("Cost model").
//
//===----------------------------------------------------------------------===//

#include "blpa/Dialect/Blpa/Transforms/CostModel.h"

#include "blpa/Dialect/Blpa/IR/BlpaOps.h"
#include "blpa/Dialect/Blpa/Transforms/MemoryReport.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/raw_ostream.h"

#include <cmath>
#include <set>

using namespace mlir;
using namespace mlir::blpa;

static void printDims(llvm::raw_ostream &os, ArrayRef<int64_t> dims) {
  llvm::interleave(dims, os, "x");
}

/// Whether `v` is float values that the forward pass writes and the
/// backward pass reads: memory that no other op reuses in between, so the
/// ops that write or read it miss the caches where the same op on a value
/// that lives briefly (a coded plan's) hits them. ResNet-164, batch 32, 1
/// thread on an Intel Xeon: the convolutions took 177 ms of the exact
/// step, 150 ms of the 4-bit one. Such values are marked in a shape
/// signature, so that profiles of the two plans time them apart.
static bool isKeptFloat(Value v) {
  Operation *producer = v.getDefiningOp();
  if (!producer || isa<ParamOp>(producer) || isa<PackedType>(v.getType()) ||
      !isInPhase(producer, Phase::Forward))
    return false;
  return llvm::any_of(v.getUsers(), [](Operation *user) {
    return isInPhase(user, Phase::Backward);
  });
}

static void printShape(llvm::raw_ostream &os, Value v) {
  Type type = v.getType();
  if (auto packed = dyn_cast<PackedType>(type)) {
    os << 'p' << packed.getBits() << ':';
    printDims(os, packed.getShape());
  } else if (auto shaped = dyn_cast<ShapedType>(type)) {
    if (isKeptFloat(v))
      os << 'k';
    printDims(os, shaped.getShape());
  }
}

std::string mlir::blpa::getShapeSignature(Operation *op) {
  std::string text;
  llvm::raw_string_ostream os(text);
  llvm::interleave(
      op->getOperands(), os, [&](Value v) { printShape(os, v); }, ",");
  os << "->";
  llvm::interleave(
      op->getResults(), os, [&](Value v) { printShape(os, v); }, ",");
  return text;
}

/// The key of an op in a profile: op name, node and shapes.
static std::string profileKey(StringRef opName, StringRef node,
                              StringRef shapes) {
  return (opName + "|" + node + "|" + shapes).str();
}

/// The key of `op` in a profile.
static std::string profileKey(Operation *op) {
  return profileKey(op->getName().getStringRef(), getNodeName(op),
                    getShapeSignature(op));
}

/// The function whose first arguments are the model's data inputs.
static func::FuncOp getInputFunction(ModuleOp module) {
  if (auto forward = module.lookupSymbol<func::FuncOp>("forward"))
    return forward;
  return module.lookupSymbol<func::FuncOp>("train_step");
}

std::string mlir::blpa::getModelFingerprint(ModuleOp module) {
  // Sorted, so that neither scheduling nor the plan changes it.
  std::set<std::string> parts;
  module.walk([&](ParamOp param) {
    std::string part;
    llvm::raw_string_ostream os(part);
    os << "param " << param.getName() << ' ';
    printDims(os, getShape(param.getResult()));
    parts.insert(part);
  });
  if (func::FuncOp fn = getInputFunction(module))
    for (auto [i, type] : llvm::enumerate(fn.getArgumentTypes())) {
      auto shaped = dyn_cast<ShapedType>(type);
      if (!shaped || !shaped.getElementType().isF32() || shaped.getRank() < 1)
        continue;
      std::string part;
      llvm::raw_string_ostream os(part);
      os << "input " << i << ' ';
      printDims(os, shaped.getShape().drop_front());
      parts.insert(part);
    }
  // FNV-1a: stable across processes and builds, unlike llvm::hash_value.
  uint64_t hash = 14695981039346656037ull;
  for (const std::string &part : parts)
    for (char c : part + "\n")
      hash = (hash ^ uint8_t(c)) * 1099511628211ull;
  return llvm::formatv("{0:x-16}", hash).str();
}

int64_t mlir::blpa::getModelBatchSize(ModuleOp module) {
  func::FuncOp fn = getInputFunction(module);
  if (!fn || fn.getNumArguments() == 0)
    return 0;
  auto shaped = dyn_cast<ShapedType>(fn.getArgumentTypes()[0]);
  return shaped && shaped.hasRank() && shaped.getRank() > 0
             ? shaped.getDimSize(0)
             : 0;
}

CostModel::CostModel() = default;

double CostModel::roofline(double flops, double bytes, double calls) const {
  return calls * callSeconds + std::max(flops / flopRate, bytes / bandwidth);
}

static unsigned numRuntimeCalls(Operation *op) {
  auto call = dyn_cast<RuntimeCallOpInterface>(op);
  return call ? call.getNumRuntimeCalls() : 0;
}

double CostModel::analyticalSeconds(Operation *op) const {
  unsigned calls = numRuntimeCalls(op);
  if (calls == 0)
    return 0;
  OpCost cost = getOpCost(op);
  return roofline(cost.flops, cost.bytes, calls);
}

double CostModel::scaledEstimate(Operation *op) const {
  auto it = kindFactor.find(op->getName().getStringRef());
  double factor = it == kindFactor.end() ? defaultFactor : it->second;
  return factor * analyticalSeconds(op);
}

OpTime CostModel::time(Operation *op) const {
  if (numRuntimeCalls(op) == 0)
    return {0, true, 0};
  if (!measured.empty()) {
    auto it = measured.find(profileKey(op));
    if (it != measured.end())
      return {it->second.first, true, it->second.second};
  }
  return {scaledEstimate(op), false, 0};
}

double CostModel::seconds(Operation *op) const { return time(op).seconds; }

double CostModel::seconds(func::FuncOp fn) const {
  double total = 0;
  for (Operation &op : fn.getBody().front())
    total += seconds(&op);
  return total;
}

/// One line naming the profile and what is wrong with it.
static llvm::Error profileError(StringRef path, const Twine &what) {
  return llvm::createStringError("--profile " + path + ": " + what);
}

namespace {
/// What profiles measured, summed over the files read so far.
struct ProfileSums {
  /// Measured mean seconds, spread (OpTime::spread) and count by
  /// "op|node|shapes": ops of one key (a node's repeated gradient ops, one
  /// op in several profiles) share their means.
  llvm::StringMap<std::tuple<double, double, int>> byKey;
  /// Measured and roofline seconds per op kind, and over all ops.
  llvm::StringMap<std::pair<double, double>> byKind;
  std::pair<double, double> all;
};
} // namespace

/// The profile at `path`, its "model" and "batch_size" into `fingerprint`
/// and `batch`, its ops added to `sums` (their roofline seconds by
/// `model`).
static llvm::Error readProfile(StringRef path, const CostModel &model,
                               std::string &fingerprint, int64_t &batch,
                               ProfileSums &sums) {
  auto buffer = llvm::MemoryBuffer::getFile(path);
  if (!buffer)
    return profileError(path, "cannot read: " + buffer.getError().message());
  llvm::Expected<llvm::json::Value> json =
      llvm::json::parse((*buffer)->getBuffer());
  if (!json)
    return profileError(path, "not JSON: " + llvm::toString(json.takeError()));
  const llvm::json::Object *root = json->getAsObject();
  const llvm::json::Array *ops = root ? root->getArray("ops") : nullptr;
  std::optional<StringRef> format =
      root ? root->getString("format") : std::nullopt;
  std::optional<StringRef> profiledModel =
      root ? root->getString("model") : std::nullopt;
  std::optional<int64_t> profiledBatch =
      root ? root->getInteger("batch_size") : std::nullopt;
  std::optional<int64_t> steps =
      root ? root->getInteger("steps") : std::nullopt;
  if (!ops || format != "blpa-profile 1" || !profiledModel || !profiledBatch ||
      !steps || *steps < 1)
    return profileError(path, "not a profile written by a blpa executable's "
                              "--profile (format \"blpa-profile 1\")");
  fingerprint = profiledModel->str();
  batch = *profiledBatch;
  for (const llvm::json::Value &entry : *ops) {
    const llvm::json::Object *op = entry.getAsObject();
    std::optional<StringRef> name = op ? op->getString("op") : std::nullopt;
    std::optional<StringRef> node = op ? op->getString("node") : std::nullopt;
    std::optional<StringRef> shapes =
        op ? op->getString("shapes") : std::nullopt;
    std::optional<double> mean =
        op ? op->getNumber("mean_seconds") : std::nullopt;
    std::optional<double> fastest =
        op ? op->getNumber("min_seconds") : std::nullopt;
    std::optional<double> flops = op ? op->getNumber("flops") : std::nullopt;
    std::optional<double> bytes = op ? op->getNumber("bytes") : std::nullopt;
    std::optional<int64_t> calls = op ? op->getInteger("calls") : std::nullopt;
    if (!name || !node || !shapes || !mean || !fastest || !flops || !bytes ||
        !calls)
      return profileError(path, "an entry of \"ops\" lacks op, node, shapes, "
                                "calls, mean_seconds, min_seconds, flops or "
                                "bytes");
    auto &[meanSum, spreadSum, count] =
        sums.byKey[profileKey(*name, *node, *shapes)];
    meanSum += *mean;
    // The standard error of the mean over the timed steps, estimated from
    // the mean's distance to the fastest step (about one deviation).
    spreadSum += std::max(0.0, *mean - *fastest) / std::sqrt(double(*steps));
    ++count;
    double estimate = model.roofline(*flops, *bytes, double(*calls));
    for (auto *sum : {&sums.byKind[*name], &sums.all}) {
      sum->first += *mean;
      sum->second += estimate;
    }
  }
  return llvm::Error::success();
}

llvm::Expected<CostModel> CostModel::fromProfiles(ArrayRef<std::string> paths) {
  CostModel model;
  ProfileSums sums;
  for (const std::string &path : paths) {
    std::string fingerprint;
    int64_t batch = 0;
    if (llvm::Error error = readProfile(path, model, fingerprint, batch, sums))
      return std::move(error);
    if (model.profilePaths.empty()) {
      model.fingerprint = fingerprint;
      model.batchSize = batch;
    } else if (fingerprint != model.fingerprint || batch != model.batchSize) {
      return profileError(
          path, llvm::formatv("is a profile of model {0} at batch size {1}, "
                              "--profile {2} of model {3} at batch size {4}; "
                              "give profiles of one model and batch size",
                              fingerprint, batch, model.profilePaths.front(),
                              model.fingerprint, model.batchSize));
    }
    model.profilePaths.push_back(path);
  }
  for (auto &entry : sums.byKey) {
    auto [meanSum, spreadSum, count] = entry.getValue();
    model.measured[entry.getKey()] = {meanSum / count, spreadSum / count};
  }
  // The ratio of the sums: scaled by it, a kind's profiled ops sum to
  // their measured total, under whatever load the profile ran.
  for (auto &entry : sums.byKind)
    if (entry.getValue().second > 0)
      model.kindFactor[entry.getKey()] =
          entry.getValue().first / entry.getValue().second;
  if (sums.all.second > 0)
    model.defaultFactor = sums.all.first / sums.all.second;
  return model;
}

llvm::Error CostModel::checkModule(ModuleOp module) const {
  if (!isCalibrated())
    return llvm::Error::success();
  StringRef path = profilePaths.front();
  int64_t batch = getModelBatchSize(module);
  if (batch != batchSize)
    return profileError(path,
                        "was measured at batch size " + Twine(batchSize) +
                            ", not this compile's " + Twine(batch) +
                            "; profile the executable of this batch size");
  if (getModelFingerprint(module) != fingerprint)
    return profileError(path, "is a profile of another model (fingerprint " +
                                  fingerprint + ", this model's " +
                                  getModelFingerprint(module) +
                                  "); profile an executable of this model");
  return llvm::Error::success();
}

llvm::Expected<CostModel> CostModel::forModule(ModuleOp module,
                                               ArrayRef<std::string> profiles) {
  if (profiles.empty())
    return CostModel();
  llvm::Expected<CostModel> model = fromProfiles(profiles);
  if (!model)
    return model.takeError();
  if (llvm::Error error = model->checkModule(module))
    return std::move(error);
  return model;
}

/// The backward-phase uses of `v` that decode values from its codes (not
/// only a sign, an argmax or a region, which codes keep exactly). A batch
/// norm's gradient reading its input is left out: the batch norm's own codes
/// serve it (see gradientError).
static unsigned countValueReaders(Value v) {
  unsigned count = 0;
  for (OpOperand &use : v.getUses())
    if (isInPhase(use.getOwner(), Phase::Backward) &&
        !isa<BatchNormGradOp>(use.getOwner()) &&
        getActivationNeed(use) == ActivationNeed::Values)
      ++count;
  return count;
}

/// Whether the gradient of `bn` reads its input: then the method's codes of
/// the batch norm replace that input in the backward pass.
static bool isEncodable(BatchNormOp bn) {
  return llvm::any_of(bn.getInput().getUsers(), [](Operation *user) {
    return isa<BatchNormGradOp>(user) && isInPhase(user, Phase::Backward);
  });
}

/// Elements per channel (dimension 1) of a tensor of `shape`.
static double elementsPerChannel(ArrayRef<int64_t> shape) {
  double n = 1;
  for (auto [i, d] : llvm::enumerate(shape))
    if (i != 1 || shape.size() < 2)
      n *= double(d);
  return n;
}

/// The proxy of one reader of the method's batch-norm codes: bins of w =
/// 6 / 2^K over x-hat (unit variance), rounding noise w^2 / 12 = 3 / 4^K,
/// plus what the range of 3 deviations either side clips off whatever K is:
/// E[(|x| - 3)^2; |x| > 3] = 2 ((1 + 9) Q(3) - 3 phi(3)) = 4.07e-4 for a
/// normal x.
static double batchNormCodesError(int bits) {
  const double a = 3, tail = 0.5 * std::erfc(a / std::sqrt(2.0));
  const double density = std::exp(-a * a / 2) / std::sqrt(2 * M_PI);
  double clipped = 2 * ((1 + a * a) * tail - a * density);
  return 3.0 / std::ldexp(1.0, 2 * bits) + clipped;
}

/// The proxy of one reader of the generic quantizer's codes of a tensor of
/// `shape`. For n roughly Gaussian values of deviation s per channel the
/// range is about 2 s sqrt(2 ln n), so the noise (range / levels)^2 / 12 is
/// (2 ln n / 3) s^2 / levels^2 (affine). Non-negative values (a ReLU's) span
/// about s sqrt(2 ln n), zero is exact and their mean square is s^2 / 2:
/// (ln n / 6) / levels^2.
static double quantizerError(ArrayRef<int64_t> shape, bool nonNegative,
                             int bits) {
  double levels = std::ldexp(1.0, bits) - 1;
  double logN = std::log(std::max(2.0, elementsPerChannel(shape)));
  double relative = nonNegative ? logN / 6 : 2 * logN / 3;
  return relative / (levels * levels);
}

double CostModel::gradientError(Value saved, int bits) const {
  if (bits <= 0 || bits >= 32 || !isa<RankedTensorType>(saved.getType()))
    return 0;
  Operation *producer = saved.getDefiningOp();
  // Parameters are no activations; a batch norm's statistics stay exact (the
  // method keeps them), and a ReLU of a batch norm is decoded from the batch
  // norm's codes, whose figure counts the ReLU's readers.
  if (isa_and_present<ParamOp>(producer) ||
      (isa_and_present<BatchNormOp>(producer) &&
       cast<OpResult>(saved).getResultNumber() != 0))
    return 0;
  if (isa_and_present<ReluOp>(producer) &&
      isa_and_present<BatchNormOp>(producer->getOperand(0).getDefiningOp()))
    return 0;
  if (auto bn = dyn_cast_if_present<BatchNormOp>(producer)) {
    // The method's codes of the output (the figure of the batch norm, even
    // when only its gradient reads them), read by the batch norm's own
    // gradient (x-hat~) and by every reader of the output or of its ReLU.
    if (!isEncodable(bn))
      return 0;
    unsigned readers = 1 + countValueReaders(saved);
    for (Operation *user : saved.getUsers())
      if (isa<ReluOp>(user))
        readers += countValueReaders(user->getResult(0));
    return readers * batchNormCodesError(bits);
  }
  unsigned readers = countValueReaders(saved);
  if (readers == 0)
    return 0;
  return readers *
         quantizerError(getShape(saved), isKnownNonNegative(saved), bits);
}

double CostModel::gradientErrorOfCodes(Value codes) const {
  auto packed = dyn_cast<PackedType>(codes.getType());
  if (!packed)
    return 0;
  StringRef scheme = packed.getScheme();
  bool bnRelu = scheme == "bn_relu";
  if (!bnRelu && scheme != "affine" && scheme != "nonneg")
    return 0; // exact codes: a mask, an argmax, a region
  // The readers gradientError counts before compression, now reading the
  // codes: a decoder stands for the readers of what it decodes (of the
  // output, or of its ReLU), any other op (a batch norm's gradient) for
  // itself.
  unsigned readers = 0;
  for (Operation *user : codes.getUsers()) {
    if (!isInPhase(user, Phase::Backward))
      continue;
    if (!isDecoder(user)) {
      ++readers;
      continue;
    }
    for (Value decoded : user->getResults())
      readers += countValueReaders(decoded);
  }
  int bits = packed.getBits();
  if (bnRelu)
    return readers * batchNormCodesError(bits);
  return readers * quantizerError(packed.getShape(), scheme == "nonneg", bits);
}

PredictedCosts CostModel::predictCosts(func::FuncOp fn,
                                       ArrayRef<SavedTensor> tensors) const {
  PredictedCosts costs;
  costs.stepSeconds = seconds(fn);
  for (const SavedTensor &tensor : tensors) {
    ChoiceCost cost;
    for (ChoiceOp added : getChoiceOps(tensor))
      cost.seconds += added.share * seconds(added.op);
    if (tensor.kept)
      cost.gradientError = gradientErrorOfCodes(tensor.kept);
    costs.tensors.push_back(cost);
  }
  return costs;
}
