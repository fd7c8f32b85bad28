"""The torchvision CNNs a user tries first (issue 7), at 64x64 and batch 4,
exported in training mode: one --check-step against PyTorch autograd, then
20 training steps exact and at 4 bits, and --save, whose model our --infer
executable runs as onnxruntime and PyTorch do.

Deep nets at batch 4 are ill-conditioned and float32 itself strays from
float64, so a parameter's gradient passes when its error against float64
is at most twice PyTorch's own float32 error on the same step, or 1e-3
where that is larger. That bar does not hold tensor by tensor: any
float32 implementation whose rounding differs from PyTorch's flips a
discrete choice now and then at a near-tie (a ReLU mask where a
pre-activation is within rounding of 0, a max-pooling winner), which moves
the gradients of the tensors next to it, and on ill-conditioned layers many
tensors upstream, by up to a few percent where PyTorch's float32 happens
not to flip. Measured over about 45 draws (3 to 12 seeds per model): the
largest tensor's ratio to the bar was 7.0 (resnet50, layer4 at 16 samples
per channel; up to 39 of its 161 tensors over the bar in one draw) and 17
(googlenet, where a flip near the output moved every upstream tensor by
about 2e-2, median ratio 17); the largest tensor error 0.11
(densenet121: a float64 pre-activation of 1.8e-6 took the other sign); the
whole gradient's error at most 2.2e-2, while PyTorch's own float32 error
reaches 3.2e-2 on resnet50. PyTorch fails that bar against itself as well: its float32 gradients
computed without oneDNN on one thread exceed twice its default path's
error on up to 36 of resnet50's 161 tensors (8.6x) and 267 of
densenet121's 364 (12.2x) in 4 draws each (bench/float32_spread.py,
docs/benchmarks.md). So the test asserts what holds on every draw:
the whole gradient within 3x PyTorch's float32 error or 5e-2, every tensor
within 0.25 relative: margins over what was measured, far below the O(1)
errors of a wrong gradient rule"""

import copy
import json

import numpy as np
import onnx
from onnx import numpy_helper
import pytest
import torch
import torch.nn.functional as F
import torchvision

from conftest import fresh_rng
from blpa import models, tool

# Both tests draw their batch with fresh_rng().
pytestmark = pytest.mark.randomized

ZOO = {
    "resnet18": {},
    "resnet50": {},
    "densenet121": {},
    "googlenet": {"aux_logits": False, "init_weights": True},
    "mobilenet_v2": {},
    "efficientnet_b0": {"stochastic_depth_prob": 0.0},
    # The families that needed Split, Transpose (channel shuffle), Concat
    # of activations, ReduceMean and HardSwish.
    "shufflenet_v2_x0_5": {},
    "squeezenet1_1": {},
    "mnasnet0_5": {},
    "mobilenet_v3_small": {},
}


@pytest.fixture(scope="module", params=sorted(ZOO))
def zoo_model(request, tmp_path_factory):
    """(name, torch model, ONNX path, training executable at batch 4)."""
    name = request.param
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(num_classes=10, **ZOO[name])
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    model.input_shape = (1, 3, 64, 64)
    workdir = tmp_path_factory.mktemp(name)
    onnx_path = str(workdir / (name + ".onnx"))
    models.export(model, onnx_path)
    exe = tool.compile(onnx_path, str(workdir / name), batch_size=4)
    return name, model, onnx_path, exe


def reference(model, x, y, dtype):
    copy_ = copy.deepcopy(model).to(dtype).train()
    loss = F.cross_entropy(copy_(torch.from_numpy(x).to(dtype)),
                           torch.from_numpy(y))
    loss.backward()
    return loss.item(), {n: p.grad.double().numpy()
                         for n, p in copy_.named_parameters()}


def relative_errors(grads, exact, total):
    """Each tensor's error against `exact` relative to its norm, or to the
    whole gradient's norm for tensors that are ~0 in float64 (a bias before
    a batch norm has no gradient in exact arithmetic)."""
    errors = {}
    for param, ref in exact.items():
        scale = max(np.linalg.norm(ref), 1e-6 * total)
        errors[param] = np.linalg.norm(grads[param] - ref) / scale
    return errors


