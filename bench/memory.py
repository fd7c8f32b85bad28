"""Memory of a training step: blpa's plan, blpa's executable and PyTorch,
side by side in one run, exact (--act-bits 0) and with 4-bit saved
activations (--act-bits 4), on pre-activation ResNet-164 (32x32 input) and
torchvision's resnet18 and resnet50 (64x64 input).

    PYTHONPATH=python /usr/bin/python3 bench/memory.py [--threads 2]

For each model and mode it prints the memory report's planned peak, its
live-bytes lower bound and their ratio, the saved activations, and the peak
RSS of the executable training a few steps against PyTorch's (CPU, float32,
SGD with momentum 0.9, same model, batch and input). Every process whose
memory is measured is a fresh child of a small process
(bench/memory_child.py maxrss) that reads its peak from
getrusage(RUSAGE_CHILDREN), so the benchmark's own memory never
enters a figure. A second table gives each process's RSS before its first
step (libraries, weights, state: the fixed overhead); blpa's comes from
gdb stopping the executable (n/a without gdb).

Prints markdown tables with the date, machine and command line (paste them
into docs/benchmarks.md); writes nothing itself. A model that fails to
export, compile or run gets its one-line error in its row and the run goes
on. About 4 minutes on 2 cores."""

import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import sys
import tempfile

import torch

BENCH = os.path.dirname(os.path.abspath(__file__))
CHILD = os.path.join(BENCH, "memory_child.py")
sys.path.insert(0, BENCH)
sys.path.insert(0, os.path.join(BENCH, "..", "python"))
from blpa import models, tool  # noqa: E402
from cpu_step import cpu_name, usable_cores  # noqa: E402
import memory_child  # noqa: E402

BITS = (0, 4)
# (name, memory_child model key, batch, image size)
CASES = [
    ("pre-act ResNet-164", "preact-resnet-164", 32, 32),
    ("torchvision resnet18", "resnet18", 32, 64),
    ("torchvision resnet50", "resnet50", 32, 64),
]
MB = 1e6


class Failed(Exception):
    """A stage failed; the message is the one line that goes in the row."""


def error_line(text):
    """The line of a message worth a table cell, with '|' escaped for
    markdown: a Python traceback's last line, else the first line that
    says 'error', else the first line."""
    lines = [l.strip() for l in str(text).splitlines() if l.strip()]
    if not lines:
        return "failed without a message"
    if lines[0].startswith("Traceback"):
        line = lines[-1]
    else:
        line = next((l for l in lines if "error" in l.lower()), lines[0])
    return line.replace("|", "\\|")


def run_measured(cmd, workdir):
    """Runs `cmd` under `memory_child.py maxrss`; returns (stdout, peak RSS
    in bytes). A failure raises Failed."""
    record = os.path.join(workdir, "maxrss.json")
    proc = tool.run([sys.executable, "-S", CHILD, "maxrss", record]
                    + list(cmd), check=False)
    if proc.returncode != 0:
        raise Failed("%s exited with %d: %s" % (
            os.path.basename(str(cmd[0])), proc.returncode,
            error_line(proc.stderr or proc.stdout)))
    with open(record) as f:
        return proc.stdout, json.load(f)["max_rss_bytes"]


GDB_COMMANDS = ("set pagination off", "set confirm off", "break main",
                "break blpa_train_step", "run", "info proc status",
                "continue", "info proc status", "kill")


def rss_at_start_and_first_step(cmd):
    """The executable's resident memory on entry to main (process and
    libraries loaded) and when its first training step begins (plus the
    parsed model, weights, momenta, gradients and the zeroed arena, before
    any kernel runs), from gdb stopping it there: a peak measured from
    outside cannot see these. Returns (VmRSS at main, VmRSS and RssFile at
    the first step), in bytes; Nones without gdb, which the rest of the
    benchmark does not need."""
    gdb = shutil.which("gdb")
    if gdb is None:
        return None, None, None
    args = [gdb, "-q", "-batch", "-nx"]
    for command in GDB_COMMANDS:
        args += ["-ex", command]
    out = tool.run(args + ["--args"] + [str(c) for c in cmd],
                   check=False).stdout
    rss = re.findall(r"^VmRSS:\s+(\d+) kB", out, re.M)
    files = re.findall(r"^RssFile:\s+(\d+) kB", out, re.M)
    if len(rss) != 2 or len(files) != 2:
        return None, None, None
    return int(rss[0]) * 1024, int(rss[1]) * 1024, int(files[1]) * 1024


def measure_ours(onnx_path, bits, batch, args, workdir):
    """Compiles the model at `bits` and measures its executable; returns the
    memory report and the RSS figures (bytes)."""
    report_path = os.path.join(workdir, "memory_%d.json" % bits)
    try:
        exe = tool.compile(onnx_path, os.path.join(workdir, "exe_%d" % bits),
                           batch_size=batch, act_bits=bits,
                           memory_report=report_path)
    except tool.ToolError as e:
        raise Failed("blpa-opt: " + error_line(e.stderr)) from None
    with open(report_path) as f:
        report = json.load(f)
    train = [exe, "--synthetic", "--steps", args.steps, "--lr", 0.01,
             "--threads", args.threads]
    _, peak = run_measured(train, workdir)
    startup, before_step, file_backed = rss_at_start_and_first_step(train)
    return {"report": report, "peak_rss": peak, "startup_rss": startup,
            "before_step_rss": before_step, "before_step_file": file_backed}


