"""The example GPT's training step against PyTorch on the CPU, side by side
in one run: memory and time (issue 18's bars), and where our time goes.

    PYTHONPATH=python /usr/bin/python3 bench/gpt.py [--batch 16] \\
        [--rounds 5] [--threads 2]

The GPT of python/blpa/models.py (bytes, context 128, 4 layers, width 128,
4 heads), SGD with momentum 0.9 on random token ids, same batch and thread
count on both sides. Each process is a fresh child of bench/memory_child.py
`maxrss`, so a figure is that process's own peak RSS; the rounds alternate
ours (exact, then 4-bit) and PyTorch's, and each step time quoted is the
median of a process's steps after the first two, the figure the median over
rounds. Which BLAS PyTorch's matmuls use decides its speed: the script says
which libblas.so.3 it loaded and its GEMM rate (Debian's default netlib
BLAS is some 20x slower than OpenBLAS; install libopenblas0-pthread for a
fair baseline). Prints markdown tables (paste them into docs/benchmarks.md
with the date and machine they print); writes nothing itself. About 3
minutes on 2 cores."""

import argparse
import collections
import datetime
import json
import os
import statistics
import sys
import tempfile

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
sys.path.insert(0, os.path.join(BENCH, "..", "python"))
from blpa import models, tool  # noqa: E402
from cpu_step import cpu_name, usable_cores  # noqa: E402
from memory import run_measured  # noqa: E402

CHILD = os.path.join(BENCH, "memory_child.py")
MIB = 2 ** 20


def torch_blas():
    """The libblas.so.3 PyTorch loads and its float32 GEMM rate (GFLOP/s)
    on [2048, 128] x [128, 512], the GPT's MLP shape."""
    import time
    import torch
    torch.set_num_threads(2)
    a, b = torch.randn(2048, 128), torch.randn(128, 512)
    for _ in range(5):
        a @ b
    start = time.perf_counter()
    for _ in range(50):
        a @ b
    rate = 50 * 2 * 2048 * 128 * 512 / (time.perf_counter() - start) / 1e9
    with open("/proc/self/maps") as f:
        libs = {line.split()[-1] for line in f if "libblas" in line}
    return ", ".join(sorted(libs)) or "none", rate


def ours(exe, args, workdir):
    """Peak RSS and median step (ms) of our executable on random tokens."""
    log = os.path.join(workdir, "log.jsonl")
    _, peak = run_measured([exe, "--synthetic", "--steps", args.steps,
                            "--lr", 0.01, "--threads", args.threads,
                            "--log", log], workdir)
    steps = [r["step_ms"] for r in tool.read_log(log) if "step_ms" in r]
    return peak, statistics.median(steps[2:])


def pytorch(args, workdir):
    """Peak RSS and median step (ms) of PyTorch training the same GPT."""
    out, peak = run_measured([sys.executable, CHILD, "torch", "gpt",
                              args.batch, 0, "--steps", args.steps,
                              "--threads", args.threads], workdir)
    times = json.loads(out.strip().splitlines()[-1])["step_seconds"]
    return peak, 1e3 * statistics.median(times[2:])


def profile_table(exe, args, workdir):
    """Our exact step's time per op kind, largest first."""
    path = os.path.join(workdir, "profile.json")
    tool.run([exe, "--synthetic", "--steps", args.steps, "--lr", 0.01,
              "--threads", args.threads, "--profile", path])
    with open(path) as f:
        profile = json.load(f)
    by_op = collections.Counter()
    for op in profile["ops"]:
        by_op[op["op"]] += op["mean_seconds"] * op["calls"]
    total = sum(by_op.values())
    rows = ["| op | ms per step | share |", "| --- | --- | --- |"]
    for op, seconds in by_op.most_common(12):
        rows.append("| %s | %.2f | %.1f%% |" % (op, 1e3 * seconds,
                                                100 * seconds / total))
    rows.append("| all ops | %.2f | step %.2f ms |" % (
        1e3 * total, 1e3 * profile["step_seconds"]["mean"]))
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=usable_cores())
    args = parser.parse_args()
    blas, rate = torch_blas()
    print("date: %s, machine: %s, %d threads; GPT (bytes, context 128, 4 "
          "layers, width 128, 4 heads), batch %d, %d steps per process, %d "
          "rounds; PyTorch's BLAS: %s (%.0f GFLOP/s on 2048x128x512)" % (
              datetime.date.today(), cpu_name(), args.threads, args.batch,
              args.steps, args.rounds, blas, rate))
    print()
    with tempfile.TemporaryDirectory() as workdir:
        onnx_path = models.export(models.gpt(),
                                  os.path.join(workdir, "gpt.onnx"), opset=17)
        exes, reports = {}, {}
        for bits in (0, 4):
            report = os.path.join(workdir, "memory%d.json" % bits)
            exes[bits] = tool.compile(
                onnx_path, os.path.join(workdir, "exe%d" % bits),
                batch_size=args.batch, act_bits=bits, memory_report=report)
            with open(report) as f:
                reports[bits] = json.load(f)
        figures = collections.defaultdict(list)
        for _ in range(args.rounds):
            for bits in (0, 4):
                figures[bits].append(ours(exes[bits], args, workdir))
            figures["torch"].append(pytorch(args, workdir))
        median = {key: (statistics.median(p for p, _ in runs),
                        statistics.median(t for _, t in runs))
                  for key, runs in figures.items()}
        torch_rss, torch_ms = median["torch"]
        print("| run | saved activations (MiB) | planned peak (MiB) | peak "
              "RSS (MiB) | vs PyTorch | median step (ms) | vs PyTorch |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for bits, name in ((0, "blpa exact"), (4, "blpa 4-bit")):
            rss, ms = median[bits]
            print("| %s | %.2f | %.2f | %.1f | %.2fx | %.1f | %.2fx |" % (
                name, reports[bits]["saved_activation_bytes"] / MIB,
                reports[bits]["peak_bytes"] / MIB, rss / MIB,
                rss / torch_rss, ms, ms / torch_ms))
        print("| PyTorch | | | %.1f | 1x | %.1f | 1x |" % (
            torch_rss / MIB, torch_ms))
        print()
        print("saved activations at 4 bits: %.3f of exact" % (
            reports[4]["saved_activation_bytes"] /
            reports[0]["saved_activation_bytes"]))
        print()
        print("\n".join(profile_table(exes[0], args, workdir)))


if __name__ == "__main__":
    main()
