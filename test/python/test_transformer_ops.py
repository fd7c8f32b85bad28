"""Gradient checks of the transformer ops (issue 18): a small PyTorch model
per op over token sequences [B, T, D], exported in training mode, with a
mean over the sequence and a linear head as the classifier; one
--check-step against PyTorch autograd in float64 (1e-4 relative per
parameter), and the same at 4 bits with the loss equal to the exact
build's (the forward pass stays exact)."""

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import (assert_compressed_like_exact, assert_gradients_match,
                      batch_clear_of_ties, compare_bit_widths, fresh_rng,
                      torch_reference)
from blpa import models, tool

pytestmark = pytest.mark.randomized

SEQUENCE, WIDTH, BATCH = 6, 16, 3


class SequenceClassifier(nn.Module):
    """`body` over [B, T, D] inputs, mean over T, a linear head."""

    def __init__(self, body, width=WIDTH):
        super().__init__()
        self.body = body
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        return self.head(self.body(x).mean(1))


class SmoothActivations(nn.Module):
    """Tanh, Erf, Sqrt, Neg and Pow (squares, a cube, a square root as
    x ** 0.5, an integer exponent) between linear layers."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(WIDTH, WIDTH)
        self.b = nn.Linear(WIDTH, WIDTH)
        self.c = nn.Linear(WIDTH, WIDTH)

    def forward(self, x):
        h = torch.tanh(self.a(x))
        h = torch.erf(self.b(h)) - h.pow(3)
        positive = torch.sqrt(h * h + 0.5) + (h * h + 1.0) ** 0.5
        return self.c(-positive + h.pow(2) + torch.pow(h, 4))


class Powers(nn.Module):
    """Pow by a trainable exponent per feature (blpa.power: gradients to
    base and exponent), by a computed tensor, Exp and Log, on positive
    bases."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(WIDTH, WIDTH)
        self.e = nn.Parameter(torch.rand(WIDTH) + 0.5)

    def forward(self, x):
        h = torch.sigmoid(self.a(x)) + 0.5
        g = h ** self.e + torch.exp(-h) * torch.log(h)
        return g ** (h - 0.25)


class Gelus(nn.Module):
    """GELU exactly (exported as Div, Erf, Add, Mul) and its tanh
    approximation (Pow, Mul, Add, Tanh)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(WIDTH, 2 * WIDTH)
        self.b = nn.Linear(2 * WIDTH, WIDTH)

    def forward(self, x):
        h = F.gelu(self.a(x))
        return F.gelu(self.b(h), approximate="tanh")


class LayerNorms(nn.Module):
    """nn.LayerNorm over the last axis (opset 15 writes ReduceMean, Sub,
    Pow, ReduceMean, Add, Sqrt, Div, Mul, Add; opset 17
    LayerNormalization) and over the last two axes with its own epsilon.
    (torch 1.13 cannot export a layer norm without weights at opset 17;
    test/Import/layer-norm.onnxtext covers one without a bias.)"""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(WIDTH, WIDTH)
        self.norm = nn.LayerNorm(WIDTH)
        self.wide = nn.LayerNorm((SEQUENCE, WIDTH), eps=1e-3)

    def forward(self, x):
        h = self.norm(self.a(x))
        return self.wide(h * torch.sigmoid(h))


class Reductions(nn.Module):
    """ReduceSum and ReduceMax over the features and over the sequence
    (torch.sum, torch.amax), with and without keepdim."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(WIDTH, WIDTH)

    def forward(self, x):
        h = self.a(x)
        scale = torch.sum(h * h, dim=-1, keepdim=True) + 1.0
        top = torch.amax(h, dim=1)
        return h / scale + top.unsqueeze(1) + torch.sum(h, dim=(1, 2))[
            :, None, None]


class CausalEncoder(nn.Module):
    """A pre-norm encoder layer under a causal mask, built in the forward
    pass as GPT-style models do (torch.triu of a -inf fill from diagonal 1:
    Trilu of a uniform constant)."""

    def __init__(self):
        super().__init__()
        self.layer = encoder_layer(True, "gelu")

    def forward(self, x):
        steps = x.shape[1]
        mask = torch.triu(torch.full((steps, steps), float("-inf")),
                          diagonal=1)
        return self.layer(x, src_mask=mask)


