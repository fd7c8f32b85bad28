"""The executables' contract: determinism, inference, training on
Fashion-MNIST, --save, the memory report."""

import copy
import json
import os

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from conftest import FASHION_MNIST, draw_clear_of_ties, fresh_rng
from blpa import models, tool


@pytest.mark.randomized
def test_check_step_is_bitwise_deterministic(residual_cnn_exe, tmp_path):
    exe, _ = residual_cnn_exe
    rng = fresh_rng()
    x = rng.standard_normal((4, 3, 16, 16)).astype(np.float32)
    y = rng.integers(0, 10, size=4).astype(np.int64)
    loss1, grads1 = tool.check_step(exe, x, y, str(tmp_path / "a"))
    loss2, grads2 = tool.check_step(exe, x, y, str(tmp_path / "b"))
    assert loss1.tobytes() == loss2.tobytes()
    for name in grads1:
        assert grads1[name].tobytes() == grads2[name].tobytes(), name


def test_synthetic_training_is_reproducible(residual_cnn_exe, tmp_path):
    exe, _ = residual_cnn_exe
    runs = []
    for i in range(2):
        records, _ = tool.train(exe, str(tmp_path / ("%d.jsonl" % i)),
                                "--synthetic", "--steps", 5, "--lr", 0.05,
                                "--seed", 7)
        runs.append([r["loss"] for r in records if "loss" in r])
    assert len(runs[0]) == 5 and runs[0] == runs[1]
    assert runs[0][0] != runs[0][-1]


@pytest.mark.randomized
def test_infer_matches_pytorch_eval(tmp_path):
    model = models.example_cnn(seed=5)
    rng = fresh_rng()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    onnx_path = str(tmp_path / "eval.onnx")
    models.export(model, onnx_path, (1, 1, 28, 28), training=False)
    exe = tool.compile(onnx_path, str(tmp_path / "infer"), train=False,
                       batch_size=5)
    x = rng.standard_normal((5, 1, 28, 28)).astype(np.float32)
    (out,) = tool.infer(exe, [x], str(tmp_path / "dump"))
    ref = copy.deepcopy(model).double().eval()(
        torch.from_numpy(x).double()).detach().numpy()
    assert out.shape == ref.shape
    assert np.linalg.norm(out - ref) <= 1e-4 * np.linalg.norm(ref)


def test_trains_example_cnn_on_fashion_mnist(example_cnn_exe, tmp_path):
    """400 steps, not fewer: after 150 the evaluation-mode accuracy still
    swings with the batch norms' running statistics (0.52 to 0.74 over
    seeds and thread counts here, 0.434 on one AVX2 machine, and PyTorch
    itself 0.62 to 0.67), so a threshold near it depends on the trajectory
    one CPU's rounding produces. The bounds below sit well outside what was
    measured over --seed 0-11 x --threads 1/2 and over 8 other initial
    weights (example_cnn(seed=1..4) x --seed 0/1); --lr 0 fails all three
    (accuracy 0.09, loss ratio 1.01)."""
    exe, _, _ = example_cnn_exe
    records, stdout = tool.train(exe, str(tmp_path / "log.jsonl"), "--data",
                                 FASHION_MNIST, "--steps", 400, "--lr", 0.05,
                                 "--eval-batches", 50)
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 400
    assert np.all(np.isfinite(losses))
    fifth = len(losses) // 5
    first, last = np.mean(losses[:fifth]), np.mean(losses[-fifth:])
    # Measured: last / first 0.410 to 0.517; last 0.543 to 0.628 (the
    # initial loss is ~ln 10 = 2.3).
    assert last < 0.65 * first, (first, last)
    assert last < 0.85, (first, last)
    accuracy = [r["test_accuracy"] for r in records if "test_accuracy" in r]
    # Measured on 1600 test images: 0.678 to 0.810 (chance is 0.1).
    assert accuracy and accuracy[0] > 0.55, accuracy
    assert "test accuracy:" in stdout


