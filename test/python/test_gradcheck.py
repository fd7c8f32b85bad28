"""One --check-step against PyTorch autograd in float64 (the spine's
acceptance test), for models from PyTorch's exporter and from onnx.helper."""

import copy
import json

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

from conftest import (assert_gradients_match, batch_clear_of_ties,
                      draw_clear_of_ties, fresh_rng, random_batch,
                      torch_reference)
from blpa import models, tool

# Every test draws its batch (and some their weights) with fresh_rng().
pytestmark = pytest.mark.randomized


def test_residual_cnn_matches_pytorch_float64(residual_cnn_exe, tmp_path):
    exe, model = residual_cnn_exe
    x, y = batch_clear_of_ties(fresh_rng(), model, (4, 3, 16, 16))
    loss, grads = tool.check_step(exe, x, y, str(tmp_path))
    ref_loss, ref_grads = torch_reference(copy.deepcopy(model), x, y)
    assert_gradients_match(loss, grads, ref_loss, ref_grads)


def test_explicit_act_bits_0_is_exact(residual_cnn_exe, workdir, tmp_path):
    _, model = residual_cnn_exe
    exe = tool.compile(str(workdir / "residual_cnn.onnx"),
                       str(tmp_path / "exact"), batch_size=4, act_bits=0)
    x, y = batch_clear_of_ties(fresh_rng(), model, (4, 3, 16, 16))
    loss, grads = tool.check_step(exe, x, y, str(tmp_path / "dump"))
    ref_loss, ref_grads = torch_reference(copy.deepcopy(model), x, y)
    assert_gradients_match(loss, grads, ref_loss, ref_grads)


def test_inference_mode_batch_norm_is_trained_in_training_mode(
        residual_cnn_exe, workdir, tmp_path):
    """Batch norms with training_mode=0 (an eval-mode export; PyTorch's own
    eval export folds them into the convolutions) are trained with batch
    statistics, like the same model in train mode."""
    _, model = residual_cnn_exe
    onnx_model = onnx.load(str(workdir / "residual_cnn.onnx"))
    for node in onnx_model.graph.node:
        if node.op_type == "BatchNormalization":
            for attr in node.attribute:
                if attr.name == "training_mode":
                    attr.i = 0
            del node.output[1:]
    onnx.save(onnx_model, str(tmp_path / "eval_bn.onnx"))
    proc = tool.run([tool.blpa_opt_path(), tmp_path / "eval_bn.onnx",
                     "--train", "--batch-size", 4, "-o", tmp_path / "exe"])
    assert "trained in training mode" in proc.stderr
    x, y = batch_clear_of_ties(fresh_rng(), model, (4, 3, 16, 16))
    loss, grads = tool.check_step(str(tmp_path / "exe"), x, y,
                                  str(tmp_path / "dump"))
    ref_loss, ref_grads = torch_reference(copy.deepcopy(model), x, y)
    assert_gradients_match(loss, grads, ref_loss, ref_grads)


def helper_model(rng, path):
    """Conv-Relu-Flatten-Gemm written with onnx.helper, batch symbolic; the
    weights as float64 numpy arrays for the reference."""
    w = rng.standard_normal((4, 2, 3, 3)).astype(np.float32) * 0.5
    b = rng.standard_normal(4).astype(np.float32)
    fw = rng.standard_normal((5, 4 * 3 * 3)).astype(np.float32) * 0.3
    fb = rng.standard_normal(5).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv",
                         strides=[2, 2], pads=[1, 0, 0, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Flatten", ["r"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc",
                         transB=1, alpha=0.7),
    ]
    inits = [numpy_helper.from_array(a, n)
             for a, n in ((w, "w"), (b, "b"), (fw, "fw"), (fb, "fb"))]
    graph = helper.make_graph(
        nodes, "helper_net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                       ["N", 2, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
        inits)
    model = helper.make_model(graph,
                              opset_imports=[helper.make_opsetid("", 15)])
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return {n: a.astype(np.float64) for a, n in
            ((w, "w"), (b, "b"), (fw, "fw"), (fb, "fb"))}


