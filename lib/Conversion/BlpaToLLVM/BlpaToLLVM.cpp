//===- BlpaToLLVM.cpp - Planned blpa functions to runtime calls -----------===//
//
// After --blpa-plan-memory every tensor has a home: an arena offset, a
// persistent parameter slot, or a caller buffer. This pass walks each planned
// function once, records where each tensor value lives, and emits one
// runtime call per op from the op's RuntimeCallOpInterface, in internal
// chunk functions of at most --blpa-lower-to-llvm=chunk-size calls that the
// entry point calls in order. docs/design.md says why this is a walk rather
// than a dialect conversion, and why the chunks.
//
//===----------------------------------------------------------------------===//

#include "Manifest.h"

#include "blpa/Conversion/Passes.h"
#include "blpa/Dialect/Blpa/IR/BlpaOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/Builders.h"
#include "mlir/Interfaces/ViewLikeInterface.h"
#include "llvm/ADT/StringMap.h"
#include <map>

namespace mlir {
namespace blpa {
#define GEN_PASS_DEF_BLPALOWERTOLLVM
#include "blpa/Conversion/Passes.h.inc"
} // namespace blpa
} // namespace mlir

using namespace mlir;
using namespace mlir::blpa;

namespace {

/// The pointer arguments of a generated entry point, in ABI order.
enum class AbiArg { Context, Arena, Params, Momenta, Grads, Inputs, Outputs };

/// Module-level pieces shared by all functions: runtime declarations and
/// constant arrays. Each is created at the top of the module, ahead of the
/// entry points.
class ModuleLowering {
public:
  explicit ModuleLowering(ModuleOp module)
      : module(module), builder(module.getBodyRegion()) {}

  /// The declaration of runtime function `name`. Memoized: a symbol lookup
  /// scans the whole module, which grows with the op count.
  LLVM::LLVMFuncOp getOrDeclare(StringRef name, ArrayRef<Type> argTypes) {
    LLVM::LLVMFuncOp &decl = declarations[name];
    if (decl)
      return decl;
    if ((decl = module.lookupSymbol<LLVM::LLVMFuncOp>(name)))
      return decl;
    auto type = LLVM::LLVMFunctionType::get(
        LLVM::LLVMVoidType::get(module.getContext()), argTypes);
    builder.setInsertionPointToStart(module.getBody());
    decl = LLVM::LLVMFuncOp::create(builder, module.getLoc(), name, type);
    return decl;
  }

  /// A constant int64_t array, shared by every call that passes the same
  /// values.
  LLVM::GlobalOp getIntArray(ArrayRef<int64_t> values) {
    std::vector<int64_t> key(values.begin(), values.end());
    auto it = intArrays.find(key);
    if (it != intArrays.end())
      return it->second;
    auto i64 = builder.getI64Type();
    auto type = LLVM::LLVMArrayType::get(i64, values.size());
    auto attr = DenseElementsAttr::get(
        RankedTensorType::get({int64_t(values.size())}, i64), values);
    builder.setInsertionPointToStart(module.getBody());
    auto global = LLVM::GlobalOp::create(
        builder, module.getLoc(), type, /*isConstant=*/true,
        LLVM::Linkage::Internal,
        ("__blpa_dims_" + Twine(intArrays.size())).str(), attr);
    intArrays[key] = global;
    return global;
  }

  void addString(StringRef name, StringRef text) {
    std::string data = text.str();
    data.push_back('\0');
    auto type = LLVM::LLVMArrayType::get(builder.getI8Type(), data.size());
    builder.setInsertionPointToStart(module.getBody());
    LLVM::GlobalOp::create(builder, module.getLoc(), type,
                           /*isConstant=*/true, LLVM::Linkage::External, name,
                           builder.getStringAttr(data));
  }

private:
  ModuleOp module;
  OpBuilder builder;
  std::map<std::vector<int64_t>, LLVM::GlobalOp> intArrays;
  llvm::StringMap<LLVM::LLVMFuncOp> declarations;
};

/// Where a tensor lives: a caller input buffer, a parameter slot, or an
/// arena offset. Pointers are rematerialized from this in every chunk, so no
/// SSA value lives across a chunk boundary.
struct PointerSource {
  enum class Kind { Input, Param, Arena } kind;
  int64_t index; // input number, parameter index or arena offset in bytes
};

/// Lowers one planned function to its entry point. With a chunk size, the
/// runtime calls go, in order, into internal functions of at most that many
/// calls each (same arguments as the entry point), and the entry point just
/// calls them: LLVM's code generator then sees many small functions instead
/// of one with thousands of calls, whose register allocation is superlinear.
class FunctionLowering {
public:
  FunctionLowering(ModuleLowering &moduleLowering, const ParamTable &params,
                   func::FuncOp func, unsigned chunkSize)
      : moduleLowering(moduleLowering), params(params), func(func),
        chunkSize(chunkSize), builder(func.getContext()),
        entryBuilder(func.getContext()),
        ptrType(LLVM::LLVMPointerType::get(func.getContext())) {}