def encoder_layer(norm_first, activation, width=WIDTH):
    return nn.TransformerEncoderLayer(
        width, 4, 2 * width, dropout=0.0, batch_first=True,
        norm_first=norm_first, activation=activation)


BODIES = {
    "smooth_activations": SmoothActivations,
    "gelus": Gelus,
    "layer_norms": LayerNorms,
    "reductions": Reductions,
    "powers": Powers,
    "causal_encoder": CausalEncoder,
    "encoder_post_norm_relu": lambda: encoder_layer(False, "relu"),
    "encoder_pre_norm_gelu": lambda: encoder_layer(True, "gelu"),
}


def export_classifier(model, name, tmp_path, sequence=SEQUENCE, width=WIDTH,
                      opset=15):
    onnx_path = str(tmp_path / (name + ".onnx"))
    models.export(model, onnx_path, (1, sequence, width), opset=opset)
    return onnx_path


@pytest.mark.parametrize("opset", [15, 17])
@pytest.mark.parametrize("name", sorted(BODIES))
def test_transformer_op_matches_pytorch_float64(name, opset, tmp_path):
    """Opset 15 writes layer norms op by op; 17 as LayerNormalization."""
    torch.manual_seed(fresh_rng().integers(1 << 31))
    model = SequenceClassifier(BODIES[name]())
    onnx_path = export_classifier(model, name, tmp_path, opset=opset)
    exe = tool.compile(onnx_path, str(tmp_path / name), batch_size=BATCH)
    x, y = batch_clear_of_ties(fresh_rng(), model, (BATCH, SEQUENCE, WIDTH))
    loss, grads = tool.check_step(exe, x, y, str(tmp_path / "dump"))
    ref_loss, ref_grads = torch_reference(copy.deepcopy(model), x, y)
    assert_gradients_match(loss, grads, ref_loss, ref_grads)


def test_vision_transformer_at_8_4_2_bits_keeps_the_forward_exact(tmp_path):
    """The example ViT's structure on 32x32 images (65 tokens of width 32,
    batch 8: its saved tensors pass the quantizer's size floor)."""
    model = models.vision_transformer(
        seed=int(fresh_rng().integers(1 << 31)), layers=2, width=32,
        mlp_width=64)
    with torch.no_grad():
        nn.init.normal_(model.heads.head.weight, std=0.2)
    onnx_path = str(tmp_path / "vit.onnx")
    models.export(model, onnx_path, opset=17)
    x, y = batch_clear_of_ties(fresh_rng(), model, (8, 3, 32, 32))
    assert_compressed_like_exact("vit", "vit",
                                 compare_bit_widths(onnx_path, x, y, tmp_path))


@pytest.mark.parametrize("opset", [15, 17])
@pytest.mark.parametrize("norm_first", [True, False])
def test_encoder_layer_at_8_4_2_bits_keeps_the_forward_exact(
        norm_first, opset, tmp_path):
    """An encoder layer whose saved tensors pass the quantizer's size floor
    (4 x 16 x 64)."""
    torch.manual_seed(fresh_rng().integers(1 << 31))
    batch, sequence, width = 4, 16, 64
    model = SequenceClassifier(
        encoder_layer(norm_first, "gelu", width), width)
    onnx_path = export_classifier(model, "encoder", tmp_path, sequence, width,
                                  opset)
    x, y = batch_clear_of_ties(fresh_rng(), model, (batch, sequence, width))
    assert_compressed_like_exact(
        "encoder norm_first=%s opset %d" % (norm_first, opset), "encoder",
        compare_bit_widths(onnx_path, x, y, tmp_path))


