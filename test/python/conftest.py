"""Shared fixtures: paths, compiled executables (once per session), and the
float64 PyTorch reference used by the numeric tests."""

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

# Every model the suite compiles has its memory plan checked a second time,
# independently of the planner (--blpa-verify-memory-plan).
os.environ["BLPA_VERIFY_MEMORY_PLAN"] = "1"

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
