"""Shared fixtures: paths, compiled executables (once per session), and the
float64 PyTorch reference used by the numeric tests."""

import copy
import json
import os
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "python"))

from blpa import models, tool  # noqa: E402

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "randomized: draws fresh random data; run 20x by scripts/test-randomized")


def pytest_addoption(parser):
    parser.addoption(
        "--draws", type=int, default=1, metavar="N",
        help="run each randomized test N times in this session (fresh draws "
             "each time; fixtures, e.g. compiled executables, are shared, so "
             "draws made inside a module fixture are made once)")


def pytest_generate_tests(metafunc):
    """With --draws N, a randomized test is parametrized N times over a
    `draw` index (test ids end in [draw3] etc.), as pytest-repeat does."""
    draws = metafunc.config.getoption("draws")
    if draws > 1 and metafunc.definition.get_closest_marker("randomized"):
        metafunc.fixturenames.append("_draw")
        metafunc.parametrize("_draw", range(draws),
                             ids=lambda k: "draw%d" % k)


@pytest.fixture(scope="session", autouse=True)
def blpa_opt_exists():
    """Every test needs the compiler; its absence is a failure, not a
    skip."""
    assert os.access(tool.blpa_opt_path(), os.X_OK), (
        "blpa-opt not found at %s; build first (scripts/build)" %
        tool.blpa_opt_path())


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("blpa")


# BLPA_TEST_SEEDS="S1 S2 ..." replays a failure: the seeds its fresh_rng()
# calls printed, given to the same calls in the same order.
_REPLAYED_SEEDS = [int(s) for s in os.environ.get(
    "BLPA_TEST_SEEDS", "").replace(",", " ").split()]


def fresh_rng():
    """A generator seeded from the OS, its seed printed so that a failure
    can be reproduced (the next of BLPA_TEST_SEEDS when that is set)."""
    if _REPLAYED_SEEDS:
        seed = _REPLAYED_SEEDS.pop(0)
    else:
        seed = int.from_bytes(os.urandom(4), "little")
    print("numpy seed:", seed)
    return np.random.default_rng(seed)


# How far (relative to the tensor's RMS) a float64 input must stay from a
# kink (a ReLU's 0, a clip's bounds, a max-pooling runner-up) for every
# float32 implementation to take the same branch: float32 errors of these
# tests' layers are about 1e-6 of the RMS, so one flipped ReLU mask moves
# a gradient by a few percent, 100x the bar of assert_gradients_match.
TIE_MARGIN = 1e-5


def _kinks(func, args, kwargs):
    """The points where `func`'s derivative jumps, for the elementwise
    functions the tests use, or None."""
    def bounds(input, min=None, max=None, *_, **__):
        return [b for b in (min, max) if isinstance(b, (int, float))]

    def hardtanh(input, min_val=-1.0, max_val=1.0, *_, **__):
        return [min_val, max_val]

    fixed = {F.relu: [0.0], torch.relu: [0.0], torch.relu_: [0.0],
             torch.Tensor.relu: [0.0], torch.Tensor.relu_: [0.0],
             F.relu6: [0.0, 6.0], F.hardswish: [-3.0, 3.0],
             F.hardsigmoid: [-3.0, 3.0]}
    if func in fixed:
        return fixed[func]
    if func in (torch.clamp, torch.clip, torch.Tensor.clamp,
                torch.Tensor.clip):
        return bounds(*args, **kwargs)
    if func is F.hardtanh:
        return hardtanh(*args, **kwargs)
    return None


def _pool_windows(output, input, kernel_size, stride=None, padding=0,
                  dilation=1, ceil_mode=False, return_indices=False):
    """`input`'s max-pooling windows, [..., output positions..., window],
    -inf where a window covers padding or runs past the end."""
    if isinstance(output, tuple):
        output = output[0]
    rank = input.dim() - 2
    spread = lambda v: [v] * rank if isinstance(v, int) else list(v)
    kernel, pads, dil = spread(kernel_size), spread(padding), spread(dilation)
    strides = spread(stride) if stride else kernel
    pad_spec = []
    for i in reversed(range(rank)):
        span = (output.shape[2 + i] - 1) * strides[i] + dil[i] * (
            kernel[i] - 1) + 1
        pad_spec += [pads[i], max(0, span - input.shape[2 + i] - pads[i])]
    windows = F.pad(input, pad_spec, value=-float("inf"))
    for i in range(rank):
        windows = windows.unfold(2 + i, dil[i] * (kernel[i] - 1) + 1,
                                 strides[i])[..., ::dil[i]]
    return windows.flatten(-rank)


