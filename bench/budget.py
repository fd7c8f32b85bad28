"""Planning to a byte budget (issue 17): the budget solver (`--memory-limit
B`, `--act-bits auto`, `--min-act-bits 2`) against the uniform frontier,
side by side in one run.

    PYTHONPATH=python /usr/bin/python3 bench/budget.py \\
        [--models resnet164,resnet50] [--budgets 8] [--steps 6] [--quick]

Per model (pre-activation ResNet-164 at 32x32 and torchvision resnet50 at
64x64, batch 32; `--quick`: pre-activation ResNet-20, batch 8, 3 budgets,
few steps, a smoke run of a few minutes):

- **The uniform frontier**: `--act-bits` 0, 8, 4 and 2, each alone and
  with the inner nodes of every k-th residual block recomputed (k = 1, 2,
  4, ... below the number of blocks; `--act-policy NODE=recompute` on each
  node of the block before its residual Add; the Add and what follows it in
  the block keep the uniform width: the block's output is the checkpoint
  the next recomputed block starts from). For each: the planned total (the
  memory report's `total_bytes`), the peak RSS and step time of one
  training process, and the whole-gradient cosine of `--check-step`
  against the exact plan's on one fixed batch (`--seed`).
- **Budgets**: `--budgets` limits evenly spaced from the smallest feasible
  plan to the exact plan's total. The smallest is what `blpa-opt --act-bits
  auto --min-act-bits 2 --memory-limit 1` names when it refuses (rounded up
  to its printed precision, 0.01 of the unit). Per budget, our executable
  (`--memory-limit B --min-act-bits 2`, with a `--profile` of a training
  run of each uniform plan, exact, 8, 4 and 2 bits, unless
  `--no-calibrate`) and the frontier configurations that fit B and whose
  step (one process each) is within `--contend` (5%) of the fastest
  one's, at most `--contenders` (4) of them, train alternately,
  `--rounds` processes each: uniform configurations of one speed within
  noise are ranked by noise, so which is the fastest that fits is
  measured side by side, and the fastest of them by that measurement is
  the reference of the time and cosine checks.
- **Step time**: every run uses `--threads` kernel threads (1 by
  default). A process's figure is its fastest step after `--warmup`
  dropped steps (`--step-statistic median`: its median; on a shared
  machine other load stretches some steps many times over, never shortens
  one), a side's the median of its processes', its spread (max - min) /
  median of them.
- **Checks**, printed per budget, never asserted: the planned total is at
  most B; our runs' median RSS less our planned total is at most the
  executable's fixed overhead, measured once per model as the largest RSS
  less planned total over the frontier's runs and `--rounds` more runs of
  the exact plan (the plans differ only in their arena; the smallest and
  largest are printed: a few hundred KiB apart, as page-level noise moves
  any one run, so one run of ours is not held to the largest);
  our step time is at most the reference's times (1 + the larger of the
  two spreads); our cosine is at least the reference's.

Prints markdown tables (the frontier, then the budgets, per model) with the
date, machine and command line for docs/benchmarks.md, and writes the plot
(step time and 1 - cosine against budget: ours a line, the frontier points)
to SVG-DIR/budget-MODEL.svg. Peak RSS is measured as in bench/memory.py
(a fresh child of bench/memory_child.py). A stage that fails puts its one
error line in the table and the run goes on."""

import argparse
import datetime
import json
import math
import os
import re
import statistics
import sys
import tempfile
from collections import namedtuple

import numpy as np
import onnx

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
sys.path.insert(0, os.path.join(BENCH, "..", "python"))
from blpa import models, tool  # noqa: E402
from cpu_step import cpu_name, usable_cores  # noqa: E402
from memory import (Failed, attempt, command_line, error_line,  # noqa: E402
                    run_measured)
import memory_child  # noqa: E402

MiB = float(1 << 20)
BITS = (0, 8, 4, 2)

Case = namedtuple("Case", "name build batch size")
CASES = {
    "resnet164": Case("pre-act ResNet-164",
                      memory_child.model_builder("preact-resnet-164"), 32, 32),
    "resnet50": Case("torchvision resnet50",
                     memory_child.model_builder("resnet50"), 32, 64),
    "resnet20": Case("pre-act ResNet-20",
                     lambda: models.preact_resnet(depth=20), 8, 32),
}

