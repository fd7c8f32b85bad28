"""The accuracy experiment of the training recipe: one pre-activation ResNet
trained on Fashion-MNIST with augmentation (random crop, flip), a cosine
schedule with warm-up and weight decay, exact, with 8- and 4-bit saved
activations and with naive 4-bit quantization (the forward pass itself
quantized); the same steps, and per seed the same initial weights and data
order, for every mode; at least two seeds.

    PYTHONPATH=python /usr/bin/python3 bench/recipe.py --out DIR

Every executable is compiled before the first one trains, so the build tree
may change while the experiment runs. Writes DIR/table.md (test error per
mode: each seed, mean and spread), DIR/test-error.svg (test error over
training, mean over seeds, one line per mode) and every run's JSON log;
prints the table. About an hour on 2 cores with the defaults."""

import argparse
import concurrent.futures
import datetime
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
from blpa import models, tool  # noqa: E402
from cpu_step import cpu_name, usable_cores  # noqa: E402

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
TRAIN_IMAGES = 60000
MODES = [
    ("exact", ["--act-bits", 0]),
    ("8-bit", ["--act-bits", 8]),
    ("4-bit", ["--act-bits", 4]),
    ("naive 4-bit", ["--act-bits", 4, "--act-quant-naive"]),
]
COLOURS = {"exact": "#222222", "8-bit": "#1f77b4", "4-bit": "#2ca02c",
           "naive 4-bit": "#d62728"}


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True,
                        help="directory for the table, plot and logs")
    parser.add_argument("--depth", type=int, default=11)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int,
                        help="train this many steps instead (a quick try)")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--warmup", type=int, default=200,
                        help="warm-up steps")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--augment", default="crop2,flip")
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--threads", type=int, default=usable_cores())
    parser.add_argument("--modes", default=",".join(n for n, _ in MODES),
                        help="comma-separated subset of: %(default)s")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs at a time (each with --threads)")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the executables in --out and the runs "
                        "whose logs there are complete; train the rest")
    parser.add_argument("--replot", action="store_true",
                        help="only redraw DIR/test-error.svg from "
                        "DIR/curves.json")
    args = parser.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.modes = args.modes.split(",")
    unknown = set(args.modes) - {name for name, _ in MODES}
    if unknown:
        parser.error("unknown modes: %s" % ", ".join(sorted(unknown)))
    if len(args.seeds) < 2:
        parser.error("the spread needs at least two seeds")
    return args


def runs(args):
    return [(name, seed) for seed in args.seeds for name in args.modes]


