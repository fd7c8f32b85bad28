"""Times blpa's CPU training step with compressed activations (--act-bits 8,
4, 2) against the exact step (--act-bits 0), side by side in one run: same
model, batch, thread count and synthetic data. The executables run in
alternation, twice each, so that drift on a shared machine hits all of them.

    PYTHONPATH=python /usr/bin/python3 bench/compression_step.py [--threads 2]

Prints a markdown table with the date and machine (paste it into
docs/benchmarks.md) and the memory report's saved-activation and peak
ratios; writes nothing itself."""

import argparse
import datetime
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
from blpa import models, tool  # noqa: E402
from cpu_step import cpu_name, usable_cores  # noqa: E402

BITS = (0, 8, 4, 2)


def ms_per_step(exe, batch, steps, warmup, threads, log):
    tool.run([exe, "--synthetic", "--steps", steps + warmup, "--lr", 0.01,
              "--momentum", 0.9, "--threads", threads, "--log", log])
    rates = [r["images_per_s"] for r in tool.read_log(log) if "step" in r]
    timed = rates[warmup:]
    return 1e3 * sum(batch / rate for rate in timed) / len(timed)


def bench_model(build, shape, args, workdir):
    path = models.export(build(), os.path.join(workdir, "model.onnx"), shape)
    exes, reports = {}, {}
    for bits in BITS:
        reports[bits] = os.path.join(workdir, "memory_%d.json" % bits)
        exes[bits] = tool.compile(path, os.path.join(workdir, "exe_%d" % bits),
                                  batch_size=shape[0], act_bits=bits,
                                  memory_report=reports[bits])
    times = {bits: [] for bits in BITS}
    for _ in range(args.rounds):
        for bits in BITS:
            times[bits].append(ms_per_step(
                exes[bits], shape[0], args.steps, args.warmup, args.threads,
                os.path.join(workdir, "log.jsonl")))
    memory = {}
    for bits in BITS:
        with open(reports[bits]) as f:
            memory[bits] = json.load(f)
    return {bits: sum(t) / len(t) for bits, t in times.items()}, memory


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=usable_cores())
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    cases = [
        ("example CNN (Fashion-MNIST)", models.example_cnn, (64, 1, 28, 28)),
        ("pre-act ResNet-20 (CIFAR)", lambda: models.preact_resnet(depth=20),
         (32, 3, 32, 32)),
        ("pre-act ResNet-56 (CIFAR)", lambda: models.preact_resnet(depth=56),
         (32, 3, 32, 32)),
    ]
    print("date: %s, machine: %s, %d cores, %d threads, %d rounds of %d "
          "timed steps after %d warm-up, synthetic data" % (
              datetime.date.today(), cpu_name(), usable_cores(),
              args.threads, args.rounds, args.steps, args.warmup))
    print()
    print("| model | batch | act-bits | ms/step | time vs exact "
          "| saved activations vs exact | peak vs exact |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, build, shape in cases:
        with tempfile.TemporaryDirectory() as workdir:
            times, memory = bench_model(build, shape, args, workdir)
        for bits in BITS:
            print("| %s | %d | %d | %.1f | %.3f | %.4f | %.4f |" % (
                name, shape[0], bits, times[bits], times[bits] / times[0],
                memory[bits]["saved_activation_bytes"] /
                memory[0]["saved_activation_bytes"],
                memory[bits]["peak_bytes"] / memory[0]["peak_bytes"]),
                flush=True)


if __name__ == "__main__":
    main()