# A residual block's nodes: '/blocks/blocks.N/...' (pre-activation ResNet),
# '/layerX/layerX.Y/...' (torchvision ResNets).
BLOCK_SCOPE = re.compile(r"(blocks|layer\d+)\.\d+$")
SMALLEST = re.compile(r"smallest of \d+ plans found needs ([0-9.]+) "
                      r"(bytes|KiB|MiB|GiB)")
UNITS = {"bytes": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
SOLVER_NOTE = re.compile(r"; ([^;]*); (\d+) plans in ([0-9.]+) s$", re.M)


def residual_blocks(onnx_path):
    """The nodes of each residual block, blocks and nodes in graph order."""
    blocks = {}
    for node in onnx.load(onnx_path).graph.node:
        parts = node.name.split("/")
        if len(parts) > 3 and BLOCK_SCOPE.match(parts[2]):
            blocks.setdefault(parts[2], []).append(node)
    return list(blocks.values())


def recompute_pins(blocks, k):
    """--act-policy pins recomputing every k-th block's nodes before its
    residual Add (all of them, for a block without one)."""
    pins = []
    for nodes in blocks[::k]:
        for node in nodes:
            if node.op_type == "Add":
                break
            pins.append(node.name + "=recompute")
    return pins


def ordinal(k):
    """'' for 1, else '2nd ', '4th ', '32nd ' ..."""
    if k == 1:
        return ""
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return "%d%s " % (k, "th" if k % 100 in (11, 12, 13) else suffix)


def frontier_configs(blocks):
    """(label, bits, blpa-opt flags) of every uniform configuration."""
    ks = [None] + [1 << i for i in range(len(blocks).bit_length())
                   if (1 << i) < len(blocks)]
    configs = []
    for bits in BITS:
        for k in ks:
            label = "exact" if bits == 0 else "%d-bit" % bits
            flags = ["--act-bits", bits]
            if k is not None:
                label += ", every %sblock" % ordinal(k)
                flags += [a for pin in recompute_pins(blocks, k)
                          for a in ("--act-policy", pin)]
            configs.append((label, bits, flags))
    return configs


def compile_plan(onnx_path, exe, batch, flags):
    """Compiles a training executable; returns (memory report, blpa-opt's
    stderr). A refusal raises Failed with its line."""
    report = exe + ".json"
    proc = tool.run([tool.blpa_opt_path(), onnx_path, "--train",
                     "--batch-size", batch, "--memory-report", report]
                    + list(flags) + ["-o", exe], check=False)
    if proc.returncode != 0:
        raise Failed("blpa-opt: " + error_line(proc.stderr))
    with open(report) as f:
        return json.load(f), proc.stderr


def train_once(exe, args, workdir):
    """One training process (synthetic data) under memory_child.py maxrss:
    (peak RSS in bytes, the --step-statistic of its step times in ms after
    the warm-up steps)."""
    log = os.path.join(workdir, "log.jsonl")
    if os.path.exists(log):
        os.remove(log)
    _, peak = run_measured(
        [exe, "--synthetic", "--steps", args.warmup + args.steps, "--lr",
         0.01, "--momentum", 0.9, "--threads", args.threads, "--log", log],
        workdir)
    ms = [r["step_ms"] for r in tool.read_log(log) if "step" in r]
    timed = ms[args.warmup:]
    return peak, (min(timed) if args.step_statistic == "fastest" else
                  statistics.median(timed))


def whole_cosine(grads, reference):
    """Cosine between all gradients of a --check-step dump, concatenated,
    and the reference dump's (float64; at most 1, which rounding of equal
    vectors' norms can pass by 2e-16)."""
    if grads.keys() != reference.keys():
        raise Failed("the gradient dump names other parameters")
    a = np.concatenate([grads[k].ravel() for k in sorted(reference)])
    b = np.concatenate([reference[k].ravel() for k in sorted(reference)])
    a, b = a.astype(np.float64), b.astype(np.float64)
    return min(1.0, float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))


# The uniform plans whose profiles calibrate the solver's cost model: each
# op of each width measured, so that it can tell where codes run faster
# than float32 (the method's batch-norm kernels on an Intel Xeon) and where
# slower (an AMD EPYC).
PROFILED_WIDTHS = (0, 8, 4, 2)