def test_memory_report_shows_attention_maps(tmp_path):
    """The saved softmax outputs of an encoder layer ([B * heads, T, T],
    float32) are their own category in --memory-report and
    --print-memory."""
    torch.manual_seed(0)
    batch, sequence, width = 4, 16, 64
    model = SequenceClassifier(encoder_layer(True, "gelu", width), width)
    onnx_path = export_classifier(model, "encoder", tmp_path, sequence, width,
                                  17)
    report = str(tmp_path / "memory.json")
    proc = tool.run([tool.blpa_opt_path(), onnx_path, "--train",
                     "--batch-size", "4", "--act-bits", "0",
                     "--memory-report", report, "--print-memory", "-o",
                     str(tmp_path / "exe")])
    with open(report) as f:
        at_peak = json.load(f)["at_peak"]
    # One layer's probabilities, [batch * heads, T, T], saved in float32
    # and live where the backward pass begins, the peak here.
    assert at_peak["saved_attention"] == batch * 4 * sequence * sequence * 4
    assert "saved attention maps (softmax), float32" in proc.stdout


def test_layer_normalization_without_bias_matches_pytorch(tmp_path):
    """A LayerNormalization node without its bias input (which torch 1.13
    cannot export): X @ W, layer norm over the last axis with scale s only,
    mean over the sequence, X @ V; --check-step against F.layer_norm with
    weight s and no bias in float64."""
    from onnx import TensorProto, helper, numpy_helper
    rng = fresh_rng()
    w = rng.standard_normal((WIDTH, WIDTH)).astype(np.float32) / 4
    s = (rng.random(WIDTH) + 0.5).astype(np.float32)
    v = rng.standard_normal((WIDTH, 10)).astype(np.float32) / 4
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("LayerNormalization", ["h", "s"], ["n"],
                         epsilon=1e-4),
        helper.make_node("ReduceMean", ["n"], ["m"], axes=[1], keepdims=0),
        helper.make_node("MatMul", ["m", "v"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "layer_norm_no_bias",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                       ["batch", SEQUENCE, WIDTH])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                       ["batch", 10])],
        [numpy_helper.from_array(a, n) for a, n in
         ((w, "w"), (s, "s"), (v, "v"))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("",
                                                                        17)])
    onnx_path = str(tmp_path / "layer_norm_no_bias.onnx")
    with open(onnx_path, "wb") as f:
        f.write(model.SerializeToString())
    exe = tool.compile(onnx_path, str(tmp_path / "exe"), batch_size=BATCH)
    x = rng.standard_normal((BATCH, SEQUENCE, WIDTH)).astype(np.float32)
    y = rng.integers(0, 10, size=BATCH).astype(np.int64)
    loss, grads = tool.check_step(exe, x, y, str(tmp_path / "dump"))

    params = {n: torch.tensor(a, dtype=torch.float64, requires_grad=True)
              for n, a in (("w", w), ("s", s), ("v", v))}
    h = torch.from_numpy(x).double() @ params["w"]
    n = F.layer_norm(h, (WIDTH,), weight=params["s"], eps=1e-4)
    ref = F.cross_entropy(n.mean(1) @ params["v"], torch.from_numpy(y))
    ref.backward()
    assert_gradients_match(loss, grads, ref.item(),
                           {k: p.grad.numpy() for k, p in params.items()})


def small_vit(seed):
    """The example ViT's structure at test size (2 layers, width 32, 16x16
    images), its zero-initialized head drawn at random so that every
    gradient is nonzero."""
    model = models.vision_transformer(seed=seed, image_size=16, layers=2,
                                      width=32, mlp_width=64)
    with torch.no_grad():
        nn.init.normal_(model.heads.head.weight, std=0.2)
    return model


@pytest.mark.parametrize("opset", [15, 17])
def test_vision_transformer_matches_pytorch_float64(opset, tmp_path):
    """torchvision's VisionTransformer: the class token (Expand of a
    parameter, its shape from Equal and Where), the patch projection, the
    encoder blocks and the class token's row (Gather at index 0)."""
    model = small_vit(int(fresh_rng().integers(1 << 31)))
    onnx_path = str(tmp_path / "vit.onnx")
    models.export(model, onnx_path, opset=opset)
    exe = tool.compile(onnx_path, str(tmp_path / "vit"), batch_size=BATCH)
    x, y = batch_clear_of_ties(fresh_rng(), model, (BATCH, 3, 16, 16))
    loss, grads = tool.check_step(exe, x, y, str(tmp_path / "dump"))
    ref_loss, ref_grads = torch_reference(copy.deepcopy(model), x, y)
    assert_gradients_match(loss, grads, ref_loss, ref_grads)
