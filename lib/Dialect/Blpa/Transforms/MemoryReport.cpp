//===- MemoryReport.cpp - Where a planned arena's bytes go ----------------===//

#include "blpa/Dialect/Blpa/Transforms/MemoryReport.h"
#include "blpa/Dialect/Blpa/IR/BlpaOps.h"

#include "mlir/Interfaces/ViewLikeInterface.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FormatVariadic.h"

using namespace mlir;
using namespace mlir::blpa;

static constexpr BufferCategory kCategories[] = {
    BufferCategory::SavedCodes,     BufferCategory::SavedFloat,
    BufferCategory::SavedAttention, BufferCategory::Activations,
    BufferCategory::Decoded,        BufferCategory::Recomputed,
    BufferCategory::Gradients};

BufferCategory mlir::blpa::getBufferCategory(const Buffer &buffer) {
  Operation *def = buffer.root.getDefiningOp();
  if (buffer.savedActivation) {
    // Attention probabilities, as float32 or as their codes.
    if (isa_and_nonnull<ProbabilityEncodeOp>(def) ||
        buffer.lastHolder.getDefiningOp<SoftmaxOp>())
      return BufferCategory::SavedAttention;
    return isa<PackedType>(buffer.root.getType()) ? BufferCategory::SavedCodes
                                                  : BufferCategory::SavedFloat;
  }
  if (getPhase(def) != Phase::Backward)
    return BufferCategory::Activations;
  if (def->hasAttr(kRecomputesAttrName))
    return BufferCategory::Recomputed;
  if (isDecoder(def))
    return BufferCategory::Decoded;
  return BufferCategory::Gradients;
}

StringRef mlir::blpa::stringifyBufferCategory(BufferCategory category) {
  switch (category) {
  case BufferCategory::SavedCodes:
    return "saved_codes";
  case BufferCategory::SavedFloat:
    return "saved_float32";
  case BufferCategory::Activations:
    return "activations";
  case BufferCategory::Decoded:
    return "decoded";
  case BufferCategory::Recomputed:
    return "recomputed";
  case BufferCategory::Gradients:
    return "gradients";
  case BufferCategory::SavedAttention:
    return "saved_attention";
  }
  llvm_unreachable("unknown buffer category");
}

/// A readable name for tables and the SVG legend.
static StringRef describeCategory(BufferCategory category) {
  switch (category) {
  case BufferCategory::SavedCodes:
    return "saved codes (K-bit)";
  case BufferCategory::SavedFloat:
    return "saved activations, float32";
  case BufferCategory::Activations:
    return "other activations";
  case BufferCategory::Decoded:
    return "decoded activations";
  case BufferCategory::Recomputed:
    return "recomputed activations";
  case BufferCategory::Gradients:
    return "gradients";
  case BufferCategory::SavedAttention:
    return "saved attention maps (softmax), float32";
  }
  llvm_unreachable("unknown buffer category");
}

std::string mlir::blpa::formatSize(int64_t bytes) {
  const char *units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 5) {
    value /= 1024;
    ++unit;
  }
  if (unit == 0)
    return llvm::formatv("{0} bytes", bytes).str();
  return llvm::formatv("{0:F2} {1}", value, units[unit]).str();
}

std::string mlir::blpa::getNodeName(Operation *op) {
  Location loc = op->getLoc();
  if (auto fused = dyn_cast<FusedLoc>(loc))
    for (Location inner : fused.getLocations())
      if (isa<NameLoc>(inner))
        loc = inner;
  if (auto name = dyn_cast<NameLoc>(loc))
    return name.getName().str();
  return "";
}

MemoryTimeline mlir::blpa::computeTimeline(func::FuncOp func,
                                           const MemoryPlan &plan) {
  Block &block = func.getBody().front();
  int64_t numOps = static_cast<int64_t>(block.getOperations().size());
  MemoryTimeline timeline;
  timeline.backwardStart = numOps;
  for (auto [i, op] : llvm::enumerate(block))
    if (getPhase(&op) == Phase::Backward) {
      timeline.backwardStart = i;
      break;
    }
  // Differences at each buffer's first op and past its last, summed.
  SmallVector<std::array<int64_t, kNumBufferCategories>> delta(numOps + 1);
  for (auto &row : delta)
    row.fill(0);
  for (const Buffer &buffer : plan.buffers) {
    unsigned c = static_cast<unsigned>(getBufferCategory(buffer));
    delta[buffer.start][c] += buffer.bytes;
    delta[buffer.end + 1][c] -= buffer.bytes;
  }
  std::array<int64_t, kNumBufferCategories> live{};
  int64_t peak = -1;
  for (int64_t i = 0; i < numOps; ++i) {
    int64_t total = 0;
    for (unsigned c = 0; c < kNumBufferCategories; ++c)
      total += live[c] += delta[i][c];
    timeline.liveBytes.push_back(live);
    if (total > peak) {
      peak = total;
      timeline.peakOp = i;
    }
  }
  return timeline;
}