@pytest.mark.randomized
def test_save_writes_the_trained_weights(example_cnn_exe, tmp_path):
    exe, onnx_path, _ = example_cnn_exe
    saved = str(tmp_path / "trained.onnx")
    tool.train(exe, str(tmp_path / "log.jsonl"), "--synthetic", "--steps", 3,
               "--lr", 0.05, "--save", saved)
    onnx.checker.check_model(onnx.load(saved))
    before = {t.name: numpy_helper.to_array(t)
              for t in onnx.load(onnx_path).graph.initializer}
    after = {t.name: numpy_helper.to_array(t)
             for t in onnx.load(saved).graph.initializer}
    assert before.keys() == after.keys()
    assert not np.array_equal(before["conv1.weight"], after["conv1.weight"])
    assert not np.array_equal(before["bn1.running_mean"],
                              after["bn1.running_mean"])
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]

    # The saved model resumes: a check-step from it equals one from the
    # original executable given those weights.
    rng = fresh_rng()
    x = rng.standard_normal((32, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, size=32).astype(np.int64)
    resumed = tool.compile(saved, str(tmp_path / "resumed"), batch_size=32)
    loss_a, _ = tool.check_step(resumed, x, y, str(tmp_path / "a"))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    tool.run([exe, "--check-step", "--inputs", tmp_path / "x.npy",
              "--labels", tmp_path / "y.npy", "--weights", saved, "--dump",
              tmp_path / "b"])
    assert loss_a.tobytes() == np.load(tmp_path / "b" / "loss.npy").tobytes()


def test_memory_report(example_cnn_exe):
    _, _, report = example_cnn_exe
    with open(report) as f:
        data = json.load(f)
    assert 0 < data["lower_bound_bytes"] <= data["peak_bytes"]
    # The planner may not waste more than alignment padding on this chain.
    assert data["peak_bytes"] <= 1.05 * data["lower_bound_bytes"]
    assert 0 < data["saved_activation_bytes"] <= data["peak_bytes"]


def test_resnet164_with_arena_over_256_mib_trains(tmp_path):
    """The paper's ResNet-164; at batch 32 its arena (~400 MB) is past the
    range of 32-bit and 29-bit offsets."""
    onnx_path = str(tmp_path / "resnet164.onnx")
    models.export(models.preact_resnet(depth=164), onnx_path, (1, 3, 32, 32))
    report = str(tmp_path / "memory.json")
    exe = tool.compile(onnx_path, str(tmp_path / "exe"), batch_size=32,
                       memory_report=report)
    with open(report) as f:
        assert json.load(f)["peak_bytes"] > 2 ** 28
    records, _ = tool.train(exe, str(tmp_path / "log.jsonl"), "--synthetic",
                            "--steps", 2, "--lr", 0.01)
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 2 and all(np.isfinite(losses))


def write_idx(directory, prefix, images, labels):
    """MNIST-format IDX files (uncompressed), as the driver reads them."""
    n = len(labels)
    with open(os.path.join(directory, prefix + "-images-idx3-ubyte"),
              "wb") as f:
        f.write(np.array([0x803, n, 28, 28], ">i4").tobytes())
        f.write(images.astype(np.uint8).tobytes())
    with open(os.path.join(directory, prefix + "-labels-idx1-ubyte"),
              "wb") as f:
        f.write(np.array([0x801, n], ">i4").tobytes())
        f.write(labels.astype(np.uint8).tobytes())


def linear_classifier():
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))


@pytest.mark.randomized
@pytest.mark.parametrize("build", [
    linear_classifier,
    lambda: models.residual_cnn(seed=2, in_channels=1, image_size=28)],
    ids=["linear", "residual_cnn"])