class _Margins(torch.overrides.TorchFunctionMode):
    """Records the smallest relative distance to a kink or to a pooling
    runner-up of the forward run under it."""

    def __init__(self):
        super().__init__()
        self.smallest = float("inf")

    def note(self, distances, input):
        # Values exactly at a kink (padding's zeros, a ReLU's zeros) or
        # exactly tied (copies) are computed alike by every implementation.
        distances = distances[distances > 0]
        if distances.numel():
            scale = input.detach().pow(2).mean().sqrt()
            self.smallest = min(self.smallest,
                                float(distances.min() / scale))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        output = func(*args, **kwargs)
        kinks = _kinks(func, args, kwargs)
        if kinks:
            x = args[0].detach()
            self.note(torch.stack([(x - k).abs() for k in kinks]).min(0)[0],
                      x)
        pools = (F.max_pool1d, F.max_pool2d, F.max_pool3d)
        if func in pools or func is F.adaptive_max_pool2d:
            x = args[0].detach()
            if func in pools:
                windows = _pool_windows(output, *args, **kwargs)
            else:  # the one adaptive pooling the tests use: global
                assert tuple(output.shape[2:]) == (1, 1), output.shape
                windows = x.flatten(2)
            top = windows.topk(2, dim=-1)[0]
            gaps = top[..., 0] - top[..., 1]
            self.note(gaps[torch.isfinite(gaps)], x)
        return output


def draw_clear_of_ties(rng, draw, forward):
    """`draw(rng)`, drawn again until `forward` (a float64 forward pass of
    the reference on what was drawn) keeps every ReLU and clip input and
    every max-pooling winner TIE_MARGIN of the RMS away from its kink or
    runner-up: there float32 takes float64's branch, so a flipped mask
    cannot fail a gradient check (docs/testing.md). PyTorch's float32
    takes another branch than float64 on 2 in 300 draws of the residual
    CNN, ours on one in about 3000 (and then misses the bar 1000-fold)."""
    # The more kinks a forward has, the more draws it takes: the SGD test's
    # three steps of a residual CNN at batch 8 keep 1 draw in 22 (at most
    # 64 draws in 20 runs).
    for _ in range(1000):
        drawn = draw(rng)
        margins = _Margins()
        with torch.no_grad(), margins:
            forward(drawn)
        if margins.smallest >= TIE_MARGIN:
            return drawn
        print("redrawn: an input %.1e of the RMS from a kink" %
              margins.smallest)
    raise AssertionError("1000 draws all came within %g of a kink" %
                         TIE_MARGIN)


def random_batch(rng, shape, classes=10):
    """Standard normal float32 inputs [shape] and labels in [0, classes)."""
    x = rng.standard_normal(shape).astype(np.float32)
    y = rng.integers(0, classes, size=shape[0]).astype(np.int64)
    return x, y


def batch_clear_of_ties(rng, model, shape, classes=10):
    """random_batch, drawn clear of ties of `model` in float64, training
    mode."""
    reference = copy.deepcopy(model).double().train()
    return draw_clear_of_ties(
        rng, lambda rng: random_batch(rng, shape, classes),
        lambda xy: reference(torch.from_numpy(xy[0]).double()))


def torch_reference(model, x, y):
    """Loss and parameter gradients of `model` in float64, training mode,
    mean softmax cross-entropy: what blpa's --check-step must reproduce."""
    reference = model.double().train()
    reference.zero_grad()
    loss = F.cross_entropy(reference(torch.from_numpy(x).double()),
                           torch.from_numpy(y))
    loss.backward()
    grads = {name: p.grad.numpy().copy()
             for name, p in reference.named_parameters()}
    return loss.item(), grads


def assert_gradients_match(loss, grads, ref_loss, ref_grads, rtol=1e-4):
    """Loss and every gradient within `rtol` relative (norm of difference
    over norm of reference); a gradient whose reference is ~0 (a bias before
    batch norm) is compared with 1e-3 of the whole gradient's norm."""
    assert abs(float(loss) - ref_loss) <= rtol * abs(ref_loss), (
        loss, ref_loss)
    assert set(grads) == set(ref_grads), (sorted(grads), sorted(ref_grads))
    total = np.sqrt(sum(np.sum(g ** 2) for g in ref_grads.values()))
    for name, ref in ref_grads.items():
        diff = np.linalg.norm(grads[name].astype(np.float64) - ref)
        norm = np.linalg.norm(ref)
        if norm > 1e-6 * total:
            assert diff <= rtol * norm, (name, diff / norm)
        else:
            assert diff <= 1e-3 * total, (name, diff / total)


def gradient_error(grad, ref, total, floor):
    """||grad - ref|| over ||ref||, or over floor * total when ref is
    smaller than that (total: the norm of all the reference's gradients;
    a gradient near 0, such as a conv bias before a batch norm, or one a
    tiny share of the whole, has no meaningful relative error); and the
    cosine of the two (1 for such a small gradient)."""
    grad, ref = grad.astype(np.float64).ravel(), ref.ravel()
    diff = np.linalg.norm(grad - ref)
    norm = np.linalg.norm(ref)
    if norm <= floor * total:
        return diff / (floor * total), 1.0
    return diff / norm, float(grad @ ref / (np.linalg.norm(grad) * norm))