def whole_error(grads, exact):
    diff = sum(np.sum((grads[p] - exact[p]) ** 2) for p in exact)
    norm = sum(np.sum(exact[p] ** 2) for p in exact)
    return np.sqrt(diff / norm)


def test_gradients_as_accurate_as_pytorch_float32(zoo_model, tmp_path):
    name, model, _, exe = zoo_model
    rng = fresh_rng()
    x = rng.standard_normal((4, 3, 64, 64)).astype(np.float32)
    y = rng.integers(0, 10, size=4).astype(np.int64)
    loss, dumped = tool.check_step(exe, x, y, str(tmp_path / "dump"))
    loss64, grads64 = reference(model, x, y, torch.float64)
    _, grads32 = reference(model, x, y, torch.float32)
    assert abs(float(loss) - loss64) <= 1e-4 * abs(loss64)
    assert len(dumped) == len(grads64)
    ours = {p: dumped[tool.dump_name(p)].astype(np.float64) for p in grads64}
    total = np.sqrt(sum(np.sum(g ** 2) for g in grads64.values()))
    mine = relative_errors(ours, grads64, total)
    theirs = relative_errors(grads32, grads64, total)
    assert whole_error(ours, grads64) <= max(
        3 * whole_error(grads32, grads64), 5e-2)
    worst = max(grads64, key=lambda p: mine[p])
    assert mine[worst] <= 0.25, (name, worst, mine[worst], theirs[worst])


@pytest.mark.parametrize("bits", [0, 4])
def test_trains_20_steps_and_saves_a_valid_model(zoo_model, tmp_path, bits):
    _, model, onnx_path, exe = zoo_model
    if bits:
        exe = tool.compile(onnx_path, str(tmp_path / "exe4"), batch_size=4,
                           act_bits=bits)
    saved = str(tmp_path / "trained.onnx")
    inference = str(tmp_path / "trained_inference.onnx")
    records, _ = tool.train(exe, str(tmp_path / "log.jsonl"), "--synthetic",
                            "--steps", 20, "--lr", 0.01, "--save", saved,
                            "--save-inference", inference)
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 20 and all(np.isfinite(losses))
    onnx.checker.check_model(saved)
    initial, trained = initializers(onnx_path), initializers(saved)
    assert trained.keys() == initial.keys()
    # The weights are the trained ones: in 20 steps every parameter and
    # running statistic moves.
    unchanged = [n for n in initial if np.array_equal(initial[n], trained[n])]
    assert not unchanged, unchanged

    # --save-inference writes the same weights with the batch norms and
    # dropouts in inference mode, as eval-mode torch.onnx would.
    rng = fresh_rng()
    x = rng.standard_normal((4, 3, 64, 64)).astype(np.float32)
    onnx.checker.check_model(inference)
    expected = inference_mode(onnx.load(saved)).graph
    written = onnx.load(inference).graph
    assert list(written.node) == list(expected.node)
    assert list(written.initializer) == list(expected.initializer)

    # In inference mode the file is ill-conditioned: after 20 steps at batch
    # 4 the running variances of efficientnet_b0's deeper batch norms are
    # up to 1e8 below the variance that reaches them, its logits grow to
    # ~1e5, and every float32 evaluation (ours, onnxruntime with and
    # without graph optimizations, PyTorch) strays from float64 by 1e-5 on
    # most draws and up to 7e-2 on some, ours up to 12x the largest of the
    # other three (its old bar of 5e-3 failed at 1.44e-2 on an AVX2
    # machine). There onnxruntime and our executable only have to run it.
    as_saved = tool.compile(inference, str(tmp_path / "as_saved"),
                            train=False, batch_size=4)
    for run in (tool.onnxruntime_run(inference, [x])[0],
                tool.infer(as_saved, [x], str(tmp_path / "as_saved_out"))[0]):
        assert run.shape == (4, 10) and np.all(np.isfinite(run))
    # The numbers are compared where the net is well conditioned: the file
    # as saved (batch norms in training mode: the batch's statistics), and
    # the inference file with the running statistics set to this batch's
    # (logits ~1e2). Our executable compiled from each with --infer,
    # onnxruntime with and without its graph optimizations and PyTorch
    # float32 (the torchvision model given the file's weights) are compared
    # with that model in float64: ours within 10x the largest float32 error
    # of the other three, or 1e-4. Measured on efficientnet_b0, 15 to 20
    # draws per mode and width: ours at most 2.3e-5, once 4.5x the largest
    # other, otherwise at most 2.6x. Wrong weights or statistics are off by
    # 0.2 to 2000 (the two modes' logits).
    calibrated = str(tmp_path / "calibrated.onnx")
    with_batch_statistics(inference, model, x, calibrated)
    for mode, path in (("training", saved), ("inference", calibrated)):
        infer = tool.compile(path, str(tmp_path / ("infer_" + mode)),
                             train=False, batch_size=4)
        ours = tool.infer(infer, [x], str(tmp_path / mode))[0]
        exact = run_with_weights_of(path, model, x, mode, torch.float64)
        others = {
            "onnxruntime": tool.onnxruntime_run(path, [x])[0],
            "onnxruntime unoptimized": tool.onnxruntime_run(
                path, [x], optimize=False)[0],
            "PyTorch float32": run_with_weights_of(path, model, x, mode,
                                                   torch.float32)}
        assert ours.shape == exact.shape == (4, 10)
        spread = {k: relative_error(v, exact) for k, v in others.items()}
        error = relative_error(ours, exact)
        print("%s mode: logits within %.2e of float64; float32 spread %s" %
              (mode, error, ", ".join("%s %.2e" % kv for kv in
                                      spread.items())))
        assert error <= max(10 * max(spread.values()), 1e-4), (
            mode, error, spread)


