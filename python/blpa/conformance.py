"""Conformance with ONNX's backend tests.

Every test of ONNX's backend data (the suites node, pytorch-converted and
pytorch-operator) whose ops blpa-opt supports is compiled with --infer, run
on its stored inputs and compared with its stored outputs at ONNX's own
tolerances. Tests with other ops are compiled too, only to see that
blpa-opt refuses them with one line, and are counted by the ops they lack.

    scripts/onnx-conformance [--out docs/onnx-coverage.md] [--jobs N]

writes the report; test/python/test_onnx_conformance.py runs the same
functions and checks the committed report against a fresh run.
"""

import argparse
import collections
import concurrent.futures
import dataclasses
import glob
import os
import re
import sys
import tempfile
import textwrap
import time

import numpy as np
import onnx
from onnx import numpy_helper

from blpa import tool

DATA_DIR = "/usr/include/onnx/backend/test/data"
SUITES = ("node", "pytorch-converted", "pytorch-operator")
REPORT = os.path.join(tool._REPO, "docs", "onnx-coverage.md")

# onnx.backend.test.loader's tolerances for tests stored with their model
# (none of these suites overrides them); compared as its runner does, with
# numpy.testing.assert_allclose.
RTOL = 1e-3
ATOL = 1e-7

# Seconds one test (its compiles and runs together) may take.
TEST_TIMEOUT = 60

PASS, FAIL, UNSUPPORTED, CRASH = "pass", "fail", "unsupported", "crash"

DEFAULT_DOMAINS = ("", "ai.onnx")

# The ops of the CNNs issue 7 names (torchvision's classification families
# exported for training, plus PixelShuffle's DepthToSpace and its inverse):
# the report's second figure counts the tests that use at least one of
# these, otherwise only SHAPE_OPS, and whose data (graph inputs other than
# folded int64 ones, and outputs) is float32, the one data type blpa trains.
# In those models SHAPE_OPS only compute shapes, folded at compile time,
# while their own node tests are about integer, double, half and string
# data.
CNN_OPS = frozenset((
    "Add", "AveragePool", "BatchNormalization", "Clip", "Concat", "Conv",
    "DepthToSpace", "Div", "Dropout", "Flatten", "Gemm", "GlobalAveragePool",
    "GlobalMaxPool", "HardSigmoid", "HardSwish", "Identity", "LogSoftmax",
    "MatMul", "MaxPool", "Mul", "Pad", "ReduceMean", "Relu", "Reshape",
    "Sigmoid", "Slice", "Softmax", "SpaceToDepth", "Split", "Squeeze", "Sub",
    "Transpose", "Unsqueeze"))
SHAPE_OPS = frozenset(("Cast", "Constant", "ConstantOfShape", "Gather",
                       "Shape"))
# The ops issue 18 adds for transformers (supported or not yet): the
# report's third figure counts the tests that use at least one of these,
# otherwise only CNN_OPS and SHAPE_OPS, on float32 data, whether blpa
# supports all their ops yet or not (a refused test counts as failing).
TRANSFORMER_OPS = frozenset((
    "Equal", "Erf", "Expand", "Gelu", "LayerNormalization", "Less", "Neg",
    "Not", "Pow", "ReduceMax", "ReduceSum", "Sqrt", "Tanh", "Trilu",
    "Where"))

@dataclasses.dataclass(frozen=True)
class Case:
    suite: str
    name: str
    directory: str


@dataclasses.dataclass(frozen=True)
class Result:
    suite: str
    name: str
    # PASS, FAIL (a supported-op test blpa-opt refuses or gets wrong),
    # UNSUPPORTED (refused cleanly, as it has unsupported ops) or CRASH (a
    # signal, a timeout, or an error that is not one `error:` line).
    status: str
    reason: str = ""
    # The ops that make the test unsupported, e.g. "Abs", "Concat (opset 3)".
    unsupported: tuple = ()
    # Only CNN_OPS, on float32 data (see CNN_OPS).
    cnn_float32: bool = False
    # TRANSFORMER_OPS among them, on float32 data (see TRANSFORMER_OPS).
    transformer_float32: bool = False


def discover(data_dir=DATA_DIR, suites=SUITES):
    """The tests of `suites`, in report order (suite, then name)."""
    cases = []
    for suite in suites:
        for model in sorted(glob.glob(os.path.join(data_dir, suite, "*",
                                                   "model.onnx"))):
            directory = os.path.dirname(model)
            cases.append(Case(suite, os.path.basename(directory), directory))
    return cases


