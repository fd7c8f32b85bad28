"""A thin wrapper around blpa-opt and the executables it produces.

Every call runs the real command line (the contract users see), so the tests
and scripts that use this module exercise exactly what a user would type.
Failures raise ToolError carrying the tool's stderr; a tool that hangs is
killed after TIMEOUT seconds instead of hanging the suite.
"""

import json
import os
import re
import subprocess

import numpy as np

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

# Seconds any one command may run (override with BLPA_TOOL_TIMEOUT).
TIMEOUT = float(os.environ.get("BLPA_TOOL_TIMEOUT", "900"))


class ToolError(RuntimeError):
    """A blpa tool exited non-zero (or timed out); `stderr` has its
    message."""

    def __init__(self, cmd, returncode, stderr):
        super().__init__("%s exited with %s: %s" % (cmd[0], returncode,
                                                   stderr.strip()))
        self.cmd = cmd
        self.returncode = returncode
        self.stderr = stderr


def blpa_opt_path():
    """The compiler under test: $BLPA_OPT, else the repository's build."""
    return os.environ.get("BLPA_OPT",
                          os.path.join(_REPO, "build", "bin", "blpa-opt"))


def dump_name(name):
    """The file stem the executables use for initializer `name` in --dump
    directories (characters outside [A-Za-z0-9._-] become '_')."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def run(cmd, check=True, timeout=None):
    """Runs `cmd` (items converted with str); returns the CompletedProcess,
    raising ToolError if it failed and `check` is set. A command past
    `timeout` (default TIMEOUT) is killed and reported as a ToolError."""
    cmd = [str(c) for c in cmd]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=timeout or TIMEOUT)
    except subprocess.TimeoutExpired as e:
        stderr = e.stderr or b""
        if isinstance(stderr, bytes):
            stderr = stderr.decode(errors="replace")
        raise ToolError(cmd, "timeout after %gs" % e.timeout, stderr) from None
    if check and proc.returncode != 0:
        raise ToolError(cmd, proc.returncode, proc.stderr)
    return proc


def compile(model, out, train=True, batch_size=None, act_bits=None,
            memory_report=None, target=None, emit=None, extra=()):
    """Compiles ONNX `model` into `out` with blpa-opt (training executable
    unless `train` is false); returns `out`. blpa-opt checks every memory
    plan it makes a second time (--blpa-verify-memory-plan)."""
    cmd = [blpa_opt_path(), model, "--train" if train else "--infer"]
    for flag, value in (("--batch-size", batch_size),
                        ("--act-bits", act_bits),
                        ("--memory-report", memory_report),
                        ("--target", target), ("--emit", emit)):
        if value is not None:
            cmd += [flag, value]
    run(cmd + list(extra) + ["-o", out])
    return out


def load_grads(dump_dir):
    """{file stem: gradient} from a --check-step dump directory."""
    grads_dir = os.path.join(dump_dir, "grads")
    return {f[:-4]: np.load(os.path.join(grads_dir, f))
            for f in sorted(os.listdir(grads_dir)) if f.endswith(".npy")}


def check_step(exe, x, y, dump_dir, threads=None):
    """One step from the executable's initial weights without an update
    (with `threads` kernel threads, else the executable's default);
    returns (loss array, {dump_name(initializer): grad})."""
    os.makedirs(dump_dir, exist_ok=True)
    xpath = os.path.join(dump_dir, "x.npy")
    ypath = os.path.join(dump_dir, "y.npy")
    np.save(xpath, x)
    np.save(ypath, y)
    cmd = [exe, "--check-step", "--inputs", xpath, "--labels", ypath,
           "--dump", dump_dir]
    run(cmd + ([] if threads is None else ["--threads", threads]))
    return np.load(os.path.join(dump_dir, "loss.npy")), load_grads(dump_dir)


def infer(exe, inputs, dump_dir):
    """Runs the forward pass on `inputs` (arrays, graph order); returns the
    outputs in graph order."""
    os.makedirs(dump_dir, exist_ok=True)
    paths = []
    for i, x in enumerate(inputs):
        paths.append(os.path.join(dump_dir, "input_%d.npy" % i))
        np.save(paths[-1], x)
    run([exe, "--inputs"] + paths + ["--dump", dump_dir])
    outputs, i = [], 0
    while os.path.exists(os.path.join(dump_dir, "output_%d.npy" % i)):
        outputs.append(np.load(os.path.join(dump_dir, "output_%d.npy" % i)))
        i += 1
    return outputs


def read_log(log):
    """The JSON records of a --log file, one per non-empty line."""
    with open(log) as f:
        return [json.loads(line) for line in f if line.strip()]


def train(exe, log, *args, timeout=None):
    """Trains with the executable's flags `args` (e.g. "--data", DIR,
    "--steps", 100, "--lr", 0.05), logging to `log`; returns (log records,
    stdout). `timeout` as for run."""
    proc = run([exe, "--log", log] + list(args), timeout=timeout)
    return read_log(log), proc.stdout


def losses(records):
    """The per-step losses of a training log, in step order."""
    return [r["loss"] for r in records if "loss" in r]


def onnxruntime_run(model, inputs, optimize=True):
    """Runs ONNX file `model` with onnxruntime (CPUExecutionProvider, default
    session options, as a user would; with `optimize` false, without graph
    optimizations: each node as written, no fused or re-laid-out kernels) on
    `inputs` (arrays, graph input order); returns its outputs in graph
    order. onnxruntime is not a Debian package: scripts/install-deps puts it
    in .venv/, whose python (Debian's, with Debian's packages) scripts/test
    runs pytest with."""
    try:
        import onnxruntime
    except ImportError as e:
        raise ImportError("onnxruntime is missing: run with .venv/bin/python "
                          "(scripts/install-deps makes it)") from e
    options = onnxruntime.SessionOptions()
    if not optimize:
        options.graph_optimization_level = (
            onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL)
    session = onnxruntime.InferenceSession(
        model, options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, dict(zip(names, inputs)))