def with_weights_of(path, model):
    """A copy of torch `model` given ONNX file `path`'s initializers (the
    export named them after its state_dict: every one must be an entry, and
    every entry but the batch counters must be there)."""
    model = copy.deepcopy(model)
    # The model's own state_dict keeps its version metadata, which some
    # models' loading reads (mnasnet).
    state = model.state_dict()
    weights = initializers(path)
    assert weights.keys() <= state.keys(), weights.keys() - state.keys()
    assert all(n.endswith("num_batches_tracked")
               for n in state.keys() - weights.keys())
    state.update((n, torch.from_numpy(a.copy())) for n, a in weights.items())
    model.load_state_dict(state)
    return model


def run_with_weights_of(path, model, x, mode, dtype):
    """The logits of `model` with `path`'s weights on x, in `mode`
    ("training": batch statistics) and `dtype`."""
    model = with_weights_of(path, model).to(dtype).train(mode == "training")
    with torch.no_grad():
        return model(torch.from_numpy(x).to(dtype)).double().numpy()


def with_batch_statistics(path, model, x, out):
    """Writes ONNX file `path` to `out` with each batch norm's running
    statistics replaced by x's batch statistics (PyTorch float64,
    momentum 1: the mean and the unbiased variance)."""
    model = with_weights_of(path, model).double().train()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = 1.0
    with torch.no_grad():
        model(torch.from_numpy(x).double())
    buffers = dict(model.named_buffers())
    proto = onnx.load(path)
    for tensor in proto.graph.initializer:
        if tensor.name.endswith(("running_mean", "running_var")):
            tensor.CopyFrom(numpy_helper.from_array(
                buffers[tensor.name].float().numpy(), tensor.name))
    onnx.save(proto, out)


def relative_error(value, exact):
    return np.linalg.norm(value.astype(np.float64) - exact) / np.linalg.norm(
        exact)


def initializers(path):
    """{name: array} of the ONNX file's initializers."""
    return {t.name: numpy_helper.to_array(t)
            for t in onnx.load(path).graph.initializer}


def inference_mode(model):
    """`model` with each training-mode batch norm in inference mode (running
    statistics, one output) and each dropout without its training_mode
    input, as torch.onnx exports a model in eval mode."""
    for node in model.graph.node:
        if node.op_type == "BatchNormalization":
            for attr in node.attribute:
                if attr.name == "training_mode":
                    attr.i = 0
            del node.output[1:]
        if node.op_type == "Dropout":
            del node.input[2:]
    return model