def supported_ops():
    """{op: (min opset, max opset)} from blpa-opt --list-onnx-ops."""
    proc = tool.run([tool.blpa_opt_path(), "--list-onnx-ops"])
    ops = {}
    for line in proc.stdout.splitlines():
        op, low, high = line.split()
        ops[op] = (int(low), int(high))
    return ops


def model_opset(model):
    for entry in model.opset_import:
        if entry.domain in DEFAULT_DOMAINS:
            return entry.version
    return None


def unsupported_ops(model, ops):
    """The sorted labels of the model's nodes blpa-opt does not support:
    the op type, "domain.Op" outside the default domain, or "Op (opset N)"
    for a supported op outside its opsets."""
    opset = model_opset(model)
    labels = set()
    for node in model.graph.node:
        if node.domain not in DEFAULT_DOMAINS:
            labels.add("%s.%s" % (node.domain, node.op_type))
        elif node.op_type not in ops:
            labels.add(node.op_type)
        elif not ops[node.op_type][0] <= (opset or 0) <= ops[node.op_type][1]:
            labels.add("%s (opset %s)" % (node.op_type, opset))
    return tuple(sorted(labels))


def uses_family_on_float32(model, family, others):
    """Whether the model uses ops of `family` and otherwise only `others`,
    and every graph input (but int64 ones, which become initializers) and
    output is float32."""
    ops = {node.op_type for node in model.graph.node}
    if not ops & family or not ops <= family | others:
        return False
    initialized = {init.name for init in model.graph.initializer}
    float32 = onnx.TensorProto.FLOAT
    int64 = onnx.TensorProto.INT64
    for value in model.graph.input:
        elem = value.type.tensor_type.elem_type
        if value.name not in initialized and elem not in (float32, int64):
            return False
    return all(value.type.tensor_type.elem_type == float32
               for value in model.graph.output)


def load_tensor(path):
    tensor = onnx.TensorProto()
    with open(path, "rb") as f:
        tensor.ParseFromString(f.read())
    return numpy_helper.to_array(tensor)


def load_data_set(directory, prefix, values):
    """{name: array} of the stored `prefix`_<i>.pb of a test data set, the
    i-th of `values` (graph inputs or outputs) naming each. Sequences and
    optionals are left out: blpa-opt refuses them anyway."""
    tensors = {}
    for i, value in enumerate(values):
        path = os.path.join(directory, "%s_%d.pb" % (prefix, i))
        if os.path.exists(path) and value.type.HasField("tensor_type"):
            tensors[value.name] = load_tensor(path)
    return tensors


def fold_int64_inputs(model, stored):
    """Makes each int64 graph input (a shape, axes) an initializer holding
    its stored value, as blpa takes integer tensors at compile time only.
    `stored` maps input names to arrays; returns the names folded."""
    folded = []
    for value in list(model.graph.input):
        elem_type = value.type.tensor_type.elem_type
        if elem_type != onnx.TensorProto.INT64 or value.name not in stored:
            continue
        model.graph.initializer.append(
            numpy_helper.from_array(stored[value.name], value.name))
        model.graph.input.remove(value)
        folded.append(value.name)
    return folded


def batch_flags(model, initializers, inputs):
    """--batch-size when a data input leaves its leading dimension open:
    the stored input's (unless it is empty, which blpa-opt refuses)."""
    for value in model.graph.input:
        if value.name in initializers or value.name not in inputs:
            continue
        dims = value.type.tensor_type.shape.dim
        shape = inputs[value.name].shape
        if len(dims) and dims[0].dim_value <= 0 and shape and shape[0] > 0:
            return ["--batch-size", shape[0]]
    return []


class Broken(Exception):
    """A command crashed, hung or failed without one clean error line."""


def run_command(cmd, deadline):
    """Runs `cmd` until `deadline` (time.monotonic()); returns its
    CompletedProcess, raising Broken on a signal or a timeout."""
    try:
        proc = tool.run(cmd, check=False,
                        timeout=max(1.0, deadline - time.monotonic()))
    except tool.ToolError as e:
        raise Broken("%s: %s" % (os.path.basename(cmd[0]), e.returncode))
    if proc.returncode < 0:
        raise Broken("%s: killed by signal %d" %
                     (os.path.basename(str(cmd[0])), -proc.returncode))
    return proc


def compile_error(proc, model_path):
    """blpa-opt's one-line error without "error: " and the model's path, or
    raises Broken when the failure is not exactly that."""
    lines = proc.stderr.strip().splitlines()
    if proc.returncode != 1 or len(lines) != 1 or \
            not lines[0].startswith("error: "):
        raise Broken("blpa-opt exited with %d: %s" %
                     (proc.returncode, " / ".join(lines[:3]) or "no message"))
    return lines[0][len("error: "):].replace(model_path + ": ", "", 1)


