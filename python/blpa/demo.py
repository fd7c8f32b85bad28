"""The figures scripts/demo prints: two training runs of one model (exact
and with K-bit saved activations), each read from its --memory-report JSON
and its --log JSONL, set side by side.

    PYTHONPATH=python /usr/bin/python3 -m blpa.demo \\
        --exact MEM.json LOG.jsonl --compressed 4 MEM4.json LOG4.jsonl

Prints each run's loss check and the table; exits 1 when either run's loss
did not fall (last fifth of the steps' mean loss not below LOSS_BAR times
the first fifth's) or a file lacks a figure, with one line saying which.
"""

import argparse
import json
import statistics
import sys
from collections import namedtuple

from blpa import tool

# The loss check: the mean loss of the last fifth of the steps must be below
# this fraction of the first fifth's (a run that learns nothing stays near 1).
LOSS_BAR = 0.6

# Steps left out of the median step time: the first ones fault in the arena's
# pages and JIT oneDNN's kernels, and take several times as long.
WARMUP_STEPS = 2

Run = namedtuple("Run", "saved_bytes peak_bytes accuracy step_ms loss_ratio")


class DemoError(RuntimeError):
    """A report or log lacks what the table needs."""


def loss_ratio(records):
    """Mean loss of the last fifth of the steps over that of the first
    fifth."""
    losses = tool.losses(records)
    fifth = len(losses) // 5
    if fifth == 0:
        raise DemoError("%d logged steps; the loss check needs at least 5"
                        % len(losses))
    first = sum(losses[:fifth]) / fifth
    last = sum(losses[-fifth:]) / fifth
    return last / first


def median_step_ms(records):
    """Median of the runtime's own step times, without the warm-up steps."""
    times = [r["step_ms"] for r in records if "step_ms" in r][WARMUP_STEPS:]
    if not times:
        raise DemoError("no step_ms after the first %d steps" % WARMUP_STEPS)
    return statistics.median(times)


def final_accuracy(records):
    """The last test accuracy the log has (the driver's final evaluation)."""
    accuracies = [r["test_accuracy"] for r in records if "test_accuracy" in r]
    if not accuracies:
        raise DemoError("no test_accuracy (was it trained with --data?)")
    return accuracies[-1]


def summarize(report, records):
    """A Run from a memory report (dict) and a training log (records)."""
    try:
        saved, peak = report["saved_activation_bytes"], report["peak_bytes"]
    except KeyError as e:
        raise DemoError("the memory report has no %s" % e) from None
    return Run(saved, peak, final_accuracy(records), median_step_ms(records),
               loss_ratio(records))


def load(report_path, log_path):
    """summarize() of the files; a missing or malformed file is a
    DemoError naming it."""
    try:
        with open(report_path) as f:
            report = json.load(f)
        records = tool.read_log(log_path)
    except (OSError, ValueError) as e:
        raise DemoError(str(e)) from None
    try:
        return summarize(report, records)
    except DemoError as e:
        raise DemoError("%s, %s: %s" % (report_path, log_path, e)) from None


def format_bytes(count):
    """`count` in the largest binary unit that keeps it at least 1."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return "%.2f %s" % (count / scale, unit)
    return "%d B" % count


def loss_line(name, run):
    """The loss check of one run, as scripts/demo prints it."""
    return "%s: mean loss last fifth / first fifth %.2f (%s)" % (
        name, run.loss_ratio,
        "below %g: ok" % LOSS_BAR if run.loss_ratio < LOSS_BAR
        else "NOT below %g" % LOSS_BAR)


def table(exact, compressed, bits):
    """The side-by-side table (exact | K-bit | K-bit / exact) as lines."""
    rows = [
        ("saved activations", format_bytes, "saved_bytes"),
        ("planned peak (arena)", format_bytes, "peak_bytes"),
        ("test accuracy", "{:.4f}".format, "accuracy"),
        ("median step time", "{:.2f} ms".format, "step_ms"),
    ]
    header = ("", "exact", "%d-bit" % bits, "ratio")
    cells = [header]
    for label, show, field in rows:
        a, b = getattr(exact, field), getattr(compressed, field)
        ratio = "%.3fx" % (b / a) if a else "-"
        cells.append((label, show(a), show(b), ratio))
    widths = [max(len(row[i]) for row in cells) for i in range(4)]
    return ["  ".join([row[0].ljust(widths[0])] +
                      [c.rjust(w) for c, w in zip(row[1:], widths[1:])])
            for row in cells]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exact", nargs=2, required=True,
                        metavar=("MEM_JSON", "LOG_JSONL"))
    parser.add_argument("--compressed", nargs=3, required=True,
                        metavar=("BITS", "MEM_JSON", "LOG_JSONL"))
    args = parser.parse_args(argv)
    try:
        bits = int(args.compressed[0])
        exact = load(*args.exact)
        compressed = load(*args.compressed[1:])
    except (ValueError, DemoError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    runs = (("exact", exact), ("%d-bit" % bits, compressed))
    for name, run in runs:
        print(loss_line(name, run))
    print()
    print("\n".join(table(exact, compressed, bits)))
    print("(step times: one process each, so a busy machine moves their "
          "ratio by 10-20%%; the median leaves out the first %d steps)"
          % WARMUP_STEPS)
    return 0 if all(run.loss_ratio < LOSS_BAR for _, run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