def test_onnx_helper_model_matches_pytorch(tmp_path):
    rng = fresh_rng()
    weights = helper_model(rng, str(tmp_path / "m.onnx"))
    exe = tool.compile(str(tmp_path / "m.onnx"), str(tmp_path / "exe"),
                       batch_size=3)
    params = {n: torch.tensor(a, requires_grad=True)
              for n, a in weights.items()}

    def forward(x):
        c = F.conv2d(F.pad(torch.from_numpy(x).double(), (0, 1, 1, 0)),
                     params["w"], params["b"], stride=2)
        return 0.7 * torch.flatten(F.relu(c), 1) @ params["fw"].T + params[
            "fb"]

    x, y = draw_clear_of_ties(
        rng, lambda rng: random_batch(rng, (3, 2, 6, 6), classes=5),
        lambda xy: forward(xy[0]))
    loss, grads = tool.check_step(exe, x, y, str(tmp_path / "dump"))
    ref = F.cross_entropy(forward(x), torch.from_numpy(y))
    ref.backward()
    assert_gradients_match(loss, grads, ref.item(),
                           {n: p.grad.numpy() for n, p in params.items()})


def test_every_gradient_rule_matches_pytorch(tmp_path):
    """AveragePool (both divisor modes, asymmetric pads), MaxPool with
    ceil_mode, Reshape, MatMul with a broadcast Add bias, Gemm with transA,
    alpha, beta and a [1, N] C, GlobalAveragePool, BatchNormalization and a
    grouped dilated convolution, against PyTorch float64."""
    rng = fresh_rng()
    arrays = {
        "w": rng.standard_normal((6, 2, 3, 3)) * 0.4,
        "s": rng.uniform(0.5, 1.5, 6), "t": rng.uniform(-0.5, 0.5, 6),
        "m": np.zeros(6), "v": np.ones(6),
        "mw": rng.standard_normal((6, 5)) * 0.4,
        "mb": rng.standard_normal(5),
        "gw": rng.standard_normal((54, 5)) * 0.3,
        "gc": rng.standard_normal((1, 5)),
    }
    arrays = {k: v.astype(np.float32) for k, v in arrays.items()}
    shape = numpy_helper.from_array(np.array([0, -1, 2], np.int64), "shape")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], group=2,
                         dilations=[2, 1], pads=[2, 1, 2, 1]),
        helper.make_node("BatchNormalization", ["c", "s", "t", "m", "v"],
                         ["b"], training_mode=1),
        helper.make_node("AveragePool", ["b"], ["a1"], kernel_shape=[3, 3],
                         strides=[1, 1], pads=[1, 0, 1, 2]),
        helper.make_node("AveragePool", ["a1"], ["a2"], kernel_shape=[2, 2],
                         strides=[2, 2], pads=[1, 1, 0, 0],
                         count_include_pad=1),
        helper.make_node("MaxPool", ["a2"], ["p"], kernel_shape=[2, 2],
                         strides=[2, 2], ceil_mode=1),
        helper.make_node("GlobalAveragePool", ["p"], ["g"]),
        helper.make_node("Reshape", ["p", "shape"], ["r"]),
        helper.make_node("Identity", ["r"], ["rt"]),
        helper.make_node("Flatten", ["g"], ["gf"]),
        helper.make_node("MatMul", ["gf", "mw"], ["mm"]),
        helper.make_node("Add", ["mm", "mb"], ["h"]),
        helper.make_node("Flatten", ["rt"], ["rf"], axis=1),
        helper.make_node("Gemm", ["rf", "gw", "gc"], ["gg"], transB=0,
                         alpha=0.5, beta=0.7),
        helper.make_node("Gemm", ["h", "gg"], ["y"], transA=0, transB=1),
    ]
    graph = helper.make_graph(
        nodes, "every_rule",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                       ["N", 4, 9, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(a, n) for n, a in arrays.items()] + [shape])
    model = helper.make_model(graph,
                              opset_imports=[helper.make_opsetid("", 15)])
    onnx.save(model, str(tmp_path / "m.onnx"))
    exe = tool.compile(str(tmp_path / "m.onnx"), str(tmp_path / "exe"),
                       batch_size=3)
    p = {n: torch.tensor(a.astype(np.float64), requires_grad=True)
         for n, a in arrays.items() if n not in ("m", "v")}

    def forward(x):
        xt = torch.from_numpy(x).double()
        c = F.conv2d(F.pad(xt, (1, 1, 2, 2)), p["w"], groups=2,
                     dilation=(2, 1))
        b = F.batch_norm(c, torch.zeros(6, dtype=torch.float64),
                         torch.ones(6, dtype=torch.float64), p["s"], p["t"],
                         training=True, eps=1e-5)
        a1 = F.avg_pool2d(F.pad(b, (0, 2, 1, 1)), 3, 1) / F.avg_pool2d(
            F.pad(torch.ones_like(b), (0, 2, 1, 1)), 3, 1)
        a2 = F.avg_pool2d(F.pad(a1, (1, 0, 1, 0)), 2, 2)
        pooled = F.max_pool2d(a2, 2, 2, ceil_mode=True)
        g = pooled.mean(dim=(2, 3))
        h = g @ p["mw"] + p["mb"]
        rf = pooled.reshape(3, -1, 2).flatten(1)
        gg = 0.5 * rf @ p["gw"] + 0.7 * p["gc"]
        return h @ gg.T

    x, y = draw_clear_of_ties(
        rng, lambda rng: random_batch(rng, (3, 4, 9, 10), classes=3),
        lambda xy: forward(xy[0]))
    loss, grads = tool.check_step(exe, x, y, str(tmp_path / "dump"))
    logits = forward(x)
    ref = F.cross_entropy(logits, torch.from_numpy(y))
    ref.backward()
    assert_gradients_match(loss, grads, ref.item(),
                           {n: t.grad.numpy() for n, t in p.items()})


