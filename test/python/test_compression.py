"""Activation compression (--act-bits 8/4/2): from the same weights and batch
the forward pass is exact (the loss is bitwise the exact one), the
gradients stay close to the exact ones, and the saved activations shrink."""

import json

import numpy as np
import pytest

from conftest import fresh_rng
from blpa import models, tool

BATCH = 8
# One bottleneck block per stage (pre-activation ResNet-11), and the same
# with channel counts that are not multiples of 8 (odd packed tails).
NETS = {
    "preact11": {},
    "preact11_odd_channels": {"widths": ((6, 13), (11, 21), (15, 27))},
}
# An independent implementation of the method gives about 0.999 / 0.996 /
# 0.96 at 8 / 4 / 2 bits on this net. 8 and 4 bits are the acceptance
# bounds; 2 bits only has to stay far from random (cosine 0).
MIN_COSINE = {8: 0.998, 4: 0.99, 2: 0.9}


@pytest.fixture(scope="module", params=sorted(NETS))
def compiled(request, tmp_path_factory):
    """The net compiled exact and at 8, 4 and 2 bits, with memory reports."""
    workdir = tmp_path_factory.mktemp(request.param)
    model = models.preact_resnet(depth=11, image_size=16, seed=5,
                                 **NETS[request.param])
    onnx_path = models.export(model, str(workdir / "model.onnx"))
    exes, reports = {}, {}
    for bits in (0, 8, 4, 2):
        reports[bits] = str(workdir / ("memory_%d.json" % bits))
        exes[bits] = tool.compile(onnx_path, str(workdir / ("exe_%d" % bits)),
                                  batch_size=BATCH, act_bits=bits,
                                  memory_report=reports[bits])
    return request.param, exes, reports, onnx_path


def flatten(grads):
    return np.concatenate([grads[name].ravel().astype(np.float64)
                           for name in sorted(grads)])


