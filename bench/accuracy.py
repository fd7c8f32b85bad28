"""Accuracy of training with compressed activations: one model trained on
Fashion-MNIST exact, with 8-, 4- and 2-bit saved activations, and with the
naive 4-bit baseline (the forward pass itself quantized), for the same steps
from the same initial weights and data order; each evaluated on the test
split.

    PYTHONPATH=python /usr/bin/python3 bench/accuracy.py [--steps 1500]

Prints a markdown table with the date and machine (paste it into
docs/benchmarks.md); writes nothing itself. About 15-20 minutes on 2
cores with the defaults."""

import argparse
import datetime
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
from blpa import models, tool  # noqa: E402
from cpu_step import cpu_name, usable_cores  # noqa: E402

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
VARIANTS = [
    ("exact", ["--act-bits", 0]),
    ("8-bit", ["--act-bits", 8]),
    ("4-bit", ["--act-bits", 4]),
    ("2-bit", ["--act-bits", 2]),
    ("naive 4-bit", ["--act-bits", 4, "--act-quant-naive"]),
]


def train(onnx_path, flags, args, workdir):
    exe = os.path.join(workdir, "exe")
    tool.run([tool.blpa_opt_path(), onnx_path, "--train", "--batch-size",
              args.batch] + flags + ["-o", exe])
    log = os.path.join(workdir, "log.jsonl")
    records, _ = tool.train(exe, log, "--data", FASHION_MNIST, "--steps",
                            args.steps, "--lr", args.lr, "--momentum", 0.9,
                            "--weight-decay", args.weight_decay, "--seed",
                            args.seed, "--threads", args.threads,
                            timeout=4 * 3600)
    losses = tool.losses(records)
    tail = losses[-len(losses) // 10:]
    accuracy = [r["test_accuracy"] for r in records if "test_accuracy" in r]
    return sum(tail) / len(tail), accuracy[-1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--depth", type=int, default=11)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--weight-decay", type=float, default=2e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=usable_cores())
    parser.add_argument("--variants", default=",".join(n for n, _ in VARIANTS),
                        help="comma-separated subset of: %(default)s")
    args = parser.parse_args()
    chosen = args.variants.split(",")
    unknown = set(chosen) - {name for name, _ in VARIANTS}
    if unknown:
        parser.error("unknown variants: %s" % ", ".join(sorted(unknown)))
    print("date: %s, machine: %s, %d threads; pre-activation ResNet-%d "
          "(1x28x28 input), batch %d, %d steps, SGD lr %g momentum 0.9 "
          "weight decay %g, seed %d (weights and data order), Fashion-MNIST "
          "test split (10k)" % (
              datetime.date.today(), cpu_name(), args.threads, args.depth,
              args.batch, args.steps, args.lr, args.weight_decay, args.seed))
    print()
    print("| activations | test accuracy | mean loss, last 10% of steps |")
    print("| --- | --- | --- |")
    with tempfile.TemporaryDirectory() as workdir:
        model = models.preact_resnet(depth=args.depth, in_channels=1,
                                     image_size=28, seed=args.seed)
        onnx_path = models.export(model, os.path.join(workdir, "m.onnx"))
        for name, flags in VARIANTS:
            if name not in chosen:
                continue
            loss, accuracy = train(onnx_path, flags, args, workdir)
            print("| %s | %.4f | %.4f |" % (name, accuracy, loss), flush=True)


if __name__ == "__main__":
    main()
