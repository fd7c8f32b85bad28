"""The CUDA target as far as a machine without a GPU can check it: the
executable links, carries what a bare GPU machine lacks, names its target,
plans for cuDNN (256-byte alignment, a workspace), refuses cleanly to run
without a GPU, and --embed-weights=false works on both targets."""

import json
import os
import re
import subprocess

import numpy as np
import pytest

from conftest import REPO, fresh_rng
from blpa import models, tool


def cuda_built():
    cache = os.path.join(REPO, "build", "CMakeCache.txt")
    with open(cache) as f:
        return "BLPA_HAVE_CUDA:INTERNAL=ON" in f.read()


needs_cuda_build = pytest.mark.skipif(
    not cuda_built(), reason="the CUDA target is disabled in this build")

# What the GPU machine has without us (../shared/toolchain.md): glibc, the
# C++ runtime and zlib from its own system; cuDNN and cuBLAS from its Python
# packages, on LD_LIBRARY_PATH.
SYSTEM_LIBS = {"linux-vdso.so.1", "libc.so.6", "libm.so.6", "libdl.so.2",
               "librt.so.1", "libpthread.so.0", "ld-linux-x86-64.so.2",
               "libstdc++.so.6", "libgcc_s.so.1", "libz.so.1"}
CUDA_PACKAGE_LIBS = {"libcudnn.so.9", "libcublas.so.13", "libcublasLt.so.13"}


@pytest.fixture(scope="module")
def cuda_exe(workdir):
    model = models.residual_cnn(seed=3)
    onnx_path = str(workdir / "cuda_residual.onnx")
    models.export(model, onnx_path, (1, 3, 16, 16))
    out_dir = workdir / "cuda-out"
    out_dir.mkdir()
    report = str(out_dir / "report.json")
    exe = tool.compile(onnx_path, str(out_dir / "residual"), batch_size=4,
                       act_bits=4, target="cuda", memory_report=report)
    with open(report) as f:
        return exe, onnx_path, json.load(f)


def ldd(exe):
    """{soname: resolved path or None} of `exe` without LD_LIBRARY_PATH."""
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    out = subprocess.run(["ldd", exe], capture_output=True, text=True,
                         env=env, check=True).stdout
    libs = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+)(?: => (\S+))?", line)
        if m:
            path = m.group(2)
            libs[os.path.basename(m.group(1))] = (
                None if path in (None, "not") else path)
    return libs


@needs_cuda_build
def test_cuda_executable_needs_only_what_a_gpu_machine_has(cuda_exe):
    exe, _, _ = cuda_exe
    shipped_dir = os.path.join(os.path.dirname(exe), "blpa-cuda-libs")
    libs = ldd(exe)
    assert "libdnnl.so.2" not in libs and "libgomp.so.1" not in libs
    for name, path in libs.items():
        if name in SYSTEM_LIBS or name in CUDA_PACKAGE_LIBS:
            continue
        # Everything else resolves to a copy shipped beside the executable.
        assert path and os.path.dirname(os.path.realpath(path)) == \
            os.path.realpath(shipped_dir), (name, path)
    shipped = sorted(os.listdir(shipped_dir))
    assert shipped == ["libonnx_proto.so.1", "libprotobuf.so.32"]
    total = sum(os.path.getsize(os.path.join(shipped_dir, f))
                for f in shipped) + os.path.getsize(exe)
    assert total <= 64 << 20


@needs_cuda_build
def test_cuda_plan_is_aligned_for_cudnn_with_a_workspace(cuda_exe):
    exe, _, report = cuda_exe
    assert report["workspace_bytes"] == 64 << 20
    assert report["peak_bytes"] >= report["workspace_bytes"]
    manifest = subprocess.run(["strings", exe], capture_output=True,
                              text=True).stdout
    assert "target cuda" in manifest
    assert "workspace 0 %d" % (64 << 20) in manifest


@needs_cuda_build
def test_cuda_workspace_size_is_an_option(cuda_exe, tmp_path):
    _, onnx_path, _ = cuda_exe
    report = str(tmp_path / "r.json")
    tool.compile(onnx_path, str(tmp_path / "exe"), batch_size=4,
                 target="cuda", memory_report=report,
                 extra=["--cuda-workspace", "1000"])
    with open(report) as f:
        assert json.load(f)["workspace_bytes"] == 1024  # 256-byte aligned
    proc = tool.run([tool.blpa_opt_path(), onnx_path, "--train",
                     "--batch-size", "4", "--target", "cuda",
                     "--cuda-workspace", "lots", "-o",
                     str(tmp_path / "bad")], check=False)
    assert proc.returncode != 0
    assert "--cuda-workspace" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@needs_cuda_build
def test_cuda_executable_without_a_gpu_says_so(cuda_exe, tmp_path):
    exe, _, _ = cuda_exe
    help_text = subprocess.run([exe, "--help"], capture_output=True,
                               text=True, check=True).stdout
    assert "--no-cuda-graph" in help_text
    proc = subprocess.run([exe, "--synthetic", "--steps", "1", "--lr",
                           "0.1"], capture_output=True, text=True)
    if proc.returncode == 0:
        pytest.skip("this machine has a usable GPU")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CUDA GPU is usable here" in lines[0]


@pytest.mark.randomized
def test_embed_weights_false_takes_weights_at_run_time(residual_cnn_exe,
                                                       workdir, tmp_path):
    exe, _ = residual_cnn_exe
    onnx_path = str(workdir / "residual_cnn.onnx")
    light = tool.compile(onnx_path, str(tmp_path / "light"), batch_size=4,
                         extra=["--embed-weights=false"])
    assert os.path.getsize(light) < os.path.getsize(exe)
    rng = fresh_rng()
    x = rng.standard_normal((4, 3, 16, 16)).astype(np.float32)
    y = rng.integers(0, 10, size=4).astype(np.int64)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    args = ["--check-step", "--inputs", str(tmp_path / "x.npy"), "--labels",
            str(tmp_path / "y.npy")]
    proc = subprocess.run([light] + args + ["--dump", str(tmp_path / "no")],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "--embed-weights=false" in proc.stderr
    assert "--weights" in proc.stderr
    tool.run([light] + args + ["--weights", onnx_path, "--dump",
                               str(tmp_path / "light-dump")])
    tool.run([exe] + args + ["--dump", str(tmp_path / "full-dump")])
    light_grads = tool.load_grads(str(tmp_path / "light-dump"))
    full_grads = tool.load_grads(str(tmp_path / "full-dump"))
    assert light_grads.keys() == full_grads.keys()
    for name in full_grads:
        assert light_grads[name].tobytes() == full_grads[name].tobytes()
