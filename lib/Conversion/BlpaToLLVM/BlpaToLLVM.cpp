//===- BlpaToLLVM.cpp - Planned blpa functions to runtime calls -----------===//
//
// After --blpa-plan-memory every tensor has a home: an arena offset, a
// persistent parameter slot, or a caller buffer. This pass walks each planned
// function once, keeps the pointer of each tensor value, and emits one
// runtime call per op from the op's RuntimeCallOpInterface. docs/design.md
// says why this is a walk rather than a dialect conversion.
//
//===----------------------------------------------------------------------===//

#include "Manifest.h"

#include "blpa/Conversion/Passes.h"
#include "blpa/Dialect/Blpa/IR/BlpaOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/Builders.h"
#include "mlir/Interfaces/ViewLikeInterface.h"
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

  LLVM::LLVMFuncOp getOrDeclare(StringRef name, ArrayRef<Type> argTypes) {
    if (auto existing = module.lookupSymbol<LLVM::LLVMFuncOp>(name))
      return existing;
    auto type = LLVM::LLVMFunctionType::get(
        LLVM::LLVMVoidType::get(module.getContext()), argTypes);
    builder.setInsertionPointToStart(module.getBody());
    return LLVM::LLVMFuncOp::create(builder, module.getLoc(), name, type);
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
};

/// Lowers one planned function to its entry point.
class FunctionLowering {
public:
  FunctionLowering(ModuleLowering &moduleLowering, const ParamTable &params,
                   func::FuncOp func)
      : moduleLowering(moduleLowering), params(params), func(func),
        builder(func.getContext()),
        ptrType(LLVM::LLVMPointerType::get(func.getContext())) {}

  LogicalResult lower();

private:
  bool isTrainStep() { return func.getName() == "train_step"; }
  Value abiArg(AbiArg arg);
  Value loadSlot(Value array, int64_t index);
  Value i64(int64_t v);
  LogicalResult mapResults(Operation *op);
  FailureOr<Value> lowerArg(Operation *op, const RuntimeArg &arg);
  LogicalResult lowerCall(RuntimeCallOpInterface op);
  LogicalResult lowerReturn(func::ReturnOp op);

  ModuleLowering &moduleLowering;
  const ParamTable &params;
  func::FuncOp func;
  OpBuilder builder;
  Type ptrType;
  LLVM::LLVMFuncOp entry;
  DenseMap<Value, Value> pointers;
};

} // namespace

Value FunctionLowering::abiArg(AbiArg arg) {
  unsigned index = static_cast<unsigned>(arg);
  // The forward entry point has no momenta and gradient arrays.
  if (!isTrainStep() && index > static_cast<unsigned>(AbiArg::Params))
    index -= 2;
  return entry.getArgument(index);
}

Value FunctionLowering::i64(int64_t v) {
  return LLVM::ConstantOp::create(builder, func.getLoc(), builder.getI64Type(),
                                  builder.getI64IntegerAttr(v));
}

Value FunctionLowering::loadSlot(Value array, int64_t index) {
  Value slot = LLVM::GEPOp::create(builder, func.getLoc(), ptrType, ptrType,
                                   array, ArrayRef<LLVM::GEPArg>{index});
  return LLVM::LoadOp::create(builder, func.getLoc(), ptrType, slot);
}

/// Gives each result of `op` its pointer: views alias their source,
/// parameters load their slot, everything else is at its planned offset.
LogicalResult FunctionLowering::mapResults(Operation *op) {
  if (auto view = dyn_cast<ViewLikeOpInterface>(op)) {
    pointers[view.getViewDest()] = pointers.lookup(view.getViewSource());
    return success();
  }
  if (auto param = dyn_cast<ParamOp>(op)) {
    pointers[param.getResult()] = loadSlot(
        abiArg(AbiArg::Params), params.indexOf.lookup(param.getName()));
    return success();
  }
  if (op->getNumResults() == 0)
    return success();
  auto offsets = op->getAttrOfType<DenseI64ArrayAttr>("blpa.offsets");
  if (!offsets || offsets.size() != static_cast<int64_t>(op->getNumResults()))
    return op->emitError("has no memory plan; run --blpa-plan-memory first");
  // The offset is an SSA constant: GEP's inline constant indices are 32-bit
  // and arenas exceed that.
  for (auto [result, offset] :
       llvm::zip(op->getResults(), offsets.asArrayRef()))
    pointers[result] = LLVM::GEPOp::create(
        builder, op->getLoc(), ptrType, builder.getI8Type(),
        abiArg(AbiArg::Arena), ArrayRef<LLVM::GEPArg>{i64(offset)});
  return success();
}

FailureOr<Value> FunctionLowering::lowerArg(Operation *op,
                                            const RuntimeArg &arg) {
  Location loc = op->getLoc();
  switch (arg.kind) {
  case RuntimeArg::Kind::Data:
    if (!arg.value)
      return Value(LLVM::ZeroOp::create(builder, loc, ptrType));
    return pointers.lookup(arg.value);
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

LogicalResult FunctionLowering::lowerCall(RuntimeCallOpInterface op) {
  SmallVector<RuntimeArg> runtimeArgs;
  op.getRuntimeArgs(runtimeArgs);
  SmallVector<Value> args{abiArg(AbiArg::Context)};
  for (const RuntimeArg &arg : runtimeArgs) {
    FailureOr<Value> value = lowerArg(op, arg);
    if (failed(value))
      return failure();
    args.push_back(*value);
  }
  SmallVector<Type> types(ValueRange(args).getTypes());
  LLVM::LLVMFuncOp callee =
      moduleLowering.getOrDeclare(op.getRuntimeFunction(), types);
  if (callee.getFunctionType().getParams() != ArrayRef<Type>(types))
    return op->emitError("inconsistent signature for runtime function ")
           << op.getRuntimeFunction();
  LLVM::CallOp::create(builder, op->getLoc(), callee, args);
  return success();
}

/// Copies each returned tensor into the caller's output buffer.
LogicalResult FunctionLowering::lowerReturn(func::ReturnOp op) {
  Value ctx = abiArg(AbiArg::Context);
  for (auto [index, value] : llvm::enumerate(op.getOperands())) {
    Value dst = loadSlot(abiArg(AbiArg::Outputs), index);
    Value bytes = i64(getTensorBytes(value.getType()));
    SmallVector<Value> args{ctx, dst, pointers.lookup(value), bytes};
    SmallVector<Type> types(ValueRange(args).getTypes());
    LLVM::CallOp::create(builder, op.getLoc(),
                         moduleLowering.getOrDeclare("blpa_copy", types), args);
  }
  LLVM::ReturnOp::create(builder, op.getLoc(), ValueRange{});
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
  builder.setInsertionPointToStart(entry.addEntryBlock(builder));

  for (BlockArgument arg : func.getArguments())
    pointers[arg] = loadSlot(abiArg(AbiArg::Inputs), arg.getArgNumber());
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
    ModuleLowering moduleLowering(module);
    int64_t arenaBytes = 0;
    for (func::FuncOp func : funcs) {
      if (failed(FunctionLowering(moduleLowering, *params, func).lower()))
        return signalPassFailure();
      arenaBytes = std::max(
          arenaBytes,
          func->getAttrOfType<IntegerAttr>("blpa.arena_size").getInt());
    }
    moduleLowering.addString("blpa_manifest",
                             buildManifest(module, *params, arenaBytes));
    for (func::FuncOp func : funcs)
      func.erase();
  }
};
} // namespace
