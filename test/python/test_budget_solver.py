"""The budget solver (--act-bits auto under --memory-limit) against
exhaustive search (--budget-search exhaustive: every combination of
float32, codes and recompute over the nodes): on small random networks and
budgets spread from the smallest plan to the exact one, the default search
finds a plan that ranks as well as the best of all combinations (as fast
within the solver's tolerance, and as exact)."""

import re
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import fresh_rng
from blpa import tool

pytestmark = pytest.mark.randomized

PLAN = re.compile(r"^budget plan \d+: total (\d+) bytes")
ANSWER = re.compile(r"^budget answer: total (\d+) bytes, .*, time step (-?\d+), "
                    r"approximation (\d+)$", re.M)


def random_network(rng, path, blocks):
    """`blocks` Conv-BN-ReLU blocks (a residual Add on some), global pooling
    and a Gemm, with random widths and weights: 4 or 5 nodes to decide per
    block."""
    channels = int(rng.integers(1, 4))
    size = int(rng.integers(3, 6))
    nodes, inits = [], []

    def init(name, shape):
        inits.append(numpy_helper.from_array(
            rng.standard_normal(shape).astype(np.float32) * 0.5, name))
        return name

    current, width = "X", channels
    for b in range(blocks):
        out = int(rng.integers(1, 4))
        residual = out == width and rng.random() < 0.5
        block_in = current
        nodes.append(helper.make_node(
            "Conv", [current, init("w%d" % b, (out, width, 3, 3))],
            ["c%d" % b], name="conv%d" % b, pads=[1, 1, 1, 1]))
        bn = [init("%s%d" % (p, b), (out,)) for p in ("g", "be")]
        inits.append(numpy_helper.from_array(np.zeros(out, np.float32),
                                             "m%d" % b))
        inits.append(numpy_helper.from_array(np.ones(out, np.float32),
                                             "v%d" % b))
        nodes.append(helper.make_node(
            "BatchNormalization", ["c%d" % b] + bn + ["m%d" % b, "v%d" % b],
            ["n%d" % b], name="bn%d" % b, training_mode=1))
        nodes.append(helper.make_node("Relu", ["n%d" % b], ["r%d" % b],
                                      name="relu%d" % b))
        current, width = "r%d" % b, out
        if residual:
            nodes.append(helper.make_node("Add", [current, block_in],
                                          ["a%d" % b], name="add%d" % b))
            current = "a%d" % b
    nodes.append(helper.make_node("GlobalAveragePool", [current], ["p"],
                                  name="pool"))
    nodes.append(helper.make_node("Flatten", ["p"], ["f"], name="flatten"))
    nodes.append(helper.make_node(
        "Gemm", ["f", init("fc", (3, width)), init("fcb", (3,))], ["Y"],
        name="fc", transB=1))
    graph = helper.make_graph(
        nodes, "random",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT,
                                       ["N", channels, size, size])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 3])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("",
                                                                        15)])
    model.ir_version = 8
    onnx.save(model, path)


def solve(model, limit, search, min_bits, recompute):
    """The solver's stderr with --print-budget-search."""
    cmd = [tool.blpa_opt_path(), model, "--train", "--batch-size", "8",
           "--memory-limit", str(limit), "--min-act-bits", str(min_bits),
           "--no-budget-recompute=%d" % (not recompute),
           "--budget-search", search, "--print-budget-search",
           "--emit", "mlir", "-o", "/dev/null"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    return result.returncode, result.stderr


def answer(stderr):
    """The chosen plan's total and its rank: charged time in steps of the
    solver's tolerance, and approximation."""
    match = ANSWER.search(stderr)
    assert match, stderr[-2000:]
    return int(match.group(1)), (int(match.group(2)), int(match.group(3)))


# One block with codes down to 4 bits and recompute (4 choices per node),
# two blocks with 8 bits and recompute (3 choices), three blocks (12 saved
# tensors at float32) with float32 or 8 bits: at most 2^13 plans to search.
@pytest.mark.parametrize("blocks,min_bits,recompute",
                         [(1, 4, True), (2, 8, True), (3, 8, False)])
def test_default_search_matches_exhaustive_search(tmp_path, blocks,
                                                  min_bits, recompute):
    rng = fresh_rng()
    model = str(tmp_path / "net.onnx")
    random_network(rng, model, blocks)
    # Every plan's total, from one exhaustive search that nothing fits.
    code, stderr = solve(model, 1, "exhaustive", min_bits, recompute)
    assert code != 0 and "no plan fits" in stderr, stderr[-2000:]
    totals = sorted({int(m.group(1)) for m in
                     map(PLAN.match, stderr.splitlines()) if m})
    assert len(totals) > 1
    for fraction in (0.0, 0.5, 0.9):
        limit = totals[int(fraction * (len(totals) - 1))]
        code, best = solve(model, limit, "exhaustive", min_bits, recompute)
        assert code == 0, best[-2000:]
        code, greedy = solve(model, limit, "greedy", min_bits, recompute)
        assert code == 0, greedy[-2000:]
        total, rank = answer(greedy)
        assert total <= limit
        # Ranked alike: as fast to the tolerance's step, and as exact.
        assert rank == answer(best)[1], (limit, greedy[-600:], best[-600:])