def cosine(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.randomized
def test_forward_exact_and_gradients_close(compiled, tmp_path):
    name, exes, _, _ = compiled
    rng = fresh_rng()
    x = rng.standard_normal((BATCH, 3, 16, 16)).astype(np.float32)
    y = rng.integers(0, 10, size=BATCH).astype(np.int64)
    exact_loss, exact_grads = tool.check_step(exes[0], x, y,
                                              str(tmp_path / "exact"))
    exact = flatten(exact_grads)
    for bits in (8, 4, 2):
        loss, grads = tool.check_step(exes[bits], x, y,
                                      str(tmp_path / str(bits)))
        # The forward pass is exact: the loss is the exact one, bit for bit.
        assert loss.tobytes() == exact_loss.tobytes(), (bits, loss,
                                                        exact_loss)
        assert set(grads) == set(exact_grads)
        similarity = cosine(flatten(grads), exact)
        print("%s %d-bit: gradient cosine similarity %.5f" %
              (name, bits, similarity))
        assert similarity >= MIN_COSINE[bits], (bits, similarity)
        # The last batch norm's gradient comes through its ReLU from the
        # classifier, whose input gradient is exact: with the ReLU mask
        # recovered exactly from the codes its bias gradient (the sum of
        # the masked gradient) is the exact one. One wrong mask element
        # would show here.
        np.testing.assert_allclose(grads["bn.bias"], exact_grads["bn.bias"],
                                   rtol=1e-6, atol=1e-9)


@pytest.mark.randomized
def test_compressed_step_is_bitwise_deterministic(compiled, tmp_path):
    """Encoding and decoding are deterministic: the same 4-bit step twice
    gives the same loss and gradients, bit for bit."""
    _, exes, _, _ = compiled
    rng = fresh_rng()
    x = rng.standard_normal((BATCH, 3, 16, 16)).astype(np.float32)
    y = rng.integers(0, 10, size=BATCH).astype(np.int64)
    runs = [tool.check_step(exes[4], x, y, str(tmp_path / str(i)))
            for i in range(2)]
    assert runs[0][0].tobytes() == runs[1][0].tobytes()
    assert all(runs[0][1][name].tobytes() == runs[1][1][name].tobytes()
               for name in runs[0][1])


@pytest.mark.randomized
def test_naive_baseline_quantizes_the_forward_pass(compiled, tmp_path):
    """--act-quant-naive (the paper's comparison) changes the forward pass
    itself, so its loss differs from the exact one."""
    _, exes, _, onnx_path = compiled
    naive = tool.compile(onnx_path, str(tmp_path / "naive_exe"),
                         batch_size=BATCH, act_bits=4,
                         extra=["--act-quant-naive"])
    rng = fresh_rng()
    x = rng.standard_normal((BATCH, 3, 16, 16)).astype(np.float32)
    y = rng.integers(0, 10, size=BATCH).astype(np.int64)
    exact_loss, _ = tool.check_step(exes[0], x, y, str(tmp_path / "exact"))
    naive_loss, grads = tool.check_step(naive, x, y, str(tmp_path / "naive"))
    assert naive_loss.tobytes() != exact_loss.tobytes()
    assert abs(float(naive_loss) - float(exact_loss)) < 0.5 * float(exact_loss)
    assert all(np.isfinite(g).all() for g in grads.values())


def read_report(path):
    with open(path) as f:
        return json.load(f)


def test_saved_activation_bytes_shrink(compiled):
    """Only packed codes and per-channel floats are kept: at most 0.27 of
    the exact saved bytes at 8 bits, 0.14 at 4 bits."""
    name, _, reports, _ = compiled
    exact = read_report(reports[0])
    assert exact["saved_packed_bytes"] == 0
    for bits, limit in ((8, 0.27), (4, 0.14), (2, 0.14)):
        report = read_report(reports[bits])
        saved = report["saved_activation_bytes"]
        assert saved == (report["saved_packed_bytes"] +
                         report["saved_per_channel_bytes"] +
                         report["saved_float32_bytes"])
        ratio = saved / exact["saved_activation_bytes"]
        print("%s %d-bit: saved activations %.4f of exact, peak %.4f" %
              (name, bits, ratio, report["peak_bytes"] / exact["peak_bytes"]))
        assert ratio <= limit, (bits, ratio)
        assert report["peak_bytes"] < exact["peak_bytes"]


@pytest.fixture(scope="module")
def resnet164(tmp_path_factory):
    """The paper's ResNet-164 (CIFAR-sized input) as ONNX."""
    workdir = tmp_path_factory.mktemp("resnet164")
    return models.export(models.preact_resnet(depth=164),
                         str(workdir / "resnet164.onnx"))


def test_resnet164_peak_at_4_bits(resnet164, tmp_path):
    """The planned arena of ResNet-164 (batch 32) at 4 bits is at most 0.25
    of the exact one."""
    peaks = {}
    for bits in (0, 4):
        report = str(tmp_path / ("memory_%d.json" % bits))
        tool.compile(resnet164, str(tmp_path / ("step_%d.mlir" % bits)),
                     batch_size=32, act_bits=bits, memory_report=report,
                     emit="mlir")
        peaks[bits] = read_report(report)["peak_bytes"]
    print("ResNet-164 batch 32: peak %d -> %d bytes (%.4f)" %
          (peaks[0], peaks[4], peaks[4] / peaks[0]))
    assert peaks[4] <= 0.25 * peaks[0]


# An independent implementation of the method gives about 0.996 / 0.988 /
# 0.88 on ResNet-164; these bounds only catch a broken deep net.
MIN_COSINE_RESNET164 = {8: 0.99, 4: 0.97, 2: 0.7}


@pytest.mark.randomized
def test_resnet164_gradients_close(resnet164, tmp_path):
    """Approximation errors add up over 164 layers: the similarity is
    printed for each width, and the forward pass is still exact."""
    rng = fresh_rng()
    x = rng.standard_normal((BATCH, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, size=BATCH).astype(np.int64)
    exact_loss, exact = None, None
    for bits in (0, 8, 4, 2):
        exe = tool.compile(resnet164, str(tmp_path / ("exe_%d" % bits)),
                           batch_size=BATCH, act_bits=bits)
        loss, grads = tool.check_step(exe, x, y, str(tmp_path / str(bits)))
        if bits == 0:
            exact_loss, exact = loss, flatten(grads)
            continue
        assert loss.tobytes() == exact_loss.tobytes(), (bits, loss)
        similarity = cosine(flatten(grads), exact)
        print("ResNet-164 %d-bit: gradient cosine similarity %.5f" %
              (bits, similarity))
        assert similarity >= MIN_COSINE_RESNET164[bits], (bits, similarity)


FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def test_trains_on_fashion_mnist_at_4_bits_like_exact(tmp_path):
    """A narrow pre-activation ResNet-11 trained for 300 steps on
    Fashion-MNIST from the same weights and data order, exact and at 4 bits.
    Measured over --seed 0-7 x --threads 1/2 (with an earlier encoder
    whose codes differed only by float rounding at bin edges): last-fifth /
    first-fifth mean loss 0.42 to 0.53 for both; 4-bit last fifth / exact
    last fifth 0.874 to 1.043 (1.071 for this seed with the final encoder).
    Evaluation accuracy after 300 steps swings from 0.12 to 0.75 with the
    batch norms' running statistics even for exact training, so it is not
    compared."""
    model = models.preact_resnet(depth=11, widths=((8, 16), (16, 32),
                                                   (32, 64)),
                                 in_channels=1, image_size=28, seed=0)
    onnx_path = models.export(model, str(tmp_path / "model.onnx"))
    tails = {}
    for bits in (0, 4):
        exe = tool.compile(onnx_path, str(tmp_path / ("exe_%d" % bits)),
                           batch_size=32, act_bits=bits)
        records, _ = tool.train(exe, str(tmp_path / ("log_%d.jsonl" % bits)),
                                "--data", FASHION_MNIST, "--steps", 300,
                                "--lr", 0.05, "--eval-batches", 5,
                                "--seed", 3)
        losses = tool.losses(records)
        assert len(losses) == 300 and np.all(np.isfinite(losses))
        fifth = len(losses) // 5
        first, tails[bits] = np.mean(losses[:fifth]), np.mean(losses[-fifth:])
        print("%d-bit: mean loss first fifth %.3f, last fifth %.3f" %
              (bits, first, tails[bits]))
        assert tails[bits] < 0.62 * first, (bits, first, tails[bits])
    assert tails[4] < 1.15 * tails[0], tails