  LogicalResult lower();

private:
  bool isTrainStep() { return func.getName() == "train_step"; }
  Value abiArg(AbiArg arg);
  Value loadSlot(Value array, int64_t index);
  Value i64(int64_t v);
  FailureOr<Value> pointerOf(Operation *op, Value tensor);
  LogicalResult mapResults(Operation *op);
  FailureOr<Value> lowerArg(Operation *op, const RuntimeArg &arg);
  void beginCalls(unsigned count);
  void startChunk();
  void profileHook(Location loc, StringRef hook);
  LogicalResult lowerCall(RuntimeCallOpInterface op);
  LogicalResult lowerReturn(func::ReturnOp op);

  ModuleLowering &moduleLowering;
  const ParamTable &params;
  func::FuncOp func;
  unsigned chunkSize;
  OpBuilder builder;      // inside the function that receives calls
  OpBuilder entryBuilder; // inside the entry point, calling the chunks
  Type ptrType;
  LLVM::LLVMFuncOp entry;
  LLVM::LLVMFuncOp chunk; // the function receiving calls (entry if unsplit)
  unsigned numChunks = 0;
  unsigned callsInChunk = 0;
  int64_t numProfiledOps = 0; // ops of the training step lowered so far
  DenseMap<Value, PointerSource> sources;
  DenseMap<Value, Value> pointers; // materialized in the current chunk
};

} // namespace

Value FunctionLowering::abiArg(AbiArg arg) {
  unsigned index = static_cast<unsigned>(arg);
  // The forward entry point has no momenta and gradient arrays.
  if (!isTrainStep() && index > static_cast<unsigned>(AbiArg::Params))
    index -= 2;
  return chunk.getArgument(index);
}

Value FunctionLowering::i64(int64_t v) {
  return LLVM::ConstantOp::create(builder, func.getLoc(), builder.getI64Type(),
                                  builder.getI64IntegerAttr(v));
}

Value FunctionLowering::loadSlot(Value array, int64_t index) {
  Value slot =
      LLVM::GEPOp::create(builder, func.getLoc(), ptrType, ptrType, array,
                          ArrayRef<LLVM::GEPArg>{int32_t(index)});
  return LLVM::LoadOp::create(builder, func.getLoc(), ptrType, slot);
}

/// The pointer of `tensor` in the current chunk, created at the insertion
/// point on first use.
FailureOr<Value> FunctionLowering::pointerOf(Operation *op, Value tensor) {
  if (Value ptr = pointers.lookup(tensor))
    return ptr;
  auto it = sources.find(tensor);
  if (it == sources.end())
    return op->emitError("uses a tensor without a planned location");
  const PointerSource &source = it->second;
  Value ptr;
  switch (source.kind) {
  case PointerSource::Kind::Input:
    ptr = loadSlot(abiArg(AbiArg::Inputs), source.index);
    break;
  case PointerSource::Kind::Param:
    ptr = loadSlot(abiArg(AbiArg::Params), source.index);
    break;
  case PointerSource::Kind::Arena:
    // The offset is an SSA constant: GEP's inline constant indices are
    // 32-bit and arenas exceed that.
    ptr = LLVM::GEPOp::create(builder, op->getLoc(), ptrType,
                              builder.getI8Type(), abiArg(AbiArg::Arena),
                              ArrayRef<LLVM::GEPArg>{i64(source.index)});
    break;
  }
  pointers[tensor] = ptr;
  return ptr;
}

/// Records where each result of `op` lives: views alias their source,
/// parameters are in their slot, everything else is at its planned offset.
LogicalResult FunctionLowering::mapResults(Operation *op) {
  if (auto view = dyn_cast<ViewLikeOpInterface>(op)) {
    auto it = sources.find(view.getViewSource());
    if (it == sources.end())
      return op->emitError("views a tensor without a planned location");
    // A copy: inserting the view may grow the map and free what `it` points
    // at.
    PointerSource source = it->second;
    sources[view.getViewDest()] = source;
    return success();
  }
  if (auto param = dyn_cast<ParamOp>(op)) {
    sources[param.getResult()] = {PointerSource::Kind::Param,
                                  params.indexOf.lookup(param.getName())};
    return success();
  }
  if (op->getNumResults() == 0)
    return success();
  auto offsets = op->getAttrOfType<DenseI64ArrayAttr>("blpa.offsets");
  if (!offsets || offsets.size() != static_cast<int64_t>(op->getNumResults()))
    return op->emitError("has no memory plan; run --blpa-plan-memory first");
  for (auto [result, offset] :
       llvm::zip(op->getResults(), offsets.asArrayRef()))
    sources[result] = {PointerSource::Kind::Arena, offset};
  return success();
}