def solver_flags(args, profiles):
    """blpa-opt's flags for the solver besides --memory-limit."""
    flags = ["--min-act-bits", 2]
    if args.prefer:
        flags += ["--prefer", args.prefer]
    for profile in profiles:
        flags += ["--profile", profile]
    return flags


class Model:
    """One model's exported graph, its fixed batch and the exact plan's
    gradients on it; compiles and measures plans in `workdir`."""

    def __init__(self, case, args, workdir):
        self.case, self.args, self.workdir = case, args, workdir
        self.onnx = models.export(case.build(),
                                  os.path.join(workdir, "model.onnx"),
                                  (1, 3, case.size, case.size))
        rng = np.random.default_rng(args.seed)
        self.x = rng.standard_normal(
            (case.batch, 3, case.size, case.size)).astype(np.float32)
        self.y = rng.integers(0, 10, case.batch).astype(np.int64)
        exact = self.plan("exact", ["--act-bits", 0])
        self.exact_grads = self.gradients(exact)
        profiles = []
        for bits in (PROFILED_WIDTHS if args.calibrate else ()):
            plan = exact if bits == 0 else self.plan(
                "uniform%d" % bits, ["--act-bits", bits])
            profiles.append(os.path.join(workdir, "profile%d.json" % bits))
            tool.run([plan["exe"], "--synthetic", "--steps",
                      args.warmup + args.steps, "--lr", 0.01, "--threads",
                      args.threads, "--profile", profiles[-1]])
        self.solver_flags = solver_flags(args, profiles)

    def plan(self, name, flags):
        """Compiles plan `name`: {exe, report, stderr, planned}."""
        exe = os.path.join(self.workdir, name)
        report, stderr = compile_plan(self.onnx, exe, self.case.batch, flags)
        return {"name": name, "exe": exe, "report": report, "stderr": stderr,
                "planned": report["total_bytes"]}

    def gradients(self, plan):
        """--check-step's gradients of the plan on the fixed batch."""
        dump = os.path.join(self.workdir, plan["name"] + "-step")
        return tool.check_step(plan["exe"], self.x, self.y, dump,
                               self.args.threads)[1]

    def cosine(self, plan):
        """The plan's whole-gradient cosine against the exact plan's."""
        return whole_cosine(self.gradients(plan), self.exact_grads)

    def train(self, plan):
        """train_once for the plan."""
        return train_once(plan["exe"], self.args, self.workdir)


def progress(message):
    print(message, file=sys.stderr, flush=True)


def measure_frontier(model):
    """Every uniform configuration, measured (or its error line)."""
    points = []
    blocks = residual_blocks(model.onnx)
    for i, (label, bits, flags) in enumerate(frontier_configs(blocks)):
        point = attempt(frontier_point, model, "frontier%d" % i, flags)
        if isinstance(point, dict):
            point.update(label=label, bits=bits)
        points.append((label, point))
        progress(frontier_row(label, point))
    return points


def frontier_point(model, name, flags):
    """A frontier configuration's plan, with one training run's peak RSS
    and step time and its cosine."""
    plan = model.plan(name, flags)
    plan["rss"], plan["ms"] = model.train(plan)
    plan["cos"] = model.cosine(plan)
    return plan


def fixed_overhead(model, exact, frontier):
    """The executable's memory outside its plan, as (largest, smallest,
    runs): peak RSS less planned total over --rounds more training runs of
    the exact plan and the frontier's runs (the plans differ in their
    arena only, so what is left is the runtime's own)."""
    excess = [model.train(exact)[0] - exact["planned"]
              for _ in range(model.args.rounds)]
    excess += [p["rss"] - p["planned"] for _, p in frontier
               if isinstance(p, dict)]
    return max(excess), min(excess), len(excess)


def smallest_feasible(model):
    """What the solver names as its smallest plan when nothing fits (2-bit
    floor), in bytes, rounded up to the precision blpa-opt prints."""
    proc = tool.run([tool.blpa_opt_path(), model.onnx, "--train",
                     "--batch-size", model.case.batch, "--act-bits", "auto",
                     "--memory-limit", 1] + model.solver_flags
                    + ["--emit", "mlir", "-o", os.devnull], check=False)
    found = SMALLEST.search(proc.stderr)
    if proc.returncode == 0 or not found:
        raise Failed("blpa-opt --memory-limit 1 did not name its smallest "
                     "plan: " + error_line(proc.stderr or proc.stdout))
    unit = UNITS[found.group(2)]
    rounding = 0.005 if unit > 1 else 0
    return math.ceil((float(found.group(1)) + rounding) * unit)


