"""Per-tensor bit widths: --act-policy NODE=8|4|2 at --act-bits 0 codes the
pinned nodes' saved tensors at their own widths and keeps every other one
exact (docs/design.md, "Activation compression"). The gradients are those of
the float64 reference of the method given the same width per tensor, and
the memory report's saved_tensors say what each tensor keeps, in bytes the
shapes give."""

import json

import numpy as np
import pytest

from conftest import compare_with_reference, fresh_rng
from blpa import models, test_models, tool
from reference import reference_step

BATCH, WIDTH, SIZE = 8, 16, 16  # mixed_cnn's input [BATCH, 3, SIZE, SIZE]

# One width of each kind on MixedCNN (test_models.py): the first batch
# norm's codes at 8 bits, the max pooling's output at 2 (its argmax is
# exact), the ReLU that conv3's weight gradient reads at 4, conv3's output
# at 2 (conv3's pin also names its input, the ReLU's output, which keeps
# the more exact 4). The second batch norm, the last ReLU and the
# classifier's input stay exact.
PINS = {"/bn1/BatchNormalization": "8", "/MaxPool": "2", "/Relu_1": "4",
        "/conv3/Conv": "2"}
# The same widths for the reference, by (function, call index) in forward.
REFERENCE_WIDTHS = {("batch_norm", 0): 8, ("max_pool2d", 0): 2,
                    ("relu", 1): 4, ("conv2d", 2): 2}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """MixedCNN with randomized batch norms (weights from a fresh seed),
    compiled with the pins, and its memory report."""
    workdir = tmp_path_factory.mktemp("mixed_bits")
    seed = int(fresh_rng().integers(1 << 31))
    model = test_models.mixed_cnn(seed=seed, image_size=SIZE)
    onnx_path = models.export(model, str(workdir / "model.onnx"))
    report = str(workdir / "memory.json")
    pins = []
    for node, choice in PINS.items():
        pins += ["--act-policy", "%s=%s" % (node, choice)]
    exe = tool.compile(onnx_path, str(workdir / "exe"), batch_size=BATCH,
                       act_bits=0, memory_report=report, extra=pins)
    with open(report) as f:
        return model, exe, json.load(f)


# Which width each gradient depends on. Data gradients are exact down to
# bn1's backward (every mask and argmax above it is exact, bn2 keeps its
# input), so biases, bn2, conv5 and fc are exact; bn1's weight and conv1's
# weight read bn1's 8-bit codes, conv3's weight the 4-bit ReLU codes,
# conv2's and conv4's weights 2-bit codes.
GRADIENT_WIDTH = {"conv1.weight": 8, "bn1.weight": 8, "conv3.weight": 4,
                  "conv2.weight": 2, "conv4.weight": 2}
# Bars per width. Over 20 draws (weights and batch) every gradient was
# within 2.7e-6 of the reference (the exact ones within 1.5e-6), cosines
# 1 - 1e-8: no code flipped. A flip (float32 against float64 binning at a
# bin edge) moves a weight gradient by one element's share; the coded bars
# are test_compression.py's, measured with flips over 40 steps of these
# codes at each width (largest 1.1e-3 / 5.0e-3 / 1.3e-2 at 8 / 4 / 2 bits,
# the 2-bit one on this net's conv2 weight). The exact bar is 40x the worst
# float32 rounding seen; any code there would be off by 1e-3 or more (bn1
# at 4 bits instead of 8: 3.4e-2 on conv1's weight; the pooled output at
# 4 bits instead of 2: 0.16 on conv2's).
MAX_REFERENCE_ERROR = {0: 1e-4, 8: 5e-3, 4: 2e-2, 2: 5e-2}
MIN_REFERENCE_COSINE = {0: 0.9999999, 8: 0.99999, 4: 0.9998, 2: 0.999}
MAX_OFF_OVER_APPROXIMATION = 0.15


@pytest.mark.randomized
def test_gradients_match_float64_reference_per_tensor_widths(compiled,
                                                             tmp_path):
    """Every parameter's gradient is the reference's with the same width per
    tensor, at a bar for the width it depends on (exact where it reads no
    code); the loss within 1e-5 (the forward pass is exact); and the
    approximation is real: the reference's distance from the exact gradient
    is far larger than blpa's from the reference."""
    model, exe, _ = compiled
    rng = fresh_rng()
    x = rng.standard_normal((BATCH, 3, SIZE, SIZE)).astype(np.float32)
    y = rng.integers(0, 10, size=BATCH).astype(np.int64)
    loss, grads = tool.check_step(exe, x, y, str(tmp_path / "step"))
    ref_loss, ref = reference_step(model, x, y, 0, REFERENCE_WIDTHS)
    _, exact = reference_step(model, x, y, 0)
    assert abs(float(loss) - ref_loss) <= 1e-5 * ref_loss

    def width(key):
        return GRADIENT_WIDTH.get(key, 0)

    ratio = compare_with_reference(
        "mixed", grads, ref, exact,
        lambda key: MAX_REFERENCE_ERROR[width(key)],
        lambda key: MIN_REFERENCE_COSINE[width(key)])
    assert ratio <= MAX_OFF_OVER_APPROXIMATION, ratio