def test_preact_resnet_matches_pytorch_float64(tmp_path):
    """The paper's network family, narrowed: pre-activation bottlenecks
    whose shared BN-ReLU feeds both the block and a projection shortcut,
    identity shortcuts, strided 3x3 convolutions, the final BN-ReLU."""
    model = models.preact_resnet(depth=20, widths=((4, 8), (4, 16), (8, 16)),
                                 image_size=8, seed=3)
    onnx_path = str(tmp_path / "preact.onnx")
    models.export(model, onnx_path)
    exe = tool.compile(onnx_path, str(tmp_path / "exe"), batch_size=4)
    x, y = batch_clear_of_ties(fresh_rng(), model, (4, 3, 8, 8))
    loss, grads = tool.check_step(exe, x, y, str(tmp_path / "dump"))
    ref_loss, ref_grads = torch_reference(copy.deepcopy(model), x, y)
    assert_gradients_match(loss, grads, ref_loss, ref_grads)


def test_recomputed_relu_outputs_are_bitwise_the_kept_ones(tmp_path):
    """--blpa-fuse-batch-norm-relu recomputes each BN-ReLU output in the
    backward pass instead of keeping it; the step must not change by a bit
    (loss and every gradient, on fresh data), and it must keep less."""
    model = models.preact_resnet(depth=11, widths=((4, 8), (8, 16), (8, 16)),
                                 image_size=8, seed=5)
    onnx_path = str(tmp_path / "preact.onnx")
    models.export(model, onnx_path)
    x, y = random_batch(fresh_rng(), (4, 3, 8, 8))
    results, saved = {}, {}
    for recompute in ("true", "false"):
        report = str(tmp_path / ("memory-%s.json" % recompute))
        exe = tool.compile(onnx_path, str(tmp_path / ("exe-" + recompute)),
                           batch_size=4, memory_report=report,
                           extra=["--recompute-relu=" + recompute])
        results[recompute] = tool.check_step(
            exe, x, y, str(tmp_path / ("dump-" + recompute)))
        with open(report) as f:
            saved[recompute] = json.load(f)["saved_activation_bytes"]
    (loss, grads), (kept_loss, kept_grads) = results["true"], results["false"]
    assert loss.tobytes() == kept_loss.tobytes()
    assert grads.keys() == kept_grads.keys()
    for name in grads:
        assert grads[name].tobytes() == kept_grads[name].tobytes(), name
    assert saved["true"] < saved["false"]