def measure_torch(key, batch, size, args):
    """PyTorch training the same model in a fresh process
    (`memory_child.py torch`); returns its RSS figures (bytes)."""
    with tempfile.TemporaryDirectory() as workdir:
        out, peak = run_measured([
            sys.executable, CHILD, "torch", key, batch, size, "--steps",
            args.steps, "--threads", args.threads], workdir)
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss"] = peak
    return result


def attempt(function, *args):
    """function(*args), or the one-line error of a stage that failed (the
    benchmark goes on with the next row)."""
    try:
        return function(*args)
    except Failed as e:
        return str(e)
    except Exception as e:  # export errors come from deep inside torch.onnx
        return "%s: %s" % (type(e).__name__, error_line(e))


def export(key, size, path):
    """Writes model `key` as ONNX (training mode, symbolic batch)."""
    models.export(memory_child.model_builder(key)(), path,
                  (1, 3, size, size))


def bench_model(key, batch, size, args):
    """({bits: our figures or error}, PyTorch's figures or error) for one
    model; the ONNX export is shared by both modes."""
    print("measuring %s ..." % key, file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as workdir:
        onnx_path = os.path.join(workdir, "model.onnx")
        exported = attempt(export, key, size, onnx_path)
        ours = {}
        for bits in BITS:
            ours[bits] = (("export: " + exported)
                          if isinstance(exported, str) else
                          attempt(measure_ours, onnx_path, bits, batch, args,
                                  workdir))
    return ours, attempt(measure_torch, key, batch, size, args)


def mb(value):
    """Bytes as a table cell in MB (10^6 bytes); n/a when not measured."""
    return "n/a" if value is None else "%.1f" % (value / MB)


def peak_row(name, batch, size, bits, ours, theirs):
    """One row of the peak table (an error fills the first figure cell)."""
    head = "| %s | %dx%d | %d | %d | " % (name, size, size, batch, bits)
    if isinstance(ours, str):
        return head + "%s | | | | | %s | |" % (
            ours, theirs if isinstance(theirs, str) else mb(
                theirs["peak_rss"]))
    r = ours["report"]
    cells = [mb(r["peak_bytes"]), mb(r["lower_bound_bytes"]),
             "%.3f" % (r["peak_bytes"] / r["lower_bound_bytes"]),
             mb(r["saved_activation_bytes"]), mb(ours["peak_rss"])]
    if isinstance(theirs, str):
        cells += [theirs, ""]
    else:
        cells += [mb(theirs["peak_rss"]),
                  "%.3f" % (ours["peak_rss"] / theirs["peak_rss"])]
    return head + " | ".join(cells) + " |"


def baseline_row(name, bits, ours, theirs):
    """One row of the before-training table."""
    cells = ["", "", "", ""]
    if not isinstance(ours, str):
        r = ours["report"]
        cells = [mb(ours["startup_rss"]), mb(ours["before_step_rss"]),
                 mb(ours["before_step_file"]),
                 mb(r["persistent_bytes"] + r["peak_bytes"])]
    cells += (["", ""] if isinstance(theirs, str) else
              [mb(theirs["after_imports"]), mb(theirs["before_step"])])
    return "| %s | %d | %s |" % (name, bits, " | ".join(cells))


def command_line():
    """This run's command line, with PYTHONPATH when set, for a header."""
    command = shlex.join([sys.executable] + sys.argv)
    if os.environ.get("PYTHONPATH"):
        command = "PYTHONPATH=%s %s" % (os.environ["PYTHONPATH"], command)
    return command


def print_header(args):
    print("date: %s, machine: %s, %d cores, %d threads, %d training steps "
          "per measurement, synthetic data, PyTorch %s; MB = 10^6 bytes"
          % (datetime.date.today(), cpu_name(), usable_cores(), args.threads,
             args.steps, torch.__version__))
    print("command: %s" % command_line())
    print()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=[c[1] for c in CASES],
                        choices=[c[1] for c in CASES])
    args = parser.parse_args()
    print_header(args)
    cases = [c for c in CASES if c[1] in args.models]
    results = [(case, bench_model(*case[1:], args)) for case in cases]
    print("| model | input | batch | act-bits | planned peak MB "
          "| lower bound MB | peak / bound | saved activations MB "
          "| blpa peak RSS MB | PyTorch peak RSS MB | blpa / PyTorch |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- "
          "| --- |")
    for (name, _, batch, size), (ours, theirs) in results:
        for bits in BITS:
            print(peak_row(name, batch, size, bits, ours[bits], theirs))
    print()
    print("| model | act-bits | blpa RSS at main() MB "
          "| blpa RSS before step 1 MB | of which file-backed MB "
          "| planned persistent + arena MB "
          "| PyTorch RSS after imports MB | PyTorch RSS before step 1 MB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for (name, _, _, _), (ours, theirs) in results:
        for bits in BITS:
            print(baseline_row(name, bits, ours[bits], theirs))


if __name__ == "__main__":
    main()