def compare(outputs, expected):
    """A reason why `outputs` do not match `expected` (as the ONNX runner's
    assert_allclose), or "" when they do."""
    if len(outputs) != len(expected):
        return "%d outputs, expected %d" % (len(outputs), len(expected))
    for i, (out, ref) in enumerate(zip(outputs, expected)):
        if out.dtype != ref.dtype:
            return "output %d is %s, expected %s" % (i, out.dtype, ref.dtype)
        if out.shape != ref.shape:
            return "output %d has shape %s, expected %s" % (
                i, list(out.shape), list(ref.shape))
        close = np.isclose(out, ref, rtol=RTOL, atol=ATOL, equal_nan=True)
        if close.all():
            continue
        error = np.abs(out.astype(np.float64) - ref.astype(np.float64))
        return ("output %d: %d of %d elements differ, max abs error %.2g "
                "(tolerance %g + %g * |reference|)" %
                (i, close.size - close.sum(), close.size,
                 np.nanmax(np.where(close, 0, error)), ATOL, RTOL))
    return ""


def run_model(exe, names, inputs, expected, directory, deadline):
    """Runs `exe` on the stored inputs; a reason it failed, or ""."""
    paths = []
    for i, name in enumerate(names):
        if name not in inputs:
            return "no stored value for input '%s'" % name
        paths.append(os.path.join(directory, "input_%d.npy" % i))
        np.save(paths[-1], inputs[name])
    dump = os.path.join(directory, "out")
    proc = run_command([exe, "--inputs"] + paths + ["--dump", dump],
                       deadline)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        return "the executable exited with %d: %s" % (
            proc.returncode, lines[-1] if lines else "no message")
    return compare(load_outputs(dump), expected)


def load_outputs(dump):
    outputs = []
    while os.path.exists(os.path.join(dump, "output_%d.npy" % len(outputs))):
        outputs.append(np.load(os.path.join(dump, "output_%d.npy" %
                                            len(outputs))))
    return outputs


def check_case(case, ops, workdir):
    """Compiles, runs and compares one test; its Result. A crash, a hang or
    an exception of the driver itself is a CRASH result, not the end of the
    run."""
    deadline = time.monotonic() + TEST_TIMEOUT
    directory = os.path.join(workdir, case.suite, case.name)
    missing, cnn, transformer = (), False, False
    try:
        os.makedirs(directory)
        model = onnx.load(os.path.join(case.directory, "model.onnx"))
        missing = unsupported_ops(model, ops)
        cnn = not missing and uses_family_on_float32(model, CNN_OPS,
                                                     SHAPE_OPS)
        transformer = uses_family_on_float32(model, TRANSFORMER_OPS,
                                             CNN_OPS | SHAPE_OPS)
        if missing:
            check_refusal(case, directory, missing, deadline)
            return Result(case.suite, case.name, UNSUPPORTED,
                          unsupported=missing,
                          transformer_float32=transformer)
        reason = check_data_sets(case, model, directory, deadline)
        return Result(case.suite, case.name, FAIL if reason else PASS,
                      reason, cnn_float32=cnn,
                      transformer_float32=transformer)
    except Broken as e:
        reason = str(e)
    except Exception as e:  # noqa: BLE001 - reported, never hidden
        reason = "driver error: %s: %s" % (type(e).__name__, e)
    return Result(case.suite, case.name, CRASH, reason, missing, cnn,
                  transformer)


def blpa_opt_command():
    return [tool.blpa_opt_path()]


def check_refusal(case, directory, missing, deadline):
    """A test with unsupported ops must be refused with one error line."""
    model = os.path.join(case.directory, "model.onnx")
    proc = run_command(blpa_opt_command() + [
        model, "--infer", "-o", os.path.join(directory, "exe")], deadline)
    if proc.returncode == 0:
        raise Broken("compiled although %s is unsupported" %
                     ", ".join(missing))
    compile_error(proc, model)