def budgets(low, high, count):
    """`count` limits evenly spaced from `low` to `high`, both included."""
    if count == 1:
        return [high]
    return [low + (high - low) * i // (count - 1) for i in range(count)]


def alternate(model, plans):
    """Trains the plans in turn, --rounds times: per plan, its runs' peak
    RSS (bytes) and step figures (ms)."""
    runs = [([], []) for _ in plans]
    for _ in range(model.args.rounds):
        for plan, (rss, ms) in zip(plans, runs):
            peak, step = model.train(plan)
            rss.append(peak)
            ms.append(step)
    return runs


def timing(ms):
    """(median, spread = (max - min) / median) of per-process figures."""
    median = statistics.median(ms)
    return median, (max(ms) - min(ms)) / median


def solver_summary(stderr):
    """(choices, plans compiled, seconds) from the solver's note line."""
    note = SOLVER_NOTE.search(stderr)
    if not note:
        return "(no solver note)", "", ""
    return note.group(1), note.group(2), note.group(3)


def contenders(fitting, margin, most):
    """The fitting configurations whose one-run step is within `margin` of
    the fastest's, fastest first, at most `most`: which of them is the
    fastest is for the alternated runs to tell (on the Intel Xeon, uniform
    8 and 4 bits of ResNet-164 came out 0-5% apart, in either order)."""
    fastest = min(p["ms"] for p in fitting)
    close = [p for p in fitting if p["ms"] <= fastest * (1 + margin)]
    return sorted(close, key=lambda p: p["ms"])[:most]


def compare_at(model, index, budget, frontier, overhead):
    """One budget: our plan and the fitting frontier configurations close
    to the fastest, timed alternately; the fastest of them by that
    timing is the reference of the time and cosine checks."""
    ours = model.plan("budget%d" % index,
                      ["--memory-limit", budget] + model.solver_flags)
    ours["cos"] = model.cosine(ours)
    fitting = [p for _, p in frontier
               if isinstance(p, dict) and p["planned"] <= budget]
    rivals = (contenders(fitting, model.args.contend, model.args.contenders)
              if fitting else [])
    runs = alternate(model, [ours] + rivals)
    # Uniform configurations of one speed within noise are ranked by noise;
    # the most exact fitting one is shown beside the fastest.
    row = {"budget": budget, "ours": ours, "theirs": None,
           "exactest": max(fitting, key=lambda p: p["cos"], default=None),
           "excess": [rss - ours["planned"] for rss in runs[0][0]],
           "ours_ms": timing(runs[0][1]),
           "rivals": [(p, timing(ms)) for p, (_, ms) in zip(rivals, runs[1:])]}
    row["checks"] = {"plan": ours["planned"] <= budget,
                     "rss": statistics.median(row["excess"]) <= overhead}
    if rivals:
        row["theirs"], row["theirs_ms"] = min(row["rivals"],
                                              key=lambda r: r[1][0])
        spread = max(row["ours_ms"][1], row["theirs_ms"][1])
        row["checks"]["time"] = (row["ours_ms"][0]
                                 <= row["theirs_ms"][0] * (1 + spread))
        row["checks"]["cosine"] = ours["cos"] >= row["theirs"]["cos"]
    return row


def rivals_cell(row):
    """The other configurations timed with ours: label, ms/step."""
    others = [(p, ms) for p, ms in row["rivals"] if p is not row["theirs"]]
    return ", ".join("%s: %.1f" % (p["label"], ms[0]) for p, ms in others) \
        or "none"


def mib(value):
    return "%.2f" % (value / MiB)


def one_minus(cos):
    """1 - cosine as a table cell."""
    return "%.2e" % (1 - cos)


def verdict(checks, name):
    if name not in checks:
        return "n/a"
    return "PASS" if checks[name] else "FAIL"


def frontier_row(label, p):
    if isinstance(p, str):
        return "| %s | %s | | | | |" % (label, p)
    return "| %s | %s | %s | %s | %.1f | %s |" % (
        label, mib(p["planned"]), mib(p["rss"]), mib(p["rss"] - p["planned"]),
        p["ms"], one_minus(p["cos"]))


def frontier_table(frontier):
    return ["| configuration | planned MiB | peak RSS MiB "
            "| RSS - planned MiB | ms/step | 1 - cosine |",
            "| --- | --- | --- | --- | --- | --- |"] + [
                frontier_row(label, p) for label, p in frontier]


CHECKS = ("plan", "rss", "time", "cosine")


def budget_row(budget, row):
    if isinstance(row, str):
        return "| %s | %s |%s" % (mib(budget), row, " |" * 16)
    ours, theirs = row["ours"], row["theirs"]
    choices, plans, seconds = solver_summary(ours["stderr"])
    cells = [mib(row["budget"]), mib(ours["planned"]), choices,
             "%s / %s" % (plans, seconds),
             "%s (max %s)" % (mib(statistics.median(row["excess"])),
                              mib(max(row["excess"]))),
             "%.1f (%.0f%%)" % (row["ours_ms"][0], 100 * row["ours_ms"][1]),
             one_minus(ours["cos"])]
    if theirs:
        cells += [theirs["label"], mib(theirs["planned"]),
                  "%.1f (%.0f%%)" % (row["theirs_ms"][0],
                                     100 * row["theirs_ms"][1]),
                  one_minus(theirs["cos"]),
                  "%.3f" % (row["ours_ms"][0] / row["theirs_ms"][0]),
                  rivals_cell(row),
                  "%s: %s" % (row["exactest"]["label"],
                              one_minus(row["exactest"]["cos"]))]
    else:
        cells += ["none fits", "", "", "", "", "", ""]
    cells += [verdict(row["checks"], name) for name in CHECKS]
    return "| " + " | ".join(cells) + " |"


def budget_table(rows):
    lines = ["| budget MiB | ours: planned MiB | ours: choices "
             "| plans / solver s | ours: RSS - planned MiB, median (max) "
             "| ours: ms/step (spread) | ours: 1 - cosine | fastest uniform "
             "that fits (side by side) | its planned MiB "
             "| its ms/step (spread) | its 1 - cosine | time ours / uniform "
             "| others timed with them: ms/step | most exact uniform "
             "that fits: 1 - cosine | planned <= budget "
             "| RSS - planned <= overhead | time | cosine |",
             "| " + " | ".join(["---"] * 18) + " |"]
    return lines + [budget_row(budget, row) for budget, row in rows]


def check_summary(rows):
    """'plan 8/8, rss 8/8, ...' over the rows that ran, and whether all
    passed (a failed row fails every check)."""
    parts, all_pass = [], True
    for name in CHECKS:
        results = [row["checks"].get(name) if isinstance(row, dict) else False
                   for _, row in rows]
        judged = [r for r in results if r is not None]
        all_pass &= all(judged)
        parts.append("%s %d/%d" % (name, sum(judged), len(judged)))
    return ", ".join(parts), all_pass


# The plot: frontier points coloured by width, filled without recompute.
COLOURS = {0: "#333333", 8: "#1f77b4", 4: "#2ca02c", 2: "#d62728"}
OURS_COLOUR = "#ff7f0e"
WIDTH, PANEL_HEIGHT, LEFT, RIGHT, TOP, GAP = 780, 240, 70, 210, 40, 50
LINES = {"ours": ('stroke="%s" stroke-width="2"' % OURS_COLOUR,
                  "ours (--memory-limit)"),
         "paired": ('stroke="#777" stroke-width="1.5" stroke-dasharray="5,4"',
                    "fastest uniform that fits")}


def nice_ticks(low, high, count=5):
    """Round tick values covering [low, high]."""
    raw = (high - low) / count
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if step * m >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step) + 1)]


