"""The method's rules under --act-bits, checked against the exact build on
fresh data: the last layer's input stays float32 whatever produced it (a
BatchNorm1d classifier head), and the gradient masks of ReLU6, HardSigmoid
and HardSwish are exact, as ReLU's is."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import fresh_rng
from blpa import models, tool


def compile_exact_and_4_bits(model, input_shape, batch, workdir):
    """The model compiled exact and at 4 bits; the 4-bit memory report."""
    onnx_path = models.export(model, str(workdir / "model.onnx"),
                              input_shape)
    report = str(workdir / "memory_4.json")
    exact = tool.compile(onnx_path, str(workdir / "exact"), batch_size=batch)
    four = tool.compile(onnx_path, str(workdir / "four"), batch_size=batch,
                        act_bits=4, memory_report=report)
    with open(report) as f:
        return exact, four, json.load(f)


class BatchNormHead(nn.Module):
    """Linear -> BatchNorm1d -> ReLU -> Linear: the classifier's input is
    the ReLU of a batch norm, which keeps 4-bit codes of its output."""

    def __init__(self, features=24, hidden=128, classes=10):
        super().__init__()
        torch.manual_seed(3)
        self.fc1 = nn.Linear(features, hidden)
        self.bn = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x):
        return self.fc2(F.relu(self.bn(self.fc1(x))))


@pytest.mark.randomized
def test_batch_norm_head_input_stays_float32(tmp_path):
    batch, features, hidden = 32, 24, 128
    exact, four, report = compile_exact_and_4_bits(
        BatchNormHead(features, hidden), (1, features), batch, tmp_path)
    # The head's input (batch x hidden floats, 4096 elements: not kept for
    # being small) is among the tensors kept in float32.
    head_input_bytes = batch * hidden * 4
    assert report["saved_float32_bytes"] >= head_input_bytes, report
    rng = fresh_rng()
    x = rng.standard_normal((batch, features)).astype(np.float32)
    y = rng.integers(0, 10, size=batch).astype(np.int64)
    exact_loss, exact_grads = tool.check_step(exact, x, y,
                                              str(tmp_path / "exact_run"))
    loss, grads = tool.check_step(four, x, y, str(tmp_path / "four_run"))
    assert loss.tobytes() == exact_loss.tobytes()
    # The classifier's gradients read only the exact forward values: equal
    # to float32 precision (a 4-bit input would be off by percents).
    for name in ("fc2.weight", "fc2.bias"):
        np.testing.assert_allclose(grads[name], exact_grads[name], rtol=1e-6,
                                   atol=1e-9, err_msg=name)
    # The batch norm still works from its codes, approximately.
    a, b = grads["bn.weight"].ravel(), exact_grads["bn.weight"].ravel()
    assert a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) > 0.9


# Each activation with the thresholds of its gradient's pieces.
ACTIVATIONS = {
    "relu6": (F.relu6, (0.0, 6.0)),
    "hardsigmoid": (F.hardsigmoid, (-3.0, 3.0)),
    "hardswish": (F.hardswish, (-3.0, 3.0)),
}
CHANNELS, SIZE = 16, 16  # one example: 4096 elements, not small


class ActivationOfBias(nn.Module):
    """act(x + p) into a classifier, p a parameter of one example's shape:
    with batch 1, p's gradient is the activation's gradient element by
    element, dy * act'(x + p), and dy (through the classifier's weights
    only) is the same in every build."""

    def __init__(self, act):
        super().__init__()
        torch.manual_seed(4)
        self.act = act
        self.p = nn.Parameter(0.2 * torch.rand(CHANNELS, SIZE, SIZE) - 0.1)
        self.fc = nn.Linear(CHANNELS * SIZE * SIZE, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.act(x + self.p), 1))


def near_thresholds(rng, thresholds):
    """One example whose inputs are half within 0.5 of a threshold (where a
    4-bit approximation, here about 0.8 a step, moves elements across it)
    and half spread over [-6, 6]."""
    shape = (1, CHANNELS, SIZE, SIZE)
    near = (rng.choice(thresholds, size=shape) +
            rng.uniform(-0.5, 0.5, size=shape))
    spread = rng.uniform(-6, 6, size=shape)
    return np.where(rng.random(shape) < 0.5, near, spread).astype(np.float32)


@pytest.mark.randomized
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_masks_exact_at_4_bits(name, tmp_path):
    act, thresholds = ACTIVATIONS[name]
    model = ActivationOfBias(act)
    p = model.p.detach().numpy().copy()
    exact, four, _ = compile_exact_and_4_bits(
        model, (1, CHANNELS, SIZE, SIZE), 1, tmp_path)
    rng = fresh_rng()
    x = near_thresholds(rng, thresholds)
    y = rng.integers(0, 10, size=1).astype(np.int64)
    exact_loss, exact_grads = tool.check_step(exact, x, y,
                                              str(tmp_path / "exact_run"))
    loss, grads = tool.check_step(four, x, y, str(tmp_path / "four_run"))
    assert loss.tobytes() == exact_loss.tobytes()
    want, got = exact_grads["p"], grads["p"]
    # The activation's input as the kernels see it (one float32 addition);
    # elements within 1e-5 of a threshold are left out, so that no rounding
    # anywhere can decide the check.
    z = (x[0] + p).astype(np.float32)
    clear = np.all([np.abs(z - t) >= 1e-5 for t in thresholds], axis=0)
    if name != "hardswish":
        # The slope is constant: masked and passed elements match exactly.
        np.testing.assert_array_equal(got[clear] == 0, want[clear] == 0)
        np.testing.assert_allclose(got[clear], want[clear], rtol=1e-6, atol=0)
        return
    # HardSwish: below -3 the gradient is 0, above 3 it is dy, in both
    # builds alike; inside, the slope (x / 3 + 1/2) comes from the
    # approximate values, so it is zero only where they reach -1.5 (0.41
    # away at most: a step spans at most 12.2 / 15).
    outside = clear & (np.abs(z) > 3)
    np.testing.assert_allclose(got[outside], want[outside], rtol=1e-6, atol=0)
    inside = clear & (np.abs(z) < 3) & (np.abs(z + 1.5) > 0.5)
    np.testing.assert_array_equal(got[inside] == 0, want[inside] == 0)
    # The slope's error over the whole gradient: 0.053 to 0.060 over 21
    # seeds (norm of the difference over the exact gradient's norm).
    error = np.linalg.norm(got - want) / np.linalg.norm(want)
    print("hardswish 4-bit: relative gradient error %.4f" % error)
    assert error < 0.12