def total_steps(args):
    return args.steps or args.epochs * (TRAIN_IMAGES // args.batch)


def compile_all(args):
    """{(mode, seed): executable}, all compiled up front."""
    executables = {}
    for seed in args.seeds:
        model = models.preact_resnet(depth=args.depth, in_channels=1,
                                     image_size=28, seed=seed)
        onnx_path = models.export(
            model, os.path.join(args.out, "seed%d.onnx" % seed))
        for name, flags in MODES:
            if name not in args.modes:
                continue
            exe = os.path.join(args.out, "%s-seed%d" % (slug(name), seed))
            tool.run([tool.blpa_opt_path(), onnx_path, "--train",
                      "--batch-size", args.batch] + flags + ["-o", exe])
            executables[(name, seed)] = exe
    return executables


def slug(name):
    return name.replace(" ", "-")


def length(args):
    if args.steps:
        return ["--steps", args.steps]
    return ["--epochs", args.epochs]


def finished_curve(log, steps):
    """The curve in `log` when that run evaluated after its last step."""
    if not os.path.exists(log):
        return None
    records = tool.read_log(log)
    curve = [(r["after_step"], 1 - r["test_accuracy"]) for r in records
             if "test_accuracy" in r]
    return curve if curve and curve[-1][0] == steps else None


def train(exe, seed, args):
    """[(step, test error)] of one run, the last after the final step."""
    log = exe + ".jsonl"
    if args.reuse:
        curve = finished_curve(log, total_steps(args))
        if curve:
            return curve
    records, _ = tool.train(
        exe, log, "--data", FASHION_MNIST, *length(args), "--lr",
        args.lr, "--lr-schedule", "cosine", "--warmup", args.warmup,
        "--momentum", 0.9, "--weight-decay", args.weight_decay, "--augment",
        args.augment, "--eval-every", args.eval_every, "--seed", seed,
        "--threads", args.threads, timeout=4 * 3600)
    return [(r["after_step"], 1 - r["test_accuracy"]) for r in records
            if "test_accuracy" in r]


def table(curves, args):
    lines = ["| activations | %s | mean | spread (max - min) |" %
             " | ".join("seed %d" % s for s in args.seeds),
             "| --- |" + " --- |" * (len(args.seeds) + 2)]
    for name in args.modes:
        finals = [curves[(name, s)][-1][1] * 100 for s in args.seeds]
        lines.append("| %s | %s | %.2f%% | %.2f |" % (
            name, " | ".join("%.2f%%" % e for e in finals),
            statistics.mean(finals), max(finals) - min(finals)))
    return "\n".join(lines) + "\n"


def mean_curve(curves, name, seeds):
    steps = [step for step, _ in curves[(name, seeds[0])]]
    return [(step, statistics.mean(dict(curves[(name, s)])[step]
                                   for s in seeds)) for step in steps]


def svg_plot(curves, args):
    """Test error (%) over training steps, mean over seeds, one polyline per
    mode: a self-contained SVG."""
    width, height, left, right, top, bottom = 640, 400, 60, 130, 20, 45
    series = {name: mean_curve(curves, name, args.seeds)
              for name in args.modes}
    points = [p for curve in series.values() for p in curve]
    max_step = max(step for step, _ in points)
    low = min(error for _, error in points) * 100
    high = max(error for _, error in points) * 100
    # The first evaluations' errors would squash the end, where the modes
    # differ: the axis stops at 2.5x the worst final error (lines clipped).
    final = max(curve[-1][1] for curve in series.values()) * 100
    low, high = max(0.0, low - 1), min(high, 2.5 * final) + 1

    def x(step):
        return left + (width - left - right) * step / max_step

    def y(error):
        return top + (height - top - bottom) * (high - error * 100) / (
            high - low)

    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'font-family="sans-serif" font-size="12">' % (width, height),
           '<rect width="100%" height="100%" fill="white"/>',
           '<clipPath id="plot"><rect x="%d" y="%d" width="%d" height="%d"/>'
           '</clipPath>' % (left, top, width - left - right,
                            height - top - bottom)]
    for i in range(6):
        value = low + (high - low) * i / 5
        ypos = top + (height - top - bottom) * (1 - i / 5)
        out.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>'
                   % (left, ypos, width - right, ypos))
        out.append('<text x="%d" y="%.1f" text-anchor="end">%.1f</text>'
                   % (left - 5, ypos + 4, value))
    for i in range(5):
        step = max_step * i / 4
        out.append('<text x="%.1f" y="%d" text-anchor="middle">%d</text>'
                   % (x(step), height - bottom + 16, step))
    out.append('<text x="%d" y="%d" text-anchor="middle">training step'
               '</text>' % ((left + width - right) // 2, height - 8))
    out.append('<text x="14" y="%d" text-anchor="middle" transform="rotate('
               '-90 14 %d)">test error (%%), mean of %d seeds</text>'
               % ((top + height - bottom) // 2, (top + height - bottom) // 2,
                  len(args.seeds)))
    for i, (name, curve) in enumerate(series.items()):
        colour = COLOURS[name]
        path = " ".join("%.1f,%.1f" % (x(s), y(e)) for s, e in curve)
        out.append('<polyline fill="none" stroke="%s" stroke-width="2" '
                   'clip-path="url(#plot)" points="%s"/>' % (colour, path))
        ylegend = top + 10 + 18 * i
        out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" '
                   'stroke-width="2"/>' % (width - right + 10, ylegend,
                                           width - right + 30, ylegend,
                                           colour))
        out.append('<text x="%d" y="%d">%s</text>'
                   % (width - right + 35, ylegend + 4, name))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    args = parse_args()
    if args.replot:
        with open(os.path.join(args.out, "curves.json")) as f:
            saved = json.load(f)
        curves = {(key.rsplit("/seed", 1)[0], int(key.rsplit("/seed", 1)[1])):
                  value for key, value in saved.items()}
        with open(os.path.join(args.out, "test-error.svg"), "w") as f:
            f.write(svg_plot(curves, args))
        return
    os.makedirs(args.out, exist_ok=True)
    steps = total_steps(args)
    header = (
        "%s, %s, %d thread(s) per run. Pre-activation ResNet-%d (1x28x28 input), "
        "batch %d, %.2f epochs (%d steps), SGD momentum 0.9, lr %g with a "
        "%d-step linear warm-up and cosine decay, weight decay %g, "
        "augmentation %s; per seed the same initial weights and data order "
        "in every mode. Test error on the Fashion-MNIST test split (9984 "
        "images) in evaluation mode after the last step.\n" % (
            datetime.date.today(), cpu_name(), args.threads, args.depth,
            args.batch, steps * args.batch / TRAIN_IMAGES, steps, args.lr, args.warmup,
            args.weight_decay, args.augment))
    executables = ({key: os.path.join(args.out, "%s-seed%d" % (
        slug(key[0]), key[1])) for key in runs(args)} if args.reuse
        else compile_all(args))
    curves = {}
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = {key: pool.submit(train, executables[key], key[1], args)
                   for key in runs(args)}
        for (name, seed), future in futures.items():
            curves[(name, seed)] = future.result()
            print("%s seed %d: test error %.2f%%" % (
                name, seed, curves[(name, seed)][-1][1] * 100), flush=True)
    with open(os.path.join(args.out, "curves.json"), "w") as f:
        json.dump({"%s/seed%d" % key: value for key, value in curves.items()},
                  f)
    text = header + "\n" + table(curves, args)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "test-error.svg"), "w") as f:
        f.write(svg_plot(curves, args))
    print(text)


if __name__ == "__main__":
    main()
