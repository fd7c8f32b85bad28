//===- Executable.cpp - Object files and executables from blpa IR ---------===//

#include "blpa/Target/Executable.h"
#include "blpa/Target/LinkConfig.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Export.h"
#include "llvm/IR/Constants.h"
#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FileUtilities.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/Target/TargetOptions.h"
#include "llvm/TargetParser/Host.h"

using namespace mlir;
using namespace mlir::blpa;

/// Adds the model bytes the driver reads initial weights from.
static void embedModel(llvm::Module &module, llvm::StringRef bytes) {
  llvm::LLVMContext &ctx = module.getContext();
  auto *data = llvm::ConstantDataArray::getString(ctx, bytes,
                                                  /*AddNull=*/false);
  new llvm::GlobalVariable(module, data->getType(), /*isConstant=*/true,
                           llvm::GlobalValue::ExternalLinkage, data,
                           "blpa_model_onnx");
  auto *size =
      llvm::ConstantInt::get(llvm::Type::getInt64Ty(ctx), bytes.size());
  new llvm::GlobalVariable(module, size->getType(), /*isConstant=*/true,
                           llvm::GlobalValue::ExternalLinkage, size,
                           "blpa_model_onnx_size");
}

static std::unique_ptr<llvm::TargetMachine> createHostMachine(Location loc) {
  llvm::InitializeNativeTarget();
  llvm::InitializeNativeTargetAsmPrinter();
  llvm::Triple triple(llvm::sys::getDefaultTargetTriple());
  std::string error;
  const llvm::Target *target =
      llvm::TargetRegistry::lookupTarget(triple, error);
  if (!target) {
    emitError(loc, "no code generator for the host: ") << error;
    return nullptr;
  }
  // The generated step only sequences runtime calls, so generic code for the
  // host loses nothing and keeps the object portable across x86-64 CPUs, and
  // the fast instruction selector and register allocator (-O0) lose nothing
  // either: they cut code generation time about 3x (docs/design.md).
  return std::unique_ptr<llvm::TargetMachine>(target->createTargetMachine(
      triple, "generic", "", llvm::TargetOptions(), llvm::Reloc::PIC_,
      /*CM=*/std::nullopt, llvm::CodeGenOptLevel::None));
}

LogicalResult mlir::blpa::emitObjectFile(ModuleOp module,
                                         llvm::StringRef modelBytes,
                                         llvm::StringRef objectPath) {
  registerBuiltinDialectTranslation(*module.getContext());
  registerLLVMDialectTranslation(*module.getContext());
  llvm::LLVMContext llvmContext;
  std::unique_ptr<llvm::Module> llvmModule =
      translateModuleToLLVMIR(module, llvmContext, "blpa_step");
  if (!llvmModule)
    return module.emitError("cannot translate the module to LLVM IR (was it "
                            "lowered with --blpa-lower-to-llvm?)");
  std::unique_ptr<llvm::TargetMachine> machine =
      createHostMachine(module.getLoc());
  if (!machine)
    return failure();
  llvmModule->setTargetTriple(machine->getTargetTriple());
  llvmModule->setDataLayout(machine->createDataLayout());
  embedModel(*llvmModule, modelBytes);

  std::error_code ec;
  llvm::ToolOutputFile out(objectPath, ec, llvm::sys::fs::OF_None);
  if (ec)
    return module.emitError("cannot write ")
           << objectPath << ": " << ec.message();
  llvm::legacy::PassManager passes;
  if (machine->addPassesToEmitFile(passes, out.os(), nullptr,
                                   llvm::CodeGenFileType::ObjectFile))
    return module.emitError("the host code generator cannot emit objects");
  passes.run(*llvmModule);
  out.keep();
  return success();
}

/// The linker's first message line (its output goes to a log so that a
/// failure is reported as one line).
static std::string firstLine(llvm::StringRef logPath, llvm::StringRef error) {
  auto log = llvm::MemoryBuffer::getFile(logPath);
  if (log) {
    llvm::StringRef text = (*log)->getBuffer().trim();
    if (!text.empty())
      return text.split('\n').first.str();
  }
  return error.empty() ? "the C++ driver failed" : error.str();
}

LogicalResult mlir::blpa::checkTargetAvailable(Location loc,
                                               llvm::StringRef target) {
  if (target == "cpu")
    return success();
  if (target != "cuda")
    return emitError(loc, "--target must be cpu or cuda");
#ifdef BLPA_HAVE_CUDA
  return success();
#else
  return emitError(loc, "this blpa-opt was built without the CUDA target "
                        "(" BLPA_CUDA_DISABLED_REASON
                        "); install the CUDA toolkit with cuDNN and rebuild, "
                        "or use --target cpu");
#endif
}

