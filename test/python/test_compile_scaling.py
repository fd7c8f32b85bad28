"""Compile time grows linearly with the op count.

Each op lowers to one runtime call; in a single LLVM function per entry
point, LLVM's register allocator made compiling superlinear (ResNet-1001 at
batch 8: 56 s). --blpa-lower-to-llvm outlines the calls into internal chunk
functions of at most 64 calls (docs/design.md, "Lowering and emission").
The structure is what this test pins; the compile times themselves are
a benchmark (docs/benchmarks.md), not a test.

The models are deep residual stacks built directly with onnx.helper (tiny
tensors, so only the op count matters, and no slow PyTorch export).
"""

import re

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from blpa import tool

CHUNK_SIZE = 64  # --blpa-lower-to-llvm's default chunk-size

FUNC = re.compile(r"^\s*llvm\.func (internal )?@(\w+)\(.*\{$")
CALL = re.compile(r"llvm\.call @(\w+)\(")


def deep_residual_model(blocks, channels=4, size=4, classes=10):
    """`blocks` pre-activation residual blocks (BN, ReLU, 1x1 conv, BN,
    ReLU, 3x3 conv, add), global average pooling and a linear classifier:
    7 * blocks + 3 ONNX nodes, batch dimension symbolic."""
    rng = np.random.default_rng(0)
    inits, nodes = [], []

    def param(name, shape, value=None):
        data = (rng.standard_normal(shape) * 0.1 if value is None
                else np.full(shape, value))
        inits.append(numpy_helper.from_array(data.astype(np.float32), name))
        return name

    def bn_relu(x, p):
        c = channels
        nodes.append(helper.make_node(
            "BatchNormalization",
            [x, param(p + ".s", [c], 1.0), param(p + ".b", [c], 0.0),
             param(p + ".m", [c], 0.0), param(p + ".v", [c], 1.0)],
            [p + ".y", p + ".rm", p + ".rv"], training_mode=1))
        nodes.append(helper.make_node("Relu", [p + ".y"], [p + ".r"]))
        return p + ".r"

    def conv(x, p, k):
        nodes.append(helper.make_node(
            "Conv", [x, param(p + ".w", [channels, channels, k, k])],
            [p + ".o"], kernel_shape=[k, k], pads=[k // 2] * 4))
        return p + ".o"

    x = "x"
    for i in range(blocks):
        p = "b%d" % i
        h = conv(bn_relu(x, p + ".bn1"), p + ".c1", 1)
        h = conv(bn_relu(h, p + ".bn2"), p + ".c2", 3)
        nodes.append(helper.make_node("Add", [x, h], [p + ".out"]))
        x = p + ".out"
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool"]))
    nodes.append(helper.make_node("Flatten", ["pool"], ["flat"]))
    nodes.append(helper.make_node(
        "Gemm", ["flat", param("fc.w", [classes, channels]),
                 param("fc.b", [classes])], ["logits"], transB=1))
    graph = helper.make_graph(
        nodes, "deep_residual",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                       ["batch", channels, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                       ["batch", classes])], inits)
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 15)])


def save_model(tmp_path, blocks):
    path = tmp_path / ("deep%d.onnx" % blocks)
    model = deep_residual_model(blocks)
    onnx.save(model, path)
    return path, len(model.graph.node)


def runtime_calls(lowered):
    """{function: [callees]} of the llvm.func definitions in `lowered`."""
    funcs, current = {}, None
    for line in lowered.splitlines():
        match = FUNC.match(line)
        if match:
            current = funcs.setdefault(match.group(2), [])
        elif current is not None and line.strip() == "}":
            current = None
        elif current is not None:
            current.extend(CALL.findall(line))
    return funcs


def test_step_functions_are_chunked(tmp_path):
    """Every generated function holds at most CHUNK_SIZE runtime calls;
    the entry points only call their chunks, in order."""
    model, _ = save_model(tmp_path, 300)
    lowered = tmp_path / "deep.mlir"
    tool.compile(model, lowered, batch_size=2, emit="mlir")
    funcs = runtime_calls(lowered.read_text())
    for entry in ("blpa_forward", "blpa_train_step"):
        chunks = funcs[entry]
        assert chunks == ["%s_chunk%d" % (entry, k)
                          for k in range(len(chunks))], chunks[:5]
        calls = [funcs[c] for c in chunks]
        assert all(1 <= len(c) <= CHUNK_SIZE for c in calls), \
            max(len(c) for c in calls)
        assert not any(callee in funcs for c in calls for callee in c)
    # 300 blocks: thousands of calls in the training step.
    assert len(funcs["blpa_train_step"]) > 30