/// The op at `index` of the function's block.
static Operation *getOpAt(func::FuncOp func, int64_t index) {
  return &*std::next(func.getBody().front().begin(), index);
}

/// The `count` largest buffers, largest first.
static SmallVector<const Buffer *> getLargestBuffers(const MemoryPlan &plan,
                                                     size_t count) {
  SmallVector<const Buffer *> order;
  for (const Buffer &buffer : plan.buffers)
    order.push_back(&buffer);
  llvm::stable_sort(order, [](const Buffer *a, const Buffer *b) {
    return a->bytes > b->bytes;
  });
  order.truncate(std::min(count, order.size()));
  return order;
}

/// Whether the backward phase reads `v`, directly or through views (as
/// analyzeBuffers decides that a buffer is a saved activation).
static bool isReadInBackward(Value v) {
  for (Operation *user : v.getUsers()) {
    if (user->hasAttr(kPhaseAttrName) && getPhase(user) == Phase::Backward)
      return true;
    if (auto view = dyn_cast<ViewLikeOpInterface>(user))
      if (view.getViewSource() == v && isReadInBackward(view->getResult(0)))
        return true;
  }
  return false;
}

/// The report's name of what `type` keeps of a tensor.
static std::string describeChoice(Type type) {
  auto packed = dyn_cast<PackedType>(type);
  if (!packed)
    return "float32";
  StringRef scheme = packed.getScheme();
  if (llvm::is_contained({"mask", "argmax", "region"}, scheme))
    return scheme.str();
  return std::to_string(packed.getBits());
}

/// The shape of the tensor that a value of `type` keeps, or codes stand for.
static SmallVector<int64_t> getStoodForShape(Type type) {
  if (auto packed = dyn_cast<PackedType>(type))
    return SmallVector<int64_t>(packed.getShape());
  return SmallVector<int64_t>(cast<ShapedType>(type).getShape());
}

/// Whether `result` holds a few floats per channel (batch statistics,
/// quantization ranges), as the plan's saved_per_channel_bytes counts them.
static bool isPerChannel(OpResult result) {
  if (isa<PackedType>(result.getType()))
    return false;
  return cast<ShapedType>(result.getType()).getRank() <= 1 ||
         isCodeParams(result);
}

/// The entries of `op`'s saved results: one per tensor or codes, the
/// per-channel floats of an op that also keeps codes counted in its first
/// codes' entry (they decode them), other per-channel results on their own.
static void addSavedResults(Operation &op, const MemoryPlan &plan,
                            SmallVector<SavedTensor> &tensors) {
  std::optional<size_t> codesEntry;
  SmallVector<Value> perChannel;
  for (OpResult result : op.getResults()) {
    auto buffer = plan.bufferOf.find(result);
    if (buffer == plan.bufferOf.end() || !isReadInBackward(result))
      continue;
    if (isPerChannel(result)) {
      perChannel.push_back(result);
      continue;
    }
    bool packed = isa<PackedType>(result.getType());
    Operation *source = &op;
    if (isCodesWriter(&op))
      if (Operation *def = op.getOperand(0).getDefiningOp())
        source = def;
    if (packed && !codesEntry)
      codesEntry = tensors.size();
    tensors.push_back({&op, result, source, getStoodForShape(result.getType()),
                       describeChoice(result.getType()),
                       plan.buffers[buffer->second].bytes});
  }
  for (Value result : perChannel) {
    int64_t bytes = plan.buffers[plan.bufferOf.at(result)].bytes;
    if (codesEntry) {
      tensors[*codesEntry].bytes += bytes;
      continue;
    }
    tensors.push_back({&op, result, &op, getStoodForShape(result.getType()),
                       "float32", bytes});
  }
}