def check_data_sets(case, model, directory, deadline):
    """Compiles the model and runs it on each stored data set; the reason
    of the first failure, or ""."""
    for data in sorted(glob.glob(os.path.join(case.directory,
                                              "test_data_set_*"))):
        # Stored inputs follow graph.input, as in ONNX's runner.
        inputs = load_data_set(data, "input", model.graph.input)
        folded = onnx.ModelProto()
        folded.CopyFrom(model)
        path = os.path.join(case.directory, "model.onnx")
        if fold_int64_inputs(folded, inputs):
            path = os.path.join(directory, "folded.onnx")
            onnx.save(folded, path)
        initializers = {t.name for t in folded.graph.initializer}
        exe = os.path.join(directory, "exe")
        proc = run_command(blpa_opt_command() + [path, "--infer", "-o", exe] +
                           batch_flags(folded, initializers, inputs),
                           deadline)
        if proc.returncode != 0:
            return compile_error(proc, path)
        names = [v.name for v in folded.graph.input
                 if v.name not in initializers]
        expected = load_data_set(data, "output", model.graph.output)
        reason = run_model(exe, names, inputs,
                           [expected[v.name] for v in model.graph.output
                            if v.name in expected],
                           directory, deadline)
        if reason:
            return reason
    return ""


def run_all(cases=None, jobs=None, ops=None):
    """The Results of `cases` (default: every test of SUITES), checked in
    `jobs` worker processes (default: the CPU count), in report order."""
    cases = discover() if cases is None else cases
    ops = supported_ops() if ops is None else ops
    with tempfile.TemporaryDirectory(prefix="blpa-conformance-") as workdir:
        with concurrent.futures.ProcessPoolExecutor(
                max_workers=jobs or os.cpu_count()) as pool:
            futures = [pool.submit(check_case, case, ops, workdir)
                       for case in cases]
            results = [f.result() for f in futures]
    return sorted(results, key=report_key)


def report_key(result):
    return (SUITES.index(result.suite) if result.suite in SUITES
            else len(SUITES), result.suite, result.name)


#===----------------------------------------------------------------------===#
# The report
#===----------------------------------------------------------------------===#

SUMMARY_COLUMNS = ("suite", "tests", "supported-op tests", "passed",
                   "failed", "with unsupported ops")


def counts(results):
    """{suite or "all": {column: count}}, the summary table's rows."""
    rows = collections.OrderedDict()
    suites = sorted({r.suite for r in results},
                    key=lambda s: report_key(Result(s, "", "")))
    for suite in list(suites) + ["all"]:
        mine = [r for r in results if suite in ("all", r.suite)]
        supported = [r for r in mine if not r.unsupported]
        passed = sum(r.status == PASS for r in supported)
        rows[suite] = {
            "tests": len(mine),
            "supported-op tests": len(supported),
            "passed": passed,
            "failed": len(supported) - passed,
            "with unsupported ops": len(mine) - len(supported),
        }
    return rows


def percent(part, whole):
    return 100.0 * part / whole if whole else 0.0


def escape(text):
    return text.replace("|", "\\|")


def paragraph(text):
    return textwrap.fill(text, 79, break_on_hyphens=False,
                         break_long_words=False)