LogicalResult mlir::blpa::checkDataParallelAvailable(Location loc,
                                                     llvm::StringRef target) {
  if (target == "cuda") {
#ifdef BLPA_HAVE_NCCL
    return success();
#else
    return emitError(loc, "this blpa-opt was built without NCCL "
                          "(" BLPA_NCCL_STATUS
                          "), which --data-parallel --target cuda needs");
#endif
  }
#ifdef BLPA_HAVE_MPI
  return success();
#else
  return emitError(loc, "this blpa-opt was built without MPI (" BLPA_MPI_STATUS
                        "), which --data-parallel needs");
#endif
}

/// Folder beside a CUDA executable with the shared libraries it carries.
static constexpr llvm::StringLiteral shippedLibDir = "blpa-cuda-libs";

/// Copies the shared libraries a CUDA executable needs beyond the GPU
/// machine's own into `shippedLibDir` beside it, each by its soname, each
/// through a temporary renamed into place.
static LogicalResult shipLibraries(Location loc, llvm::StringRef exePath) {
#ifdef BLPA_HAVE_CUDA
  SmallString<256> dir = llvm::sys::path::parent_path(exePath);
  llvm::sys::path::append(dir, shippedLibDir);
  if (std::error_code ec = llvm::sys::fs::create_directories(
          dir, /*IgnoreExisting=*/true, llvm::sys::fs::perms(0755)))
    return emitError(loc, "cannot create ") << dir << ": " << ec.message();
  const char *libs[] = {BLPA_CUDA_SHIPPED_LIBS};
  for (size_t i = 0; i + 1 < std::size(libs); i += 2) {
    SmallString<256> dest = dir;
    llvm::sys::path::append(dest, libs[i + 1]);
    std::string tmp = (dest + ".tmp").str();
    if (std::error_code ec = llvm::sys::fs::copy_file(libs[i], tmp))
      return emitError(loc, "cannot copy ") << libs[i] << ": " << ec.message();
    if (std::error_code ec = llvm::sys::fs::rename(tmp, dest))
      return emitError(loc, "cannot write ") << dest << ": " << ec.message();
  }
#endif
  (void)loc;
  (void)exePath;
  return success();
}

LogicalResult mlir::blpa::linkExecutable(Location loc,
                                         llvm::StringRef objectPath,
                                         llvm::StringRef exePath,
                                         llvm::StringRef target,
                                         bool dataParallel) {
  if (failed(checkTargetAvailable(loc, target)) ||
      (dataParallel && failed(checkDataParallelAvailable(loc, target))))
    return failure();
  auto compiler = llvm::sys::findProgramByName("c++");
  if (!compiler)
    return emitError(loc, "cannot find the system C++ driver 'c++' to link "
                          "the executable; install g++");
  // Link to a temporary next to the destination and rename, so a failed
  // link never leaves a half-written executable.
  std::string tmpPath = (exePath + ".tmp-link").str();
  SmallVector<llvm::StringRef> args{*compiler, "-o", tmpPath, objectPath};
  if (target == "cpu") {
    for (llvm::StringRef input : {BLPA_LINK_INPUTS})
      args.push_back(input);
#ifdef BLPA_HAVE_MPI
    if (dataParallel)
      for (llvm::StringRef input : {BLPA_MPI_LINK_INPUTS})
        args.push_back(input);
#endif
  }
#ifdef BLPA_HAVE_CUDA
  if (target == "cuda") {
#ifdef BLPA_HAVE_NCCL
    // Before the CUDA runtime, whose stream the all-reduce library uses.
    if (dataParallel)
      for (llvm::StringRef input : {BLPA_NCCL_LINK_INPUTS})
        args.push_back(input);
#endif
    for (llvm::StringRef input : {BLPA_CUDA_LINK_INPUTS})
      args.push_back(input);
    // RPATH rather than RUNPATH: it also serves the shipped libraries' own
    // dependencies on each other.
    args.push_back("-Wl,--disable-new-dtags");
    args.push_back("-Wl,-rpath,$ORIGIN/blpa-cuda-libs");
  }
#endif
  SmallString<128> logPath;
  if (llvm::sys::fs::createTemporaryFile("blpa-link", "log", logPath))
    return emitError(loc, "cannot create a temporary file for the linker");
  llvm::FileRemover removeLog(logPath);
  std::optional<llvm::StringRef> redirects[] = {std::nullopt, logPath.str(),
                                                logPath.str()};
  std::string error;
  int status = llvm::sys::ExecuteAndWait(*compiler, args, std::nullopt,
                                         redirects, 0, 0, &error);
  if (status != 0) {
    llvm::sys::fs::remove(tmpPath);
    return emitError(loc, "linking the executable failed: ")
           << firstLine(logPath, error);
  }
  if (target == "cuda" && failed(shipLibraries(loc, exePath))) {
    llvm::sys::fs::remove(tmpPath);
    return failure();
  }
  if (std::error_code ec = llvm::sys::fs::rename(tmpPath, exePath))
    return emitError(loc, "cannot write ") << exePath << ": " << ec.message();
  return success();
}