FailureOr<Value> FunctionLowering::lowerArg(Operation *op,
                                            const RuntimeArg &arg) {
  Location loc = op->getLoc();
  switch (arg.kind) {
  case RuntimeArg::Kind::Data:
    if (!arg.value)
      return Value(LLVM::ZeroOp::create(builder, loc, ptrType));
    return pointerOf(op, arg.value);
  case RuntimeArg::Kind::Momentum:
  case RuntimeArg::Kind::GradStore: {
    auto param = arg.value.getDefiningOp<ParamOp>();
    if (!isTrainStep() || !param)
      return op->emitError("optimizer storage is only available for "
                           "parameters in @train_step");
    AbiArg array = arg.kind == RuntimeArg::Kind::Momentum ? AbiArg::Momenta
                                                          : AbiArg::Grads;
    return loadSlot(abiArg(array), params.indexOf.lookup(param.getName()));
  }
  case RuntimeArg::Kind::Int:
    return i64(arg.intValue);
  case RuntimeArg::Kind::Float:
    return Value(
        LLVM::ConstantOp::create(builder, loc, builder.getF64Type(),
                                 builder.getF64FloatAttr(arg.floatValue)));
  case RuntimeArg::Kind::IntArray:
    return Value(LLVM::AddressOfOp::create(
        builder, loc, moduleLowering.getIntArray(arg.intArray)));
  }
  llvm_unreachable("unknown runtime argument kind");
}

/// Makes room for `count` calls that belong together (one op's runtime calls
/// and its profiling hooks): opens a new chunk when they would not fit in the
/// current one (or none is open yet). An op with more calls than a chunk
/// holds gets a chunk of its own.
void FunctionLowering::beginCalls(unsigned count) {
  if (chunkSize != 0 &&
      (numChunks == 0 || (callsInChunk != 0 && callsInChunk + count > chunkSize)))
    startChunk();
  callsInChunk += count;
}

/// Ends the current chunk and starts the next one: an internal function
/// with the entry point's signature, called from the entry point.
void FunctionLowering::startChunk() {
  Location loc = func.getLoc();
  if (numChunks != 0)
    LLVM::ReturnOp::create(builder, loc, ValueRange{});
  entryBuilder.setInsertionPoint(func);
  chunk = LLVM::LLVMFuncOp::create(
      entryBuilder, loc, (entry.getName() + "_chunk" + Twine(numChunks)).str(),
      entry.getFunctionType(), LLVM::Linkage::Internal);
  // Merging the chunks back would recreate the one huge function.
  chunk.setNoInline(true);
  builder.setInsertionPointToStart(chunk.addEntryBlock(builder));
  entryBuilder.setInsertionPointToEnd(&entry.getBody().front());
  LLVM::CallOp::create(entryBuilder, loc, chunk, entry.getArguments());
  ++numChunks;
  callsInChunk = 0;
  pointers.clear();
}

/// blpa_profile_begin or _end(ctx, op index) around an op of the training
/// step (see Runtime.h); the manifest's `op` records number the same ops.
void FunctionLowering::profileHook(Location loc, StringRef hook) {
  Value args[] = {abiArg(AbiArg::Context), i64(numProfiledOps)};
  SmallVector<Type> types(ValueRange(args).getTypes());
  LLVM::CallOp::create(builder, loc, moduleLowering.getOrDeclare(hook, types),
                       args);
}

LogicalResult FunctionLowering::lowerCall(RuntimeCallOpInterface op) {
  bool profiled = isTrainStep();
  unsigned numCalls = op.getNumRuntimeCalls();
  beginCalls(numCalls + (profiled ? 2 : 0));
  if (profiled)
    profileHook(op->getLoc(), "blpa_profile_begin");
  for (unsigned index = 0; index < numCalls; ++index) {
    SmallVector<RuntimeArg> runtimeArgs;
    StringRef function = op.getRuntimeCall(index, runtimeArgs);
    SmallVector<Value> args{abiArg(AbiArg::Context)};
    for (const RuntimeArg &arg : runtimeArgs) {
      FailureOr<Value> value = lowerArg(op, arg);
      if (failed(value))
        return failure();
      args.push_back(*value);
    }
    SmallVector<Type> types(ValueRange(args).getTypes());
    LLVM::LLVMFuncOp callee = moduleLowering.getOrDeclare(function, types);
    if (callee.getFunctionType().getParams() != ArrayRef<Type>(types))
      return op->emitError("inconsistent signature for runtime function ")
             << function;
    LLVM::CallOp::create(builder, op->getLoc(), callee, args);
  }
  if (profiled) {
    profileHook(op->getLoc(), "blpa_profile_end");
    ++numProfiledOps;
  }
  return success();
}