def render(results, ops):
    """docs/onnx-coverage.md for `results`."""
    rows = counts(results)
    total = rows["all"]
    supported = total["supported-op tests"]
    intro = (
        "Each test of ONNX's backend data (`%s`, onnx %s) in the suites %s "
        "whose nodes are all supported ops (default domain, within the op's "
        "opsets) is compiled with `blpa-opt --infer`, run on its stored "
        "inputs and compared with its stored outputs at ONNX's tolerances "
        "(rtol %g, atol %g, as `onnx.backend.test`'s runner). int64 graph "
        "inputs (shapes, axes) first become initializers holding their "
        "stored values. A test with unsupported ops must be refused with one "
        "`error:` line; it is counted by the ops it lacks." % (
            DATA_DIR, onnx.__version__, ", ".join("`%s`" % s for s in SUITES),
            RTOL, ATOL))
    lines = [
        "# ONNX backend-test coverage",
        "",
        paragraph("Written by `scripts/onnx-conformance` "
                  "(`python/blpa/conformance.py`); do not edit. "
                  "`test/python/test_onnx_conformance.py` reruns the tests "
                  "and fails when this file no longer matches."),
        "",
        paragraph(intro),
        "",
        "## Summary",
        "",
        "| " + " | ".join(SUMMARY_COLUMNS) + " |",
        "|" + "---|" * len(SUMMARY_COLUMNS),
    ]
    for suite, row in rows.items():
        lines.append("| %s | %s |" % (suite, " | ".join(
            str(row[c]) for c in SUMMARY_COLUMNS[1:])))
    cnn = [r for r in results if r.cnn_float32]
    cnn_passed = sum(r.status == PASS for r in cnn)
    transformer = [r for r in results if r.transformer_float32]
    transformer_passed = sum(r.status == PASS for r in transformer)
    lines += [
        "",
        "Supported-op tests passing: %d of %d (%.1f%%)." % (
            total["passed"], supported, percent(total["passed"], supported)),
        "",
        paragraph(
            "CNN-op tests on float32 data passing: %d of %d (%.1f%%). These "
            "are the supported-op tests that use the ops of the CNN "
            "families blpa targets (%s) and otherwise only %s, and whose "
            "graph inputs and outputs are float32, the data type blpa "
            "trains in. In those models %s only compute shapes (folded at "
            "compile time), while their own node tests are about other "
            "data types." % (
                cnn_passed, len(cnn), percent(cnn_passed, len(cnn)),
                ", ".join(sorted(CNN_OPS)), ", ".join(sorted(SHAPE_OPS)),
                ", ".join(sorted(SHAPE_OPS)))),
        "",
        paragraph(
            "Transformer-op tests on float32 data passing: %d of %d "
            "(%.1f%%). These are the tests that use the ops issue 18 adds "
            "for transformers (%s) and otherwise only the CNN ops and %s, "
            "with float32 graph inputs and outputs, whether blpa supports "
            "all their ops yet or not: a test refused for an op not yet "
            "supported counts as failing." % (
                transformer_passed, len(transformer),
                percent(transformer_passed, len(transformer)),
                ", ".join(sorted(TRANSFORMER_OPS)),
                ", ".join(sorted(SHAPE_OPS)))),
        "",
        "## Supported ops",
        "",
        "| op | opsets |",
        "|---|---|",
    ]
    lines += ["| %s | %d-%d |" % (op, low, high)
              for op, (low, high) in sorted(ops.items())]
    lines += [
        "",
        "## Failing tests of supported ops",
        "",
        "| suite | test | reason |",
        "|---|---|---|",
    ]
    lines += ["| %s | %s | %s%s |" % (
        r.suite, r.name, "crash: " if r.status == CRASH else "",
        escape(r.reason)) for r in results if r.status in (FAIL, CRASH)]
    lines += ["", "## Passing tests", "", "| suite | test |", "|---|---|"]
    lines += ["| %s | %s |" % (r.suite, r.name)
              for r in results if r.status == PASS]
    by_op = collections.Counter(
        op for r in results for op in r.unsupported)
    lines += [
        "",
        "## Tests with unsupported ops",
        "",
        paragraph("%d tests; a test with several unsupported ops counts "
                  "under each." % total["with unsupported ops"]),
        "",
        "| op | tests |",
        "|---|---|",
    ]
    lines += ["| %s | %d |" % (escape(op), n)
              for op, n in sorted(by_op.items(), key=lambda e: (-e[1], e[0]))]
    return "\n".join(lines) + "\n"


def parse_report(text):
    """What a report states: ({suite: {column: count}}, {(suite, test):
    reason} of the failing tests, {(suite, test)} of the passing ones)."""
    section, rows, failing, passing = None, {}, {}, set()
    for line in text.splitlines():
        if line.startswith("## "):
            section = line[3:]
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if section == "Summary" and len(cells) == len(SUMMARY_COLUMNS) \
                and cells[1].isdigit():
            rows[cells[0]] = dict(zip(SUMMARY_COLUMNS[1:],
                                      (int(c) for c in cells[1:])))
        elif cells[:1] in (["suite"], ["---"]):
            continue
        elif section == "Failing tests of supported ops" and len(cells) == 3:
            failing[(cells[0], cells[1])] = cells[2]
        elif section == "Passing tests" and len(cells) == 2:
            passing.add((cells[0], cells[1]))
    return rows, failing, passing


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="onnx-conformance",
        description="Compile and run ONNX's backend node tests with "
        "blpa-opt --infer; write the coverage report.")
    parser.add_argument("--out", default=REPORT,
                        help="the report to write (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count(),
                        help="worker processes (default: %(default)s)")
    args = parser.parse_args(argv)
    start = time.monotonic()
    ops = supported_ops()
    results = run_all(jobs=args.jobs, ops=ops)
    with open(args.out, "w") as f:
        f.write(render(results, ops))
    total = counts(results)["all"]
    crashes = [r for r in results if r.status == CRASH]
    print("%d tests in %.0fs: %d of %d supported-op tests pass, %d fail; "
          "%d with unsupported ops; wrote %s" % (
              total["tests"], time.monotonic() - start, total["passed"],
              total["supported-op tests"], total["failed"],
              total["with unsupported ops"], args.out))
    for r in crashes[:20]:
        print("crash: %s/%s: %s" % (r.suite, r.name, r.reason),
              file=sys.stderr)
    if len(crashes) > 20:
        print("... and %d more crashes" % (len(crashes) - 20),
              file=sys.stderr)
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