def compare_with_reference(label, grads, ref, exact, max_error, min_cosine):
    """Checks blpa's gradients (`grads`, by dump name) against the float64
    reference's (`ref`, by parameter name) one tensor at a time, at the
    bars max_error(key) and min_cosine(key) on gradient_error's figures
    (printed), and returns how far blpa is from the reference against how
    far the reference is from the exact gradients (`exact`) over all of
    them: |blpa - reference| / |reference - exact|."""
    assert set(grads) == {tool.dump_name(k) for k in ref}
    total = np.sqrt(sum(np.sum(g ** 2) for g in ref.values()))
    blpa_off = approximation = 0.0
    for key, want in ref.items():
        got = grads[tool.dump_name(key)]
        # No gradient of the nets compared is under 1e-6 of the whole.
        error, similarity = gradient_error(got, want, total, 1e-6)
        print("%s %-26s error %.2e cosine %.8f" %
              (label, key, error, similarity))
        assert error <= max_error(key), (label, key, error)
        assert similarity >= min_cosine(key), (label, key, similarity)
        blpa_off += np.sum((got.astype(np.float64) - want) ** 2)
        approximation += np.sum((want - exact[key]) ** 2)
    ratio = np.sqrt(blpa_off / approximation)
    print("%s: |blpa - reference| / |reference - exact| = %.2e" %
          (label, ratio))
    return ratio


@pytest.fixture(scope="session")
def residual_cnn_exe(workdir):
    """The gradient-check model exported in training mode with a symbolic
    batch, compiled for batch 4; with the torch model it came from."""
    model = models.residual_cnn(seed=1)
    onnx_path = str(workdir / "residual_cnn.onnx")
    models.export(model, onnx_path, (1, 3, 16, 16))
    exe = tool.compile(onnx_path, str(workdir / "residual_cnn"),
                       batch_size=4)
    return exe, model


@pytest.fixture(scope="session")
def example_cnn_exe(workdir):
    onnx_path = str(workdir / "example_cnn.onnx")
    models.export(models.example_cnn(), onnx_path, (1, 1, 28, 28))
    report = str(workdir / "example_cnn_memory.json")
    exe = tool.compile(onnx_path, str(workdir / "example_cnn"),
                       batch_size=32, memory_report=report)
    return exe, onnx_path, report


def compare_bit_widths(onnx_path, x, y, tmp_path, bit_widths=(8, 4, 2)):
    """--check-step of the exact build and of each of `bit_widths`, same
    weights and batch: per width, (loss, saved activation bytes, relative
    error and cosine of the whole gradient against exact); width 0 first."""
    results = {}
    for bits in (0,) + tuple(bit_widths):
        report = str(tmp_path / ("memory%d.json" % bits))
        exe = tool.compile(onnx_path, str(tmp_path / ("exe%d" % bits)),
                           batch_size=x.shape[0], act_bits=bits,
                           memory_report=report)
        with open(report) as f:
            saved = json.load(f)["saved_activation_bytes"]
        loss, grads = tool.check_step(exe, x, y,
                                      str(tmp_path / ("dump%d" % bits)))
        flat = np.concatenate([g.ravel() for _, g in sorted(grads.items())])
        results[bits] = (loss, saved, flat)
    exact = results[0][2].astype(np.float64)
    return {bits: (loss, saved) + gradient_error(flat, exact, 1.0, 0.0)
            for bits, (loss, saved, flat) in results.items()}


# Whole-gradient cosine against exact, at least, per model and width. The
# smallest over 20 draws each (docs/testing.md): encoder layers 0.999998 at
# 8 bits, 0.9994 at 4, 0.984 at 2; the ViT 0.99995, 0.989 and 0.688 (its
# token tensors take per-position ranges from the generic quantizer, which
# 2 bits serve poorly).
# The GPT of test_gpt.py (context 32, width 64): 0.999992, 0.9977 and
# 0.942.
MIN_COSINE = {"encoder": {8: 0.9999, 4: 0.998, 2: 0.95},
              "vit": {8: 0.9995, 4: 0.95, 2: 0.4},
              "gpt": {8: 0.9999, 4: 0.99, 2: 0.85}}


def assert_compressed_like_exact(name, model, results):
    """The forward pass stays exact: the loss at every width is the exact
    build's bit for bit. Codes are kept (fewer saved bytes at each
    narrower width; how few is bench/transformer.py's business), and the
    gradient's cosine clears the model's MIN_COSINE."""
    loss0, saved0 = results[0][:2]
    for bits in sorted(results, reverse=True)[:-1]:
        loss, saved, error, cosine = results[bits]
        print("%s %d-bit: saved %d of %d bytes (%.3f), relative gradient "
              "error %.4f, cosine %.6f" % (name, bits, saved, saved0,
                                           saved / saved0, error, cosine))
        assert np.float32(loss) == np.float32(loss0), (bits, loss, loss0)
        assert cosine >= MIN_COSINE[model][bits], (bits, cosine)
    assert results[2][1] < results[4][1] < results[8][1] < saved0