class Panel:
    """One plot area: maps (x, y) data to pixels, y linear or log10."""

    def __init__(self, top, xs, ys, log):
        self.top, self.log = top, log
        self.x0, self.x1 = xs
        self.y0, self.y1 = (math.log10(ys[0]), math.log10(ys[1])) if log \
            else ys

    def x(self, value):
        return LEFT + (WIDTH - LEFT - RIGHT) * (value - self.x0) / (
            self.x1 - self.x0)

    def y(self, value):
        value = math.log10(value) if self.log else value
        return self.top + PANEL_HEIGHT * (self.y1 - value) / (
            self.y1 - self.y0)

    def axes(self, label, yticks, ytick_text):
        """Frame, grid lines, tick labels and the y label."""
        out = ['<rect x="%d" y="%d" width="%d" height="%d" fill="none" '
               'stroke="#999"/>' % (LEFT, self.top, WIDTH - LEFT - RIGHT,
                                    PANEL_HEIGHT)]
        for value in yticks:
            ypos = self.y(value)
            out.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" '
                       'stroke="#ddd"/>' % (LEFT, ypos, WIDTH - RIGHT, ypos))
            out.append('<text x="%d" y="%.1f" text-anchor="end">%s</text>'
                       % (LEFT - 5, ypos + 4, ytick_text(value)))
        for value in nice_ticks(self.x0, self.x1):
            out.append('<text x="%.1f" y="%d" text-anchor="middle">%g</text>'
                       % (self.x(value), self.top + PANEL_HEIGHT + 15, value))
        middle = self.top + PANEL_HEIGHT // 2
        out.append('<text x="16" y="%d" text-anchor="middle" transform='
                   '"rotate(-90 16 %d)">%s</text>' % (middle, middle, label))
        return out

    def line(self, points, style):
        """A polyline over (budget, value) in one of LINES' styles."""
        return ['<polyline fill="none" %s points="%s"/>' % (
            LINES[style][0], " ".join("%.1f,%.1f" % (self.x(b), self.y(v))
                                      for b, v in points))]

    def series(self, ours, paired, frontier):
        """Ours as a line with dots over (budget, value), the uniform
        configuration timed with it at each budget dashed, and the
        frontier's (planned, value, bits, recomputed) as points."""
        out = self.line(paired, "paired") + self.line(ours, "ours")
        out += ['<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>'
                % (self.x(b), self.y(v), OURS_COLOUR) for b, v in ours]
        for planned, value, bits, recomputed in frontier:
            out.append('<circle cx="%.1f" cy="%.1f" r="4" stroke="%s" '
                       'fill="%s"/>' % (self.x(planned), self.y(value),
                                        COLOURS[bits], "white" if recomputed
                                        else COLOURS[bits]))
        return out