def packed_bytes(numel, bits):
    return -(-numel * bits // 8)


def test_report_lists_each_saved_tensor_with_its_bytes(compiled):
    """saved_tensors: the pinned tensors' codes at their widths, with the
    floats that decode them (inv_std: one per channel; a quantized tensor's
    (lo, step) per sample and channel), in bytes from the shapes; every
    other entry float32 at 4 bytes per element; in all the plan's saved
    activation bytes."""
    _, _, report = compiled
    full = BATCH * WIDTH * SIZE * SIZE  # conv1 and bn1
    half = full // 4                    # after the 2x2 pooling
    ranges = 2 * WIDTH * 4
    expected = {
        ("/bn1/BatchNormalization", "8"): packed_bytes(full, 8) + 4 * WIDTH,
        ("/MaxPool", "argmax"): packed_bytes(half, 2),
        ("/MaxPool", "2"): packed_bytes(half, 2) + ranges,
        ("/Relu_1", "4"): packed_bytes(half, 4) + ranges,
        ("/conv3/Conv", "2"): packed_bytes(half, 2) + ranges,
    }
    coded = {}
    for entry in report["saved_tensors"]:
        print(entry)
        if entry["choice"] == "float32":
            assert entry["bytes"] == 4 * int(np.prod(entry["shape"])), entry
        else:
            coded[(entry["node"], entry["choice"])] = entry["bytes"]
    assert coded == expected
    assert sum(e["bytes"] for e in report["saved_tensors"]) == \
        report["saved_activation_bytes"]
    # The exact tensors include the second batch norm's input and output.
    float32_nodes = {e["node"] for e in report["saved_tensors"]
                     if e["choice"] == "float32"}
    assert {"/conv4/Conv", "/bn2/BatchNormalization"} <= float32_nodes


def test_report_lists_a_recomputed_tensor_with_no_bytes(tmp_path):
    """A node pinned to recompute keeps nothing: its entry says recompute
    with 0 bytes (and predicts its copy's time), and what its copy reads is
    an entry of its own (conv2's output, exact at --act-bits 0)."""
    model = test_models.mixed_cnn(seed=0, image_size=SIZE)
    onnx_path = models.export(model, str(tmp_path / "model.onnx"))
    report_path = str(tmp_path / "memory.json")
    tool.compile(onnx_path, str(tmp_path / "step.mlir"), batch_size=BATCH,
                 act_bits=0, memory_report=report_path, emit="mlir",
                 extra=["--act-policy", "/Relu_1=recompute"])
    with open(report_path) as f:
        entries = json.load(f)["saved_tensors"]
    relu = [e for e in entries if e["node"] == "/Relu_1"]
    assert len(relu) == 1 and relu[0]["predicted_seconds"] > 0
    del relu[0]["predicted_seconds"]
    assert relu == [{"node": "/Relu_1", "op": "blpa.relu",
                     "shape": [BATCH, WIDTH, SIZE // 2, SIZE // 2],
                     "choice": "recompute", "bytes": 0,
                     "gradient_error": 0}]
    checkpoint = [e for e in entries if e["node"] == "/conv2/Conv"]
    assert [(e["choice"], e["bytes"]) for e in checkpoint] == \
        [("float32", 4 * BATCH * WIDTH * (SIZE // 2) ** 2)]


def report_of(onnx_path, tmp_path, act_bits, pins=(), **compile_args):
    report_path = str(tmp_path / "memory.json")
    extra = [a for pin in pins for a in ("--act-policy", pin)]
    tool.compile(onnx_path, str(tmp_path / "step.mlir"), act_bits=act_bits,
                 memory_report=report_path, emit="mlir", extra=extra,
                 **compile_args)
    with open(report_path) as f:
        return json.load(f)["saved_tensors"]


@pytest.mark.parametrize("name", ["mixed_cnn", "vit", "gpt"])
def test_a_pin_on_each_node_the_report_names_takes_effect(name, tmp_path):
    """Every node the memory report names for a coded tensor is a node a
    user (or the budget solver) can pin: at --act-bits 2, pinning each of
    them to 8 leaves no tensor coded narrower than 8 bits. (A GELU's codes
    of its input once named the input's producer but took the GELU's own
    width, so such a pin was silently ignored.)"""
    import torch
    torch.manual_seed(0)
    if name == "mixed_cnn":
        model, args = (test_models.mixed_cnn(seed=0, image_size=SIZE),
                       dict(batch_size=BATCH))
    elif name == "vit":
        model, args = (models.vision_transformer(
            image_size=16, layers=2, width=32, mlp_width=64), dict(
                batch_size=4))
    else:
        model, args = (models.gpt(vocab=61, context=12, layers=2, width=32),
                       dict(batch_size=4))
    onnx_path = models.export(model, str(tmp_path / "model.onnx"),
                              **({} if name == "mixed_cnn" else
                                 {"opset": 17}))
    coded = [e for e in report_of(onnx_path, tmp_path, 2, **args)
             if e["choice"] in ("8", "4", "2")]
    assert len(coded) >= 3
    pins = sorted({e["node"] + "=8" for e in coded})
    raised = report_of(onnx_path, tmp_path, 2, pins, **args)
    narrow = [(e["node"], e["op"], e["choice"]) for e in raised
              if e["choice"] in ("4", "2")]
    assert not narrow, narrow
    assert sum(e["choice"] == "8" for e in raised) >= len(coded)