SmallVector<SavedTensor> mlir::blpa::getSavedTensors(func::FuncOp func,
                                                     const MemoryPlan &plan) {
  SmallVector<SavedTensor> tensors;
  for (Operation &op : func.getBody().front()) {
    if (getPhase(&op) != Phase::Forward || isa<ViewLikeOpInterface>(op))
      continue;
    addSavedResults(op, plan, tensors);
    // What is recomputed is the op's output; results the copies read
    // instead (a batch norm's statistics) are entries of their own.
    auto choice = op.getAttrOfType<StringAttr>(kActChoiceAttrName);
    if (choice && choice.getValue() == "recompute" && op.getNumResults() != 0 &&
        !isReadInBackward(op.getResult(0)))
      tensors.push_back({&op, Value(), &op,
                         getStoodForShape(op.getResultTypes()[0]), "recompute",
                         0});
  }
  return tensors;
}

bool mlir::blpa::isDecoder(Operation *op) {
  if (!isInPhase(op, Phase::Backward) ||
      llvm::none_of(op->getOperandTypes(), llvm::IsaPred<PackedType>))
    return false;
  return llvm::none_of(op->getOperands(), [](Value operand) {
    Operation *def = operand.getDefiningOp();
    return def && isInPhase(def, Phase::Backward);
  });
}

/// Whether `op` exists only to encode: a forward op none of whose results
/// the forward phase reads.
static bool isEncoderOnly(Operation *op) {
  return llvm::none_of(op->getUsers(), [](Operation *user) {
    return !isInPhase(user, Phase::Backward);
  });
}

/// The backward ops that recompute the op of blpa.recompute_id `id`, with
/// their shares.
static void addCopies(func::FuncOp func, int64_t id,
                      SmallVector<ChoiceOp> &ops) {
  for (Operation &op : func.getBody().front()) {
    auto ids = op.getAttrOfType<DenseI64ArrayAttr>(kRecomputesAttrName);
    if (ids && llvm::is_contained(ids.asArrayRef(), id))
      ops.push_back({&op, 1.0 / ids.size()});
  }
}

SmallVector<ChoiceOp> mlir::blpa::getChoiceOps(const SavedTensor &tensor) {
  SmallVector<ChoiceOp> ops;
  if (tensor.choice == "recompute") {
    auto func = tensor.keptBy->getParentOfType<func::FuncOp>();
    if (auto id =
            tensor.keptBy->getAttrOfType<IntegerAttr>(kRecomputeIdAttrName))
      addCopies(func, id.getInt(), ops);
    return ops;
  }
  if (!tensor.kept || !isa<PackedType>(tensor.kept.getType()))
    return ops;
  if (isEncoderOnly(tensor.keptBy))
    ops.push_back({tensor.keptBy, 1.0});
  for (Operation *user : tensor.kept.getUsers())
    if (isDecoder(user) && llvm::none_of(ops, [&](const ChoiceOp &added) {
          return added.op == user;
        }))
      ops.push_back({user, 1.0});
  return ops;
}

/// The report's entry of `tensor`, with its cost when there is one.
static llvm::json::Object toJson(const SavedTensor &tensor,
                                 const ChoiceCost *cost) {
  llvm::json::Object entry{{"node", getNodeName(tensor.source)},
                           {"op", tensor.source->getName().getStringRef()},
                           {"shape", llvm::json::Array(tensor.shape)},
                           {"choice", tensor.choice},
                           {"bytes", tensor.bytes}};
  if (tensor.keptBy != tensor.source)
    entry["encoder"] = tensor.keptBy->getName().getStringRef();
  if (cost) {
    entry["predicted_seconds"] = cost->seconds;
    entry["gradient_error"] = cost->gradientError;
  }
  return entry;
}

/// The cost of saved tensor `index`, if there are costs.
static const ChoiceCost *getCost(const PredictedCosts *costs, size_t index) {
  return costs && index < costs->tensors.size() ? &costs->tensors[index]
                                                : nullptr;
}

