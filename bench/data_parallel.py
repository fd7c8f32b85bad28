"""Data-parallel step time on the CPU: one process with T threads against
T ranks of one thread each (mpirun), at the same batch per step, side by
side in interleaved rounds of fresh processes.

For each configuration it reports the median over rounds of the mean step
time (the --profile of rank 0, warm-up step excluded) and, for the ranks,
where the communication went: the all-reduces' time per step, the part of
it during which the step's other ops ran (overlap), and the time the step
stood in blpa.allreduce_wait (the communication share of the step).

    /usr/bin/python3 bench/data_parallel.py [--model resnet20] [--batch 64]
        [--threads 2] [--steps 30] [--rounds 5] [--bucket-size 1MiB]
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "python"))

from blpa import models, tool  # noqa: E402

MODELS = {
    "resnet20": ("pre-activation ResNet-20, 3x32x32",
                 lambda: models.preact_resnet(depth=20)),
    "resnet164": ("pre-activation ResNet-164, 3x32x32",
                  lambda: models.preact_resnet(depth=164)),
}
MPI_ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def cpu_name():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def profiled_run(command, profile, env=None):
    subprocess.run(command + ["--profile", profile], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    with open(profile) as f:
        return json.load(f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="resnet20")
    parser.add_argument("--batch", type=int, default=64,
                        help="samples per step, over all ranks (default 64)")
    parser.add_argument("--threads", type=int, default=2,
                        help="threads of the single process = ranks")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bucket-size", default="1MiB",
                        help="the ranks' --bucket-size (default blpa-opt's, "
                        "1MiB: ResNet-20's gradients make one bucket; "
                        "256KiB makes five)")
    args = parser.parse_args()
    ranks = args.threads
    if args.batch % ranks:
        parser.error("--batch must divide into --threads ranks")
    about, build = MODELS[args.model]
    work = tempfile.mkdtemp(prefix="blpa-dp-bench-")
    onnx_path = os.path.join(work, "model.onnx")
    models.export(build(), onnx_path)
    one = tool.compile(onnx_path, os.path.join(work, "one"),
                       batch_size=args.batch)
    dp = tool.compile(onnx_path, os.path.join(work, "dp"),
                      batch_size=args.batch // ranks,
                      extra=["--data-parallel", "--bucket-size",
                             args.bucket_size])
    common = ["--synthetic", "--synthetic-batches", "4", "--steps",
              str(args.steps), "--lr", "0.01"]
    single, replicated, comm = [], [], []
    for _ in range(args.rounds):
        p = profiled_run([one] + common + ["--threads", str(ranks)],
                         os.path.join(work, "one.json"))
        single.append(p["step_seconds"]["mean"])
        p = profiled_run(["mpirun", "--oversubscribe", "-np", str(ranks), dp]
                         + common + ["--threads", "1"],
                         os.path.join(work, "dp.json"), env=MPI_ENV)
        replicated.append(p["step_seconds"]["mean"])
        comm.append(p["data_parallel"])
    median = statistics.median
    t1, t2 = median(single), median(replicated)
    allreduce = median(c["allreduce_seconds"] for c in comm)
    overlapped = median(c["overlapped_seconds"] for c in comm)
    waiting = median(c["wait_seconds"] for c in comm)
    print("%s, %d samples per step, %s, %d rounds of %d steps (%s)" % (
        about, args.batch, cpu_name(), args.rounds, args.steps,
        "buckets of %s: %d" % (args.bucket_size, comm[0]["buckets"])))
    print()
    print("| run | mean step (ms) | vs 1 process |")
    print("| --- | --- | --- |")
    print("| 1 process x %d threads, batch %d | %.1f | 1.00x |" % (
        ranks, args.batch, t1 * 1e3))
    print("| %d ranks x 1 thread, batch %d each | %.1f | %.2fx |" % (
        ranks, args.batch // ranks, t2 * 1e3, t2 / t1))
    print()
    print("Ranks, per step: all-reduces %.2f ms, of which %.2f ms (%.0f%%) "
          "while other ops of the step ran; waiting in blpa.allreduce_wait "
          "%.2f ms = %.1f%% of the step (the communication share)." % (
              allreduce * 1e3, overlapped * 1e3,
              100 * overlapped / allreduce if allreduce else 0,
              waiting * 1e3, 100 * waiting / t2))


if __name__ == "__main__":
    main()
