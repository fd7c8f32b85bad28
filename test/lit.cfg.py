# -*- Python -*-

import os

import lit.formats
from lit.llvm import llvm_config

config.name = "BLPA"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".onnxtext", ".test"]
config.excludes = ["Inputs", "CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.blpa_obj_root, "test")

config.substitutions.append(("%PATH%", config.environment["PATH"]))
config.substitutions.append(("%blpa_tools_dir", config.blpa_tools_dir))
config.substitutions.append(("%blpa_obj_root", config.blpa_obj_root))
llvm_config.with_system_environment(["HOME", "INCLUDE", "LIB", "TMP", "TEMP"])
llvm_config.use_default_substitutions()

llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)
llvm_config.with_environment("PATH", config.blpa_tools_dir, append_path=True)
llvm_config.add_tool_substitutions(["blpa-opt"], [config.blpa_tools_dir])

# Tests of the CUDA target's compile side need it built (no GPU needed).
if getattr(config, "blpa_have_cuda", False):
    config.available_features.add("cuda")
# --data-parallel on the CUDA target needs NCCL found as well.
if getattr(config, "blpa_have_nccl", False):
    config.available_features.add("nccl")