void mlir::blpa::addBreakdownToReport(llvm::json::Object &report,
                                      func::FuncOp func, const MemoryPlan &plan,
                                      const MemoryTimeline &timeline,
                                      const PredictedCosts *costs) {
  if (timeline.liveBytes.empty())
    return;
  llvm::json::Object atPeak;
  for (BufferCategory c : kCategories)
    atPeak[stringifyBufferCategory(c)] =
        timeline.liveBytes[timeline.peakOp][static_cast<unsigned>(c)];
  report["at_peak"] = std::move(atPeak);
  Operation *peakOp = getOpAt(func, timeline.peakOp);
  report["peak_op"] =
      llvm::json::Object{{"index", timeline.peakOp},
                         {"op", peakOp->getName().getStringRef()},
                         {"node", getNodeName(peakOp)}};
  llvm::json::Array largest;
  for (const Buffer *buffer : getLargestBuffers(plan, 10)) {
    Operation *def = buffer->root.getDefiningOp();
    largest.push_back(llvm::json::Object{
        {"bytes", buffer->bytes},
        {"offset", buffer->offset},
        {"category", stringifyBufferCategory(getBufferCategory(*buffer))},
        {"op", def->getName().getStringRef()},
        {"node", getNodeName(def)},
        {"first_op", buffer->start},
        {"last_op", buffer->end}});
  }
  report["largest_buffers"] = std::move(largest);
  llvm::json::Array saved;
  for (auto [i, tensor] : llvm::enumerate(getSavedTensors(func, plan)))
    saved.push_back(toJson(tensor, getCost(costs, i)));
  report["saved_tensors"] = std::move(saved);
  if (costs)
    report["predicted_step_seconds"] = costs->stepSeconds;
}

static int64_t totalAt(const MemoryTimeline &timeline, int64_t op) {
  int64_t total = 0;
  for (int64_t bytes : timeline.liveBytes[op])
    total += bytes;
  return total;
}

/// The largest buffers with their placement and live range.
static void printLargestBuffers(llvm::raw_ostream &os, const MemoryPlan &plan) {
  os << "largest buffers:\n"
     << llvm::formatv("  {0,12} {1,12} {2,13}  {3,-32} {4}\n", "size", "offset",
                      "live ops", "op", "node");
  for (const Buffer *buffer : getLargestBuffers(plan, 10)) {
    Operation *def = buffer->root.getDefiningOp();
    os << llvm::formatv("  {0,12} {1,12} {2,6}..{3,-6}  {4,-32} {5}\n",
                        formatSize(buffer->bytes), buffer->offset,
                        buffer->start, buffer->end,
                        def->getName().getStringRef(), getNodeName(def));
  }
}

/// "0", "12.3 us": a duration for the table.
static std::string formatSeconds(double seconds) {
  if (seconds == 0)
    return "0";
  if (seconds < 1e-3)
    return llvm::formatv("{0:F1} us", seconds * 1e6).str();
  if (seconds < 1)
    return llvm::formatv("{0:F2} ms", seconds * 1e3).str();
  return llvm::formatv("{0:F2} s", seconds).str();
}

/// What is kept of each saved tensor, largest first, the first
/// kMaxSavedRows of them and the total of all; with `costs`, the time each
/// choice adds and its gradient error.
static void printSavedTensors(llvm::raw_ostream &os,
                              ArrayRef<SavedTensor> tensors,
                              const PredictedCosts *costs) {
  constexpr size_t kMaxSavedRows = 20;
  if (tensors.empty())
    return;
  auto order = llvm::to_vector(llvm::seq<size_t>(0, tensors.size()));
  llvm::stable_sort(order, [&](size_t a, size_t b) {
    return tensors[a].bytes > tensors[b].bytes;
  });
  int64_t total = 0;
  for (const SavedTensor &tensor : tensors)
    total += tensor.bytes;
  os << "saved tensors (" << tensors.size() << ", largest first):\n"
     << llvm::formatv("  {0,12} {1,-9} ", "size", "choice");
  if (costs)
    os << llvm::formatv("{0,10} {1,10} ", "adds", "grad error");
  os << llvm::formatv("{0,-20} {1,-32} {2}\n", "shape", "op", "node");
  for (size_t i : ArrayRef(order).take_front(kMaxSavedRows)) {
    const SavedTensor &tensor = tensors[i];
    os << llvm::formatv("  {0,12} {1,-9} ", formatSize(tensor.bytes),
                        tensor.choice);
    if (const ChoiceCost *cost = getCost(costs, i))
      os << llvm::formatv("{0,10} {1,10} ", formatSeconds(cost->seconds),
                          llvm::format("%.3g", cost->gradientError));
    os << llvm::formatv(
        "{0,-20} {1,-32} {2}\n",
        llvm::join(llvm::map_range(tensor.shape,
                                   [](int64_t d) { return std::to_string(d); }),
                   "x"),
        tensor.source->getName().getStringRef(), getNodeName(tensor.source));
  }
  if (tensors.size() > kMaxSavedRows)
    os << "  ... " << tensors.size() - kMaxSavedRows << " more\n";
  os << llvm::formatv("  {0,12} in all\n", formatSize(total));
}

