//===- MemoryBudget.cpp - --memory-limit and --batch-size max -------------===//

#include "MemoryBudget.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringSwitch.h"
#include "llvm/Support/FormatVariadic.h"

#include <cmath>

using namespace mlir;
using namespace mlir::blpa;

static constexpr int64_t kMaxBatch = int64_t(1) << 24;
static constexpr int kBitWidths[] = {0, 8, 4, 2};

llvm::Expected<int64_t>
mlir::blpa::parseMemorySize(StringRef text, StringRef flag, bool allowZero) {
  StringRef rest = text.trim();
  size_t numberEnd = rest.find_first_not_of("0123456789.");
  StringRef number = rest.take_front(numberEnd),
            unit = rest.drop_front(number.size()).trim();
  double value;
  double scale = llvm::StringSwitch<double>(unit)
                     .Cases({"", "B"}, 1.0)
                     .Cases({"KB", "kB"}, 1e3)
                     .Case("MB", 1e6)
                     .Case("GB", 1e9)
                     .Case("TB", 1e12)
                     .Case("KiB", 1024.0)
                     .Case("MiB", 1024.0 * 1024)
                     .Case("GiB", 1024.0 * 1024 * 1024)
                     .Case("TiB", 1024.0 * 1024 * 1024 * 1024)
                     .Default(0);
  if (number.empty() || number.getAsDouble(value) || scale == 0 ||
      value * scale < (allowZero ? 0 : 1) || value * scale > 9e18)
    return llvm::createStringError(
        "--" + flag.str() + ": cannot read '" + text.str() +
        "'; give bytes, or a number with one of the units B, KB, MB, GB, TB "
        "(powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), e.g. "
        "512MiB");
  return static_cast<int64_t>(std::floor(value * scale));
}

FailureOr<int64_t> mlir::blpa::predictLargestBatch(PlanTotalsFn planTotals,
                                                   int bits, int64_t limit) {
  FailureOr<MemoryTotals> one = planTotals(1, bits), two = planTotals(2, bits);
  if (failed(one) || failed(two))
    return failure();
  if (one->total() > limit)
    return 0;
  int64_t slope = two->total() - one->total();
  int64_t guess = slope > 0 ? 1 + (limit - one->total()) / slope : kMaxBatch;
  return std::clamp<int64_t>(guess, 1, kMaxBatch);
}

FailureOr<int64_t> mlir::blpa::findLargestBatch(PlanTotalsFn planTotals,
                                                int bits, int64_t limit) {
  bool failedPlan = false;
  auto fits = [&](int64_t batch) {
    FailureOr<MemoryTotals> totals = planTotals(batch, bits);
    failedPlan |= failed(totals);
    return succeeded(totals) && totals->total() <= limit;
  };
  FailureOr<int64_t> guess = predictLargestBatch(planTotals, bits, limit);
  if (failed(guess) || *guess == 0)
    return guess;
  // From the prediction, `lo` always fits and `hi` never does: gallop
  // from it, then bisect.
  int64_t lo = 1, hi = kMaxBatch + 1;
  if (fits(*guess)) {
    lo = *guess;
    for (int64_t step = 1; lo + step < hi; step *= 2) {
      if (!fits(lo + step)) {
        hi = lo + step;
        break;
      }
      lo += step;
    }
  } else {
    hi = *guess;
    for (int64_t step = 1; hi - step > lo; step *= 2) {
      if (fits(hi - step)) {
        lo = hi - step;
        break;
      }
      hi -= step;
    }
  }
  while (hi - lo > 1) {
    int64_t mid = lo + (hi - lo) / 2;
    (fits(mid) ? lo : hi) = mid;
  }
  if (failedPlan)
    return failure();
  return lo;
}

/// "; at batch 32 these fit: --act-bits 4 (81.49 MiB), ..." for the bit
/// widths other than `bits` whose plan fits at `batch`.
static std::string describeFittingBits(PlanTotalsFn planTotals, int64_t batch,
                                       int bits, int64_t limit) {
  SmallVector<std::string> fitting;
  for (int other : kBitWidths) {
    if (other == bits)
      continue;
    FailureOr<MemoryTotals> totals = planTotals(batch, other);
    if (succeeded(totals) && totals->total() <= limit)
      fitting.push_back(llvm::formatv("--act-bits {0} ({1})", other,
                                      formatSize(totals->total())));
  }
  return llvm::formatv("; at batch {0} ", batch).str() +
         (fitting.empty() ? "no --act-bits fits"
                          : "these fit: " + llvm::join(fitting, ", "));
}

/// "; the largest batch that fits: 23 exact, 87 at 8 bits, ...".
static std::string describeLargestBatches(PlanTotalsFn planTotals,
                                          ArrayRef<int> bitWidths,
                                          int64_t limit) {
  SmallVector<std::string> largest;
  for (int bits : bitWidths) {
    FailureOr<int64_t> best = findLargestBatch(planTotals, bits, limit);
    if (failed(best))
      continue;
    largest.push_back(bits ? llvm::formatv("{0} at {1} bits", *best, bits).str()
                           : llvm::formatv("{0} exact", *best).str());
  }
  if (bitWidths.size() == 1 && largest.size() == 1)
    largest.front() = largest.front().substr(0, largest.front().find(' '));
  return largest.empty()
             ? ""
             : "; the largest batch that fits: " + llvm::join(largest, ", ");
}

std::string mlir::blpa::explainOverLimit(PlanTotalsFn planTotals,
                                         const MemoryTotals &plan,
                                         int64_t batch, int bits, int64_t limit,
                                         bool batchCanChange,
                                         bool bitsCanChange) {
  std::string line = llvm::formatv(
      "the plan needs {0} bytes ({1}: arena {2}, parameters and optimizer "
      "state {3}, batch buffers {4}), {5} more than --memory-limit {6}",
      plan.total(), formatSize(plan.total()), formatSize(plan.arena),
      formatSize(plan.persistent()), formatSize(plan.batch),
      formatSize(plan.total() - limit), formatSize(limit));
  if (bitsCanChange)
    line += describeFittingBits(planTotals, batch, bits, limit);
  if (batchCanChange) {
    SmallVector<int> widths;
    if (bitsCanChange)
      widths.append(std::begin(kBitWidths), std::end(kBitWidths));
    else
      widths.push_back(bits);
    line += describeLargestBatches(planTotals, widths, limit);
  }
  return line;
}
