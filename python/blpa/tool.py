"""A thin wrapper around blpa-opt and the executables it produces."""

import json
import os
import subprocess

import numpy as np

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


class ToolError(RuntimeError):
    """A blpa tool exited non-zero; `stderr` has its message."""

    def __init__(self, cmd, returncode, stderr):
        super().__init__("%s exited with %d: %s" % (cmd[0], returncode,
                                                   stderr.strip()))
        self.returncode = returncode
        self.stderr = stderr


def blpa_opt_path():
    return os.environ.get("BLPA_OPT",
                          os.path.join(_REPO, "build", "bin", "blpa-opt"))


def run(cmd, check=True):
    """Runs `cmd`; returns the CompletedProcess, raising ToolError if it
    failed and `check` is set."""
    proc = subprocess.run([str(c) for c in cmd], capture_output=True,
                          text=True)
    if check and proc.returncode != 0:
        raise ToolError(cmd, proc.returncode, proc.stderr)
    return proc


def compile(model, out, train=True, batch_size=None, act_bits=None,
            memory_report=None, extra=()):
    cmd = [blpa_opt_path(), model, "--train" if train else "--infer"]
    if batch_size is not None:
        cmd += ["--batch-size", batch_size]
    if act_bits is not None:
        cmd += ["--act-bits", act_bits]
    if memory_report is not None:
        cmd += ["--memory-report", memory_report]
    run(cmd + list(extra) + ["-o", out])
    return out


def check_step(exe, x, y, dump_dir):
    """One step from the initial weights; returns (loss, {name: grad})."""
    os.makedirs(dump_dir, exist_ok=True)
    xpath, ypath = os.path.join(dump_dir, "x.npy"), os.path.join(dump_dir,
                                                                "y.npy")
    np.save(xpath, x)
    np.save(ypath, y)
    run([exe, "--check-step", "--inputs", xpath, "--labels", ypath,
         "--dump", dump_dir])
    grads_dir = os.path.join(dump_dir, "grads")
    grads = {f[:-4]: np.load(os.path.join(grads_dir, f))
             for f in os.listdir(grads_dir) if f.endswith(".npy")}
    return np.load(os.path.join(dump_dir, "loss.npy")), grads


def infer(exe, inputs, dump_dir):
    """Runs the forward pass on `inputs` (arrays); returns the outputs."""
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


def train(exe, log, *args):
    """Trains with the executable's flags `args`; returns (log records,
    stdout)."""
    proc = run([exe, "--log", log] + [str(a) for a in args])
    with open(log) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return records, proc.stdout