void mlir::blpa::printMemoryTable(llvm::raw_ostream &os, func::FuncOp func,
                                  const MemoryPlan &plan,
                                  const MemoryTotals &totals,
                                  const MemoryTimeline &timeline,
                                  const PredictedCosts *costs) {
  auto row = [&](StringRef what, int64_t bytes) {
    os << llvm::formatv("  {0,-36} {1,12}\n", what, formatSize(bytes));
  };
  os << "memory plan of @" << func.getName() << ": "
     << formatSize(totals.total()) << " in all (" << totals.total()
     << " bytes)\n";
  row("arena (planned peak)", plan.arenaBytes);
  double ratio = plan.lowerBoundBytes
                     ? double(plan.arenaBytes) / plan.lowerBoundBytes
                     : 1.0;
  os << llvm::formatv("  {0,-36} {1,12}  (peak / bound {2:F3})\n",
                      "live-bytes lower bound",
                      formatSize(plan.lowerBoundBytes), ratio);
  row("parameters", totals.parameters);
  row("gradients", totals.gradients);
  row("optimizer state (momentum)", totals.optimizerState);
  row("running statistics", totals.state);
  row("batch buffers", totals.batch);
  if (costs)
    os << llvm::formatv("  {0,-36} {1,12}\n", "predicted step time",
                        formatSeconds(costs->stepSeconds));
  if (timeline.liveBytes.empty())
    return;
  Operation *peakOp = getOpAt(func, timeline.peakOp);
  os << llvm::formatv("at the peak (op {0} of {1}, {2}, node '{3}'):\n",
                      timeline.peakOp, timeline.liveBytes.size(),
                      peakOp->getName().getStringRef(), getNodeName(peakOp));
  for (BufferCategory c : kCategories) {
    int64_t bytes =
        timeline.liveBytes[timeline.peakOp][static_cast<unsigned>(c)];
    // A model without softmax outputs gets no attention line.
    if (bytes || c != BufferCategory::SavedAttention)
      row(describeCategory(c), bytes);
  }
  printLargestBuffers(os, plan);
  printSavedTensors(os, getSavedTensors(func, plan), costs);
}

/// `text` with XML's special characters escaped.
static std::string xmlEscape(StringRef text) {
  std::string escaped;
  for (char c : text) {
    switch (c) {
    case '&':
      escaped += "&amp;";
      break;
    case '<':
      escaped += "&lt;";
      break;
    case '>':
      escaped += "&gt;";
      break;
    case '"':
      escaped += "&quot;";
      break;
    default:
      escaped += c;
    }
  }
  return escaped;
}

namespace {
/// The geometry of the timeline plot: ops along x, MiB up y.
struct Plot {
  static constexpr int left = 80, top = 50, width = 820, height = 300;
  int64_t numOps, maxBytes;
  double x(double op) const { return left + width * op / double(numOps); }
  double y(double bytes) const {
    return top + height * (1 - bytes / double(maxBytes));
  }
};
} // namespace

/// The ops drawn, one per pixel column at most: in each column the op
/// with the most live bytes, so that no peak is lost.
static SmallVector<int64_t> sampleOps(const MemoryTimeline &timeline,
                                      double columns) {
  SmallVector<int64_t> ops;
  int64_t numOps = timeline.liveBytes.size();
  double perColumn = std::max(1.0, numOps / columns);
  for (double begin = 0; begin < numOps; begin += perColumn) {
    int64_t best = static_cast<int64_t>(begin);
    int64_t end = std::min<int64_t>(numOps, int64_t(begin + perColumn));
    for (int64_t op = best; op < end; ++op)
      if (totalAt(timeline, op) > totalAt(timeline, best))
        best = op;
    ops.push_back(best);
  }
  return ops;
}