def test_sgd_with_momentum_and_weight_decay_matches_torch(build, tmp_path):
    """Three steps on a data set of exactly one batch (so every step sees
    the same examples; the mean loss and batch statistics ignore their
    order), compared with torch.optim.SGD on the same model in float64: the
    parameters, and (with batch norms) the running statistics, which must
    follow PyTorch's update (momentum 0.1, unbiased variance)."""
    batch = 8
    model = build()

    def reference_steps(data):
        """torch.optim.SGD's three steps in float64 on (images, labels)."""
        images, labels = data
        reference = copy.deepcopy(model).double().train()
        opt = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9,
                              weight_decay=0.01)
        x = torch.from_numpy((images / 255.0 - 0.2860) / 0.3530)
        x = x.reshape(batch, 1, 28, 28)
        with torch.enable_grad():
            for _ in range(3):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(
                    reference(x), torch.from_numpy(labels)).backward()
                opt.step()
        return reference

    # Every step's forward pass clear of ReLU and max-pool ties.
    images, labels = draw_clear_of_ties(
        fresh_rng(), lambda rng: (rng.integers(0, 256, size=(batch, 28, 28)),
                                  rng.integers(0, 10, size=batch)),
        reference_steps)
    write_idx(str(tmp_path), "train", images, labels)
    write_idx(str(tmp_path), "t10k", images, labels)
    onnx_path = str(tmp_path / "model.onnx")
    models.export(model, onnx_path, (1, 1, 28, 28))
    exe = tool.compile(onnx_path, str(tmp_path / "exe"), batch_size=batch)
    saved = str(tmp_path / "trained.onnx")
    tool.train(exe, str(tmp_path / "log.jsonl"), "--data", tmp_path,
               "--steps", 3, "--lr", 0.1, "--momentum", 0.9,
               "--weight-decay", 0.01, "--normalize", "0.2860:0.3530",
               "--save", saved)

    reference = reference_steps((images, labels))
    trained = {t.name: numpy_helper.to_array(t)
               for t in onnx.load(saved).graph.initializer}
    expected = dict(reference.named_parameters())
    expected.update((name, b) for name, b in reference.named_buffers()
                    if "running" in name)
    for name, tensor in expected.items():
        ref = tensor.detach().numpy()
        got = trained[name]
        assert np.linalg.norm(got - ref) <= 1e-5 * np.linalg.norm(ref), name


def runtime_bounds_model(path):
    """Clip with min and max as graph inputs (a scalar and a 1-element
    tensor), Clip with a constant min and a run-time max, and a constant
    Pad whose value is a graph input (ONNX's test_clip / test_constant_pad
    form)."""
    from onnx import TensorProto, helper
    float_input = lambda name, shape: helper.make_tensor_value_info(
        name, TensorProto.FLOAT, shape)
    nodes = [
        helper.make_node("Clip", ["x", "lo", "hi"], ["c"]),
        helper.make_node("Clip", ["x", "zero", "hi"], ["d"]),
        helper.make_node("Pad", ["c", "pads", "value"], ["p"],
                         mode="constant"),
    ]
    graph = helper.make_graph(
        nodes, "runtime_bounds",
        [float_input("x", [2, 3, 4, 5]), float_input("lo", []),
         float_input("hi", [1]), float_input("value", [])],
        [float_input("c", [2, 3, 4, 5]), float_input("d", [2, 3, 4, 5]),
         float_input("p", [2, 3, 7, 6])],
        [numpy_helper.from_array(np.array([0, 0, 2, 1, 0, 0, 1, 0],
                                          dtype=np.int64), "pads"),
         numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero")])
    model = helper.make_model(graph,
                              opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, path)


@pytest.mark.randomized
def test_infer_reads_clip_bounds_and_pad_value_at_run_time(tmp_path):
    """One executable, two sets of bounds and padding values fed as
    --inputs: each run follows numpy."""
    onnx_path = str(tmp_path / "bounds.onnx")
    runtime_bounds_model(onnx_path)
    exe = tool.compile(onnx_path, str(tmp_path / "bounds"), train=False)
    rng = fresh_rng()
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    for k, (lo, hi, value) in enumerate([(-0.5, 0.75, 2.5),
                                         (0.25, 1.5, -1.0)]):
        lo_in = np.array(lo, dtype=np.float32)
        hi_in = np.array([hi], dtype=np.float32)
        value_in = np.array(value, dtype=np.float32)
        c, d, p = tool.infer(exe, [x, lo_in, hi_in, value_in],
                             str(tmp_path / ("dump%d" % k)))
        want = np.clip(x, lo, hi)
        assert np.array_equal(c, want)
        assert np.array_equal(d, np.clip(x, 0.0, hi))
        assert np.array_equal(p, np.pad(want, ((0, 0), (0, 0), (2, 1), (1, 0)),
                                        constant_values=value))


def test_train_refuses_bounds_given_at_run_time(tmp_path):
    onnx_path = str(tmp_path / "bounds.onnx")
    runtime_bounds_model(onnx_path)
    with pytest.raises(tool.ToolError) as error:
        tool.compile(onnx_path, str(tmp_path / "train"))
    lines = error.value.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "graph input 'lo' is a parameter read at run time" in lines[0]
    assert "--infer" in lines[0]