def legend(top):
    """The legend right of the first panel."""
    x = WIDTH - RIGHT + 15
    out = []
    for i, (style, text) in enumerate(LINES.values()):
        ypos = top + 10 + 18 * i
        out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" %s/>'
                   % (x, ypos, x + 20, ypos, style))
        out.append('<text x="%d" y="%d">%s</text>' % (x + 25, ypos + 4, text))
    entries = [(COLOURS[b], COLOURS[b], "uniform exact" if b == 0 else
                "uniform %d-bit" % b) for b in BITS]
    entries.append(("#333333", "white", "blocks recomputed"))
    for i, (stroke, fill, text) in enumerate(entries):
        ypos = top + 50 + 18 * i
        out.append('<circle cx="%d" cy="%d" r="4" stroke="%s" fill="%s"/>'
                   % (x + 10, ypos, stroke, fill))
        out.append('<text x="%d" y="%d">%s</text>' % (x + 25, ypos + 4, text))
    return out


def svg_plot(title, rows, frontier):
    """Step time and 1 - cosine against the budget (MiB): a self-contained
    SVG. 1 - cosine is on a log scale; exact values (below the floor, a
    decade under the smallest inexact one) are drawn on the floor."""
    ran = [(b / MiB, r) for b, r in rows if isinstance(r, dict)]
    points = [p for _, p in frontier if isinstance(p, dict)]
    xs = [b for b, _ in ran] + [p["planned"] / MiB for p in points]
    pad = 0.04 * (max(xs) - min(xs) or 1)
    xrange_ = (min(xs) - pad, max(xs) + pad)
    ms = [r["ours_ms"][0] for _, r in ran] + [p["ms"] for p in points] + [
        r["theirs_ms"][0] for _, r in ran if r["theirs"]]
    time = Panel(TOP, xrange_, (0, 1.1 * max(ms)), False)
    errors = [1 - r["ours"]["cos"] for _, r in ran] + [
        1 - p["cos"] for p in points]
    inexact = [e for e in errors if e > 1e-12] or [1e-6]
    floor = 10.0 ** (math.floor(math.log10(min(inexact))) - 1)
    ceiling = 10.0 ** math.ceil(math.log10(max(inexact)))
    error = Panel(TOP + PANEL_HEIGHT + GAP, xrange_, (floor, ceiling), True)
    height = error.top + PANEL_HEIGHT + 45
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'font-family="sans-serif" font-size="12">' % (WIDTH, height),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="%d" y="20" font-size="14">%s</text>' % (LEFT, title)]
    out += time.axes("ms per step", nice_ticks(0, 1.1 * max(ms)),
                     lambda v: "%g" % v)
    decades = range(round(math.log10(floor)), round(math.log10(ceiling)) + 1)
    out += error.axes("1 - cosine vs exact", [10.0 ** d for d in decades],
                      lambda v: "exact" if v == floor else "1e%d"
                      % round(math.log10(v)))
    recomputed = ["every" in p["label"] for p in points]
    paired = [(b, r) for b, r in ran if r["theirs"]]
    out += time.series(
        [(b, r["ours_ms"][0]) for b, r in ran],
        [(b, r["theirs_ms"][0]) for b, r in paired],
        [(p["planned"] / MiB, p["ms"], p["bits"], rec)
         for p, rec in zip(points, recomputed)])
    out += error.series(
        [(b, max(floor, 1 - r["ours"]["cos"])) for b, r in ran],
        [(b, max(floor, 1 - r["theirs"]["cos"])) for b, r in paired],
        [(p["planned"] / MiB, max(floor, 1 - p["cos"]), p["bits"], rec)
         for p, rec in zip(points, recomputed)])
    out += legend(TOP)
    out.append('<text x="%d" y="%d" text-anchor="middle">memory budget '
               '(ours) or planned total (uniform), MiB</text>'
               % ((LEFT + WIDTH - RIGHT) // 2, height - 10))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def bench_model(case, key, args):
    """Measures one model; returns the lines to print. Without the exact
    plan's figures or the smallest feasible plan nothing can be compared:
    Failed."""
    progress("%s, batch %d:" % (case.name, case.batch))
    with tempfile.TemporaryDirectory() as workdir:
        model = Model(case, args, workdir)
        frontier = measure_frontier(model)
        exact = frontier[0][1]
        if isinstance(exact, str):
            raise Failed("the exact plan failed: " + exact)
        overhead = fixed_overhead(model, exact, frontier)
        low = smallest_feasible(model)
        progress("fixed overhead %s MiB; smallest feasible plan %s MiB" % (
            mib(overhead[0]), mib(low)))
        rows = []
        for i, budget in enumerate(budgets(low, exact["planned"],
                                           args.budgets)):
            rows.append((budget, attempt(compare_at, model, i, budget,
                                         frontier, overhead[0])))
            progress(budget_row(*rows[-1]))
    path = os.path.join(args.svg_dir, "budget-%s.svg" % key)
    with open(path, "w") as f:
        f.write(svg_plot("%s, %dx%d, batch %d" % (
            case.name, case.size, case.size, case.batch), rows, frontier))
    return model_report(case, frontier, overhead, low, rows, path)


def smallest_line(low, frontier):
    """The solver's smallest plan against the uniform 2-bit plan (issue 17:
    at most half) and the smallest uniform configuration."""
    points = [p for _, p in frontier if isinstance(p, dict)]
    smallest = min(points, key=lambda p: p["planned"])
    line = ("Smallest feasible plan (solver, 2-bit floor): %s MiB; smallest "
            "uniform configuration: %s, %s MiB" % (
                mib(low), smallest["label"], mib(smallest["planned"])))
    uniform2 = [p["planned"] for p in points if p["label"] == "2-bit"]
    if not uniform2:
        return line + "."
    return line + "; %.3fx the uniform 2-bit plan's %s MiB (issue 17: at " \
        "most 0.5: %s)." % (low / uniform2[0], mib(uniform2[0]),
                            "PASS" if 2 * low <= uniform2[0] else "FAIL")


def model_report(case, frontier, overhead, low, rows, svg_path):
    """The model's heading, facts, tables and check summary."""
    summary, all_pass = check_summary(rows)
    return [
        "### %s, %dx%d, batch %d" % (case.name, case.size, case.size,
                                     case.batch), "",
        "Fixed overhead: %s MiB, the largest peak RSS less planned total "
        "of %d runs (the uniform frontier's and more of the exact plan; "
        "smallest %s MiB)." % (mib(overhead[0]), overhead[2],
                               mib(overhead[1])),
        smallest_line(low, frontier), "",
        "Uniform frontier (one training process each):", ""] + \
        frontier_table(frontier) + [
        "", "Budgets (ours and the fitting uniform configurations close to "
        "the fastest trained alternately; the fastest of them by that "
        "timing is the reference):", ""] + budget_table(rows) + [
        "", "Checks: %s: %s. Plot: %s." % (
            summary, "all PASS" if all_pass else "some FAIL", svg_path), ""]


def print_header(args):
    print("date: %s, machine: %s, %d cores, kernel threads %d; ms/step: a "
          "process's %s step of %d after %d dropped, synthetic data; %d "
          "alternate processes per plan per budget (ours and the fitting "
          "uniform configurations within %d%% of the fastest, at most %d); "
          "solver: %s; gradients on one fixed batch (seed %d); MiB = 2^20 "
          "bytes" % (
              datetime.date.today(), cpu_name(), usable_cores(),
              args.threads, args.step_statistic, args.steps, args.warmup,
              args.rounds, round(100 * args.contend), args.contenders,
              " ".join(map(str, solver_flags(
                  args, ["UNIFORM-%d.json" % bits for bits in PROFILED_WIDTHS]
                  if args.calibrate else []))),
              args.seed))
    print("command: %s" % command_line())
    print()


DEFAULTS = {"models": "resnet164,resnet50", "budgets": 8, "steps": 6,
            "rounds": 3}
QUICK = {"models": "resnet20", "budgets": 3, "steps": 3, "rounds": 2}


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models",
                        help="comma-separated, of: %s (default: %s)" % (
                            ", ".join(CASES), DEFAULTS["models"]))
    parser.add_argument("--budgets", type=int, help="default 8")
    parser.add_argument("--steps", type=int,
                        help="timed steps per training process (default 6)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="steps dropped before them")
    parser.add_argument("--rounds", type=int,
                        help="alternate processes per side per budget "
                             "(default 3)")
    parser.add_argument("--contend", type=float, default=0.05,
                        help="fitting configurations within this fraction "
                             "of the fastest one's step (one process each) "
                             "are timed with ours (default 0.05)")
    parser.add_argument("--contenders", type=int, default=4,
                        help="at most this many of them, fastest first "
                             "(default 4)")
    parser.add_argument("--threads", type=int, default=1,
                        help="kernel threads of every run (default 1: on a "
                             "shared machine, threads waiting at OpenMP "
                             "barriers spin against other processes; "
                             "ResNet-164's step took 17-34 s at 2 threads "
                             "against 2.0 s at 1 under a load of 7 on 2 "
                             "cores)")
    parser.add_argument("--step-statistic", choices=("fastest", "median"),
                        default="fastest",
                        help="a process's figure: its fastest step (least "
                             "disturbed by other load) or its median")
    parser.add_argument("--prefer", choices=("speed", "exactness"),
                        help="passed to the solver (default: its own)")
    parser.add_argument("--calibrate", action=argparse.BooleanOptionalAction,
                        default=True,
                        help="give the solver profiles of the uniform plans")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the fixed batch the cosines use")
    parser.add_argument("--svg-dir", default=os.path.join(BENCH, "..",
                                                          "docs"))
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: defaults %s" % ", ".join(
                            "--%s %s" % kv for kv in QUICK.items()))
    args = parser.parse_args()
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.models = args.models.split(",")
    unknown = [m for m in args.models if m not in CASES]
    if unknown:
        parser.error("--models: unknown %s; known: %s" % (
            ", ".join(unknown), ", ".join(CASES)))
    if min(args.budgets, args.steps, args.rounds, args.contenders) < 1:
        parser.error("--budgets, --steps, --rounds and --contenders must be "
                     "at least 1")
    return args


def main():
    args = parse_args()
    print_header(args)
    for key in args.models:
        case = CASES[key]
        lines = attempt(bench_model, case, key, args)
        if isinstance(lines, str):
            lines = ["### %s" % case.name, "", lines, ""]
        print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