/// One stacked band per category, bottom to top in kCategories order.
static void writeBands(llvm::raw_ostream &os, const MemoryTimeline &timeline,
                       const Plot &plot) {
  static const char *colors[] = {"#2b8cbe", "#7bccc4", "#fdae6b", "#bcbddc",
                                 "#31a354", "#e34a33", "#a6bddb"};
  static_assert(std::size(colors) == kNumBufferCategories);
  SmallVector<int64_t> ops = sampleOps(timeline, Plot::width);
  SmallVector<int64_t> below(ops.size(), 0);
  for (BufferCategory c : kCategories) {
    unsigned ci = static_cast<unsigned>(c);
    os << "<polygon fill=\"" << colors[ci] << "\" points=\"";
    for (auto [i, op] : llvm::enumerate(ops))
      os << llvm::formatv("{0:F1},{1:F1} ", plot.x(op),
                          plot.y(below[i] + timeline.liveBytes[op][ci]));
    for (size_t i = ops.size(); i-- > 0;)
      os << llvm::formatv("{0:F1},{1:F1} ", plot.x(ops[i]), plot.y(below[i]));
    os << "\"><title>" << describeCategory(c) << "</title></polygon>\n";
    for (auto [i, op] : llvm::enumerate(ops))
      below[i] += timeline.liveBytes[op][ci];
  }
  for (BufferCategory c : kCategories) {
    unsigned ci = static_cast<unsigned>(c);
    double y = Plot::top + 16 * ci;
    os << llvm::formatv("<rect x=\"{0}\" y=\"{1}\" width=\"12\" height=\"12\" "
                        "fill=\"{2}\"/><text x=\"{3}\" y=\"{4}\">{5}</text>\n",
                        Plot::left + 10, y, colors[ci], Plot::left + 28, y + 11,
                        describeCategory(c));
  }
}

void mlir::blpa::writeTimelineSvg(llvm::raw_ostream &os, func::FuncOp func,
                                  const MemoryTimeline &timeline) {
  int64_t numOps = std::max<int64_t>(1, timeline.liveBytes.size());
  int64_t peak =
      timeline.liveBytes.empty() ? 0 : totalAt(timeline, timeline.peakOp);
  Plot plot{numOps, std::max<int64_t>(1, peak)};
  os << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"960\" "
        "height=\"420\" font-family=\"sans-serif\" font-size=\"12\">\n"
     << "<rect width=\"960\" height=\"420\" fill=\"white\"/>\n"
     << "<text x=\"" << Plot::left << "\" y=\"24\" font-size=\"15\">@"
     << xmlEscape(func.getName()) << ": live bytes over the schedule ("
     << numOps << " ops), peak " << formatSize(peak) << " at op "
     << timeline.peakOp << "</text>\n";
  if (!timeline.liveBytes.empty())
    writeBands(os, timeline, plot);
  // Axes, y ticks in the peak's unit, the backward boundary, the peak.
  os << llvm::formatv("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" "
                      "stroke=\"black\"/>\n<line x1=\"{0}\" y1=\"{2}\" "
                      "x2=\"{3}\" y2=\"{2}\" stroke=\"black\"/>\n",
                      Plot::left, Plot::top, Plot::top + Plot::height,
                      Plot::left + Plot::width);
  for (int tick = 0; tick <= 4; ++tick) {
    double bytes = plot.maxBytes * tick / 4.0;
    os << llvm::formatv("<text x=\"{0}\" y=\"{1:F1}\" text-anchor=\"end\">{2}"
                        "</text>\n",
                        Plot::left - 6, plot.y(bytes) + 4,
                        formatSize(static_cast<int64_t>(bytes)));
  }
  if (timeline.backwardStart < numOps)
    os << llvm::formatv(
        "<line x1=\"{0:F1}\" y1=\"{1}\" x2=\"{0:F1}\" "
        "y2=\"{2}\" stroke=\"black\" stroke-dasharray=\"4 3\"/>"
        "<text x=\"{3:F1}\" y=\"{4}\">backward</text>\n",
        plot.x(timeline.backwardStart), Plot::top, Plot::top + Plot::height,
        plot.x(timeline.backwardStart) + 4, Plot::top + Plot::height - 6);
  os << llvm::formatv("<text x=\"{0}\" y=\"{1}\" text-anchor=\"middle\">op "
                      "index (schedule order)</text>\n</svg>\n",
                      Plot::left + Plot::width / 2,
                      Plot::top + Plot::height + 30);
}