/// Copies each returned tensor into the caller's output buffer.
LogicalResult FunctionLowering::lowerReturn(func::ReturnOp op) {
  for (auto [index, value] : llvm::enumerate(op.getOperands())) {
    beginCalls(1);
    Value dst = loadSlot(abiArg(AbiArg::Outputs), index);
    FailureOr<Value> src = pointerOf(op, value);
    if (failed(src))
      return failure();
    Value bytes = i64(getTensorBytes(value.getType()));
    SmallVector<Value> args{abiArg(AbiArg::Context), dst, *src, bytes};
    SmallVector<Type> types(ValueRange(args).getTypes());
    LLVM::CallOp::create(builder, op.getLoc(),
                         moduleLowering.getOrDeclare("blpa_copy", types), args);
  }
  if (chunk != entry)
    LLVM::ReturnOp::create(builder, op.getLoc(), ValueRange{});
  LLVM::ReturnOp::create(entryBuilder, op.getLoc(), ValueRange{});
  return success();
}

LogicalResult FunctionLowering::lower() {
  if (!func->hasAttr("blpa.arena_size"))
    return func.emitError("has no memory plan; run --blpa-plan-memory first");
  unsigned numArgs = isTrainStep() ? 7 : 5;
  SmallVector<Type> argTypes(numArgs, ptrType);
  builder.setInsertionPoint(func);
  entry = LLVM::LLVMFuncOp::create(
      builder, func.getLoc(), ("blpa_" + func.getName()).str(),
      LLVM::LLVMFunctionType::get(LLVM::LLVMVoidType::get(func.getContext()),
                                  argTypes));
  Block *entryBlock = entry.addEntryBlock(builder);
  builder.setInsertionPointToStart(entryBlock);
  entryBuilder.setInsertionPointToStart(entryBlock);
  chunk = entry;

  for (BlockArgument arg : func.getArguments())
    sources[arg] = {PointerSource::Kind::Input, arg.getArgNumber()};
  for (Operation &op : func.getBody().front()) {
    if (failed(mapResults(&op)))
      return failure();
    LogicalResult result = success();
    if (auto ret = dyn_cast<func::ReturnOp>(op))
      result = lowerReturn(ret);
    else if (auto call = dyn_cast<RuntimeCallOpInterface>(op))
      result = lowerCall(call);
    else if (!isa<ParamOp, ViewLikeOpInterface>(op))
      result = op.emitError("has no runtime call to lower to");
    if (failed(result))
      return failure();
  }
  return success();
}

namespace {
struct LowerToLLVMPass
    : public blpa::impl::BlpaLowerToLLVMBase<LowerToLLVMPass> {
  using BlpaLowerToLLVMBase::BlpaLowerToLLVMBase;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    FailureOr<ParamTable> params = collectParams(module);
    if (failed(params))
      return signalPassFailure();
    SmallVector<func::FuncOp> funcs(module.getOps<func::FuncOp>());
    if (funcs.empty()) {
      module.emitError("no function to lower");
      return signalPassFailure();
    }
    if (target != "cpu" && target != "cuda") {
      module.emitError("target must be cpu or cuda, not '") << target << "'";
      return signalPassFailure();
    }
    ModuleLowering moduleLowering(module);
    ManifestTotals totals;
    totals.target = target;
    for (func::FuncOp func : funcs) {
      if (failed(FunctionLowering(moduleLowering, *params, func, chunkSize)
                     .lower()))
        return signalPassFailure();
      auto intAttr = [&](StringRef name) {
        auto attr = func->getAttrOfType<IntegerAttr>(name);
        return attr ? attr.getInt() : 0;
      };
      // Every function's workspace starts at offset 0 of the one arena.
      totals.arenaBytes =
          std::max(totals.arenaBytes, intAttr("blpa.arena_size"));
      totals.workspaceBytes =
          std::max(totals.workspaceBytes, intAttr("blpa.workspace_bytes"));
    }
    moduleLowering.addString("blpa_manifest",
                             buildManifest(module, *params, totals));
    for (func::FuncOp func : funcs)
      func.erase();
  }
};
} // namespace
