"""Gradient checks of the CNN ops beyond the spine's (issue 7): a small
PyTorch model per op family, exported in training mode, one --check-step
against PyTorch autograd in float64 (1e-4 relative per parameter)."""

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import (assert_gradients_match, batch_clear_of_ties,
                      draw_clear_of_ties, fresh_rng, gradient_error,
                      random_batch,
                      torch_reference)
from blpa import models, tool

# Every test draws its batch, most their weights too, with fresh_rng().
pytestmark = pytest.mark.randomized


class SqueezeExcite(nn.Module):
    """SiLU exported as Sigmoid * Mul, and a squeeze-and-excitation gate
    (a broadcast Mul by a [N, C, 1, 1] sigmoid)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.reduce = nn.Conv2d(8, 4, 1)
        self.expand = nn.Conv2d(4, 8, 1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        h = self.bn(self.conv(x))
        h = h * torch.sigmoid(h)
        gate = torch.sigmoid(self.expand(F.relu(self.reduce(
            F.adaptive_avg_pool2d(h, 1)))))
        h = h * gate
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


class HardActivations(nn.Module):
    """ReLU6 (Clip with min and max inputs), Hardswish and Hardsigmoid."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.conv3 = nn.Conv2d(6, 6, 1)
        self.fc = nn.Linear(6, 10)

    def forward(self, x):
        h = F.relu6(3 * self.conv1(x))
        h = F.hardswish(3 * self.conv2(h))
        h = h * F.hardsigmoid(3 * self.conv3(h))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


class ConcatPad(nn.Module):
    """Dense-block style concatenation of activations along channels, a
    constant Pad, and Sub/Div with broadcasting."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(7, 5, 3, padding=1)
        self.conv3 = nn.Conv2d(12, 6, 3)
        self.scale = nn.Parameter(torch.rand(1, 6, 1, 1) + 0.5)
        self.shift = nn.Parameter(torch.randn(6, 1, 1))
        self.fc = nn.Linear(6, 10)

    def forward(self, x):
        a = F.relu(self.conv1(x))
        h = torch.cat([x, a], 1)
        h = torch.cat([h, F.relu(self.conv2(h))], 1)
        h = self.conv3(F.pad(h, (1, 0, 2, 1)))
        h = (h - self.shift) / (self.scale * self.scale + 0.25)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


class ShuffleTranspose(nn.Module):
    """Transposes: ShuffleNet's channel shuffle (Reshape, Transpose perm
    [0, 2, 1, 3, 4], Reshape), PixelShuffle written as a rank-6 permute, a
    permute to NHWC with a channel scale and a Linear over the channels, and
    Linear without bias (MatMul by the Transpose of its weight, which must
    get its gradient through the Transpose)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.conv3 = nn.Conv2d(2, 4, 3, stride=2, padding=1)
        self.scale = nn.Parameter(torch.rand(4) + 0.5)
        self.mix = nn.Linear(4, 6, bias=False)
        self.fc = nn.Linear(6, 10, bias=False)

    def forward(self, x):
        h = F.relu(self.bn(self.conv1(x)))
        n, c, height, width = h.shape
        h = h.view(n, 2, c // 2, height, width).transpose(1, 2)
        h = self.conv2(h.reshape(n, c, height, width))
        h = h.view(-1, 2, 2, 2, height, width).permute(0, 1, 4, 2, 5, 3)
        h = F.relu(self.conv3(h.reshape(n, 2, 2 * height, 2 * width)))
        h = self.mix(h.permute(0, 2, 3, 1) * self.scale)
        h = F.adaptive_avg_pool2d(h.permute(0, 3, 1, 2), 1)
        return self.fc(torch.flatten(h, 1))


class SplitReduce(nn.Module):
    """Split of activations (torch.split with sizes, chunk), ReduceMean over
    the spatial axes with and without keepdims and over the channels,
    Unsqueeze and Squeeze of activations, and GlobalMaxPool."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(3, 5, 3, padding=1)
        self.gate = nn.Linear(5, 5)
        self.fc = nn.Linear(5 + 1 + 5, 10)

    def forward(self, x):
        a, b = torch.split(F.relu(self.conv1(x)), [3, 5], dim=1)
        c, d = torch.chunk(self.conv2(a), 2, dim=2)
        gate = torch.sigmoid(self.gate(d.mean((2, 3))))
        h = b * gate.unsqueeze(-1).unsqueeze(-1) + c.mean((2, 3), keepdim=True)
        # A mean over the channels (spatial attention): axes not trailing.
        h = h * torch.sigmoid(h.mean(1, keepdim=True))
        pooled = F.adaptive_max_pool2d(h, 1).squeeze(3).squeeze(2)
        return self.fc(torch.cat([pooled, a.mean((1, 2, 3)).unsqueeze(1),
                                  h.mean((2, 3))], 1))


class Conv1d(nn.Module):
    """1-D convolutions (strided, padded, dilated, grouped) and 1-D max and
    average pooling, run as 2-D ones over a height of 1."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(3, 6, 5, stride=2, padding=2)
        self.conv2 = nn.Conv1d(6, 6, 3, padding=2, dilation=2, groups=3)
        self.fc = nn.Linear(6, 10)

    def forward(self, x):
        h = F.relu(self.conv1(torch.flatten(x, 2)))
        h = F.max_pool1d(h, 3, stride=2, padding=1)
        h = F.avg_pool1d(self.conv2(h), 2)
        return self.fc(h.mean(2))


class ReflectEdgePad(nn.Module):
    """Pad in reflect and edge mode: nn.ReflectionPad2d, nn.ReplicationPad2d
    (asymmetric) and an asymmetric F.pad(mode="reflect"), each before a
    convolution; the gradients of conv1 and conv2 pass back through the
    pads' gradients (the sums over every copy of an element)."""

    def __init__(self):
        super().__init__()
        self.reflect = nn.ReflectionPad2d(2)
        self.conv1 = nn.Conv2d(3, 6, 3)
        self.replicate = nn.ReplicationPad2d((1, 3, 0, 2))
        self.conv2 = nn.Conv2d(6, 6, 3)
        self.conv3 = nn.Conv2d(6, 6, 3)
        self.fc = nn.Linear(6, 10)

    def forward(self, x):
        h = F.relu(self.conv1(self.reflect(x)))
        h = F.relu(self.conv2(self.replicate(h)))
        h = self.conv3(F.pad(h, (3, 0, 1, 2), mode="reflect"))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


class PixelShuffles(nn.Module):
    """nn.PixelShuffle (exported as DepthToSpace, CRD mode) and
    nn.PixelUnshuffle, around convolutions, as in sub-pixel super-resolution
    networks; the convolutions' gradients pass back through both."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.up = nn.PixelShuffle(2)
        self.conv2 = nn.Conv2d(2, 3, 3, padding=1)
        self.down = nn.PixelUnshuffle(3)
        self.fc = nn.Linear(27, 10)

    def forward(self, x):
        h = self.up(F.relu(self.conv1(x)))
        h = self.down(torch.sigmoid(self.conv2(h)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


class SoftmaxHeads(nn.Module):
    """Softmax over the channels as an attention weighting (x * softmax(x,
    dim=1)), whose output two gradients read, and log_softmax along the
    height (an axis that is not the last) before the classifier."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.fc = nn.Linear(6, 10)

    def forward(self, x):
        h = self.conv1(x)
        h = h * torch.softmax(h, dim=1)
        h = F.log_softmax(self.conv2(F.relu(h)), dim=2)
        return self.fc(h.mean((2, 3)))


class Conv3d(nn.Module):
    """3-D convolutions (strided, padded, dilated, grouped, without bias),
    BatchNorm3d, 3-D max pooling and average pooling with ceil_mode (a
    window past the end padding), over the input viewed as
    [N, C, 4, H / 2, W / 2]."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv3d(3, 8, 3, stride=(1, 1, 2), padding=1)
        self.bn = nn.BatchNorm3d(8)
        self.conv2 = nn.Conv3d(8, 8, (2, 3, 3), padding=(1, 2, 2),
                               dilation=(1, 2, 2), groups=4, bias=False)
        self.conv3 = nn.Conv3d(8, 6, 1)
        self.fc = nn.Linear(6, 10)

    def forward(self, x):
        n, c, height, width = x.shape
        h = x.reshape(n, c, 4, height // 2, width // 2)
        h = F.relu(self.bn(self.conv1(h)))
        h = F.max_pool3d(h, 2, stride=(1, 2, 2), ceil_mode=True)
        h = F.avg_pool3d(self.conv2(h), (3, 3, 2), stride=2, padding=1,
                         ceil_mode=True)
        h = F.relu(self.conv3(h))
        return self.fc(torch.flatten(F.adaptive_avg_pool3d(h, 1), 1))


class PoolVariants(nn.Module):
    """Dilated max pooling (with and without ceil_mode) and average pooling
    with ceil_mode, excluding and including the padding in the divisor
    (windows running past the end padding are clipped to it)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        h = F.relu(self.conv1(x))
        h = F.max_pool2d(h, 3, stride=1, padding=1, dilation=2)
        a = F.avg_pool2d(h, 3, stride=2, padding=1, ceil_mode=True,
                         count_include_pad=False)
        b = F.avg_pool2d(self.conv2(h), 3, stride=2, padding=1,
                         ceil_mode=True, count_include_pad=True)
        h = F.max_pool2d(a + b, 2, stride=2, dilation=2, ceil_mode=True)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


class SpatialAttention(nn.Module):
    """Self-attention over a CNN's spatial positions (batched MatMul of
    activations): q, k, v from 1x1 convolutions, softmax(q^T k / 2) over the
    keys, v x attn^T; then a weight mixing the channels (a rank-2 parameter
    against a batch: one matrix the product broadcasts) and per-head
    weights [2, 4, 4] against [N, 2, 4, HW] (a batch that broadcasts only
    partly, made explicit); and torch.bmm of activations for a channel
    Gram matrix. Parameters' gradients are summed over the batch."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.q = nn.Conv2d(8, 4, 1)
        self.k = nn.Conv2d(8, 4, 1)
        self.v = nn.Conv2d(8, 8, 1)
        self.mix = nn.Parameter(torch.randn(8, 8) * 0.3)
        self.heads = nn.Parameter(torch.randn(2, 4, 4) * 0.5)
        self.fc = nn.Linear(8 + 8, 10)

    def forward(self, x):
        h = F.relu(self.bn(self.conv(x)))
        n, c, height, width = h.shape
        q = self.q(h).flatten(2)
        k = self.k(h).flatten(2)
        v = self.v(h).flatten(2)
        attn = torch.softmax(torch.matmul(q.transpose(1, 2), k) / 2, dim=-1)
        out = torch.matmul(self.mix, torch.matmul(v, attn.transpose(1, 2)))
        out = torch.matmul(self.heads, out.view(n, 2, 4, height * width))
        h = h + out.reshape(n, c, height, width)
        flat = h.flatten(2)
        gram = torch.bmm(flat, flat.transpose(1, 2)) / (height * width)
        return self.fc(torch.cat([h.mean((2, 3)), gram.mean(2)], 1))


class MatMulBroadcasts(nn.Module):
    """MatMul's numpy forms with parameter operands: a batch of matrices
    times a vector, a vector times a batch, and batch dimensions that both
    broadcast ([N, 1, 4] against [2, 1]: activation and weight both made
    [N, 2, 4] explicitly)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.u = nn.Parameter(torch.randn(6))
        self.w = nn.Parameter(torch.randn(6))
        self.t = nn.Parameter(torch.randn(2, 1, 6, 6) * 0.3)
        self.fc = nn.Linear(4 + 4 + 8, 10)

    def forward(self, x):
        h = F.adaptive_avg_pool2d(F.relu(self.conv(x)), 6)
        a = torch.matmul(h, self.u)
        b = torch.matmul(self.w, h)
        c = torch.matmul(h.unsqueeze(1), self.t)
        return self.fc(torch.cat([a.mean(2), b.mean(2),
                                  c.mean((3, 4)).flatten(1)], 1))


MODELS = {"squeeze_excite": SqueezeExcite, "hard_activations": HardActivations,
          "concat_pad": ConcatPad, "split_reduce": SplitReduce,
          "conv1d": Conv1d, "shuffle_transpose": ShuffleTranspose,
          "reflect_edge_pad": ReflectEdgePad, "softmax_heads": SoftmaxHeads,
          "pixel_shuffles": PixelShuffles, "conv3d": Conv3d,
          "pool_variants": PoolVariants,
          "spatial_attention": SpatialAttention,
          "matmul_broadcasts": MatMulBroadcasts}


def check_against_pytorch(model, name, tmp_path, opset=15):
    onnx_path = str(tmp_path / (name + ".onnx"))
    models.export(model, onnx_path, (1, 3, 12, 12), opset=opset)
    exe = tool.compile(onnx_path, str(tmp_path / name), batch_size=3)
    x, y = batch_clear_of_ties(fresh_rng(), model, (3, 3, 12, 12))
    loss, grads = tool.check_step(exe, x, y, str(tmp_path / "dump"))
    ref_loss, ref_grads = torch_reference(copy.deepcopy(model), x, y)
    assert_gradients_match(loss, grads, ref_loss, ref_grads)


@pytest.mark.randomized
@pytest.mark.parametrize("name", sorted(MODELS))
def test_op_family_matches_pytorch_float64(name, tmp_path):
    torch.manual_seed(fresh_rng().integers(1 << 31))
    check_against_pytorch(MODELS[name](), name, tmp_path)


# PyTorch warns that opset 11 cannot export dropout and batch norms in
# training mode; these models have none.
OPSET11_WARNING = "ignore:You are exporting the model in training mode"


@pytest.mark.filterwarnings(OPSET11_WARNING)
def test_softmax_opset11_matches_pytorch_float64(tmp_path):
    """Opset 11's Softmax and LogSoftmax (over the block flattened from
    their axis; PyTorch exports a softmax over another axis as Transpose,
    Softmax over the last axis, Transpose)."""
    torch.manual_seed(fresh_rng().integers(1 << 31))
    check_against_pytorch(SoftmaxHeads(), "softmax_opset11", tmp_path,
                          opset=11)


class LogSoftmaxClassifier(nn.Module):
    """A classifier whose output is log-probabilities, as trained with
    F.nll_loss."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.fc = nn.Linear(4 * 6 * 6, 10)

    def forward(self, x):
        h = F.relu(self.conv(x))
        return F.log_softmax(self.fc(torch.flatten(h, 1)), dim=1)


@pytest.mark.filterwarnings(OPSET11_WARNING)
@pytest.mark.parametrize("opset", [11, 15])
def test_log_softmax_output_trains_as_nll_loss(opset, tmp_path):
    """The training loss, softmax cross-entropy of the first output, is on a
    LogSoftmax output the NLL loss of it (log_softmax is idempotent): loss
    and gradients of --check-step match F.nll_loss in float64."""
    torch.manual_seed(fresh_rng().integers(1 << 31))
    model = LogSoftmaxClassifier()
    onnx_path = str(tmp_path / "log_softmax.onnx")
    models.export(model, onnx_path, (1, 3, 12, 12), opset=opset)
    exe = tool.compile(onnx_path, str(tmp_path / "exe"), batch_size=4)
    x, y = batch_clear_of_ties(fresh_rng(), model, (4, 3, 12, 12))
    loss, grads = tool.check_step(exe, x, y, str(tmp_path / "dump"))
    reference = copy.deepcopy(model).double().train()
    ref = F.nll_loss(reference(torch.from_numpy(x).double()),
                     torch.from_numpy(y))
    ref.backward()
    assert_gradients_match(loss, grads, ref.item(),
                           {n: p.grad.numpy()
                            for n, p in reference.named_parameters()})


# Every family keeps packed codes at 4 bits (batch 4, 24x24: each has a
# saved conv output, ReLU or pooling of 4096 elements or more); none
# legitimately compresses nothing. matmul_broadcasts keeps only the 1-bit
# mask of its ReLU, so its gradients are the exact ones.
#
# Per family: the largest error ||g4 - g0|| / max(||g0||, 0.01 * total) of
# one parameter's 4-bit gradient g4 against the exact one g0 (same
# weights, seed 3, and batch; total: the norm of all of g0) and the
# smallest cosine of the two over the parameters above the floor, measured
# over 100 batches; then the bars: 2.5 times the error, 6 times 1 - cosine
# (1 - cosine grows as the error squared). Without the floor the errors
# have a long tail: a parameter whose exact gradient is 0.3% of the whole
# (squeeze_excite's conv weight on one batch) had an error of 0.40 for an
# absolute error of 0.0014 of the whole. A 4-bit affine code's step is
# 1/15 of a channel's whole range.
FAMILY_FLOOR = 0.01
FAMILY_4BIT = {  # measured error, measured cosine, error bar, cosine bar
    "concat_pad": (0.11, 0.994157, 0.27, 0.964),
    "conv1d": (0.174, 0.987692, 0.43, 0.926),
    "conv3d": (0.215, 0.980167, 0.54, 0.881),
    "hard_activations": (0.296, 0.959044, 0.74, 0.754),
    "pixel_shuffles": (0.0609, 0.999243, 0.15, 0.995),
    "pool_variants": (0.0207, 0.999791, 0.052, 0.998),
    "reflect_edge_pad": (0.192, 0.981545, 0.48, 0.889),
    "shuffle_transpose": (0.0602, 0.998193, 0.15, 0.989),
    "softmax_heads": (0.0376, 0.999308, 0.094, 0.995),
    "spatial_attention": (0.174, 0.995352, 0.43, 0.972),
    "split_reduce": (0.0567, 0.998930, 0.14, 0.993),
    "squeeze_excite": (0.14, 0.992094, 0.35, 0.952),
    "matmul_broadcasts": (0.0, 1.0, 1e-6, 0.999999),  # mask only
}


@pytest.mark.randomized
@pytest.mark.parametrize("name", sorted(MODELS))
def test_op_family_trains_at_4_bits(name, tmp_path):
    """The ops' saved activations go through the generic quantizer (affine,
    nonneg, mask) and the ops' own codes: at 4 bits the forward pass stays
    exact, every parameter's gradient stays close to the exact one (the
    --act-bits 0 build, same weights and batch), and the memory report
    shows packed codes wherever the family has a compressible saved
    tensor."""
    torch.manual_seed(3)
    model = MODELS[name]()
    onnx_path = str(tmp_path / (name + ".onnx"))
    # Large enough that the activations pass the quantizer's size floor.
    models.export(model, onnx_path, (1, 3, 24, 24))
    rng = fresh_rng()
    x = rng.standard_normal((4, 3, 24, 24)).astype(np.float32)
    y = rng.integers(0, 10, size=4).astype(np.int64)
    report = str(tmp_path / "memory.json")
    results = []
    for bits in (0, 4):
        exe = tool.compile(onnx_path, str(tmp_path / ("%s%d" % (name, bits))),
                           batch_size=4, act_bits=bits,
                           memory_report=report if bits else None)
        results.append(tool.check_step(exe, x, y,
                                       str(tmp_path / ("d%d" % bits))))
    with open(report) as f:
        packed = json.load(f)["saved_packed_bytes"]
    print("%s: %d bytes of packed codes at 4 bits" % (name, packed))
    assert packed > 0
    _, _, max_error, min_cosine = FAMILY_4BIT[name]
    (loss0, grads0), (loss4, grads4) = results
    assert abs(loss4 - loss0) <= 1e-6 * abs(loss0)  # the forward stays exact
    assert set(grads4) == set(grads0)
    total = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2)
                        for g in grads0.values()))
    for key, exact in grads0.items():
        error, similarity = gradient_error(
            grads4[key], exact.astype(np.float64), total, FAMILY_FLOOR)
        print("%s %-16s error %.3e cosine %.6f" %
              (name, key, error, similarity))
        assert error <= max_error, (key, error)
        assert similarity >= min_cosine, (key, similarity)


def fold_pads_into_average_pools(path):
    """PyTorch exports an average pooling with padding and
    count_include_pad=True as a Pad, then an AveragePool without pads;
    rewrites each such pair as one AveragePool with the pads and
    count_include_pad=1, the form other exporters write."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(path)
    nodes = list(model.graph.node)
    constants = {n.output[0]: numpy_helper.to_array(n.attribute[0].t)
                 for n in nodes if n.op_type == "Constant"}
    folded = 0
    for pad in [n for n in nodes if n.op_type == "Pad"]:
        pool = next(n for n in nodes if pad.output[0] in n.input)
        assert pool.op_type == "AveragePool"
        pads = [int(v) for v in constants[pad.input[1]]]
        rank = len(pads) // 2
        assert pads[:2] == [0, 0] and pads[rank:rank + 2] == [0, 0]
        pool.input[0] = pad.input[0]
        for attr in pool.attribute:
            if attr.name == "pads":
                attr.ints[:] = pads[2:rank] + pads[rank + 2:]
        pool.attribute.append(onnx.helper.make_attribute(
            "count_include_pad", 1))
        model.graph.node.remove(pad)
        folded += 1
    onnx.save(model, path)
    return folded


def test_average_pool_ceil_mode_count_include_pad(tmp_path):
    """AveragePool with pads, ceil_mode and count_include_pad=1 in one node:
    a window running past the end padding divides by its taps inside the
    padded extent, as PyTorch does."""
    torch.manual_seed(fresh_rng().integers(1 << 31))
    model = PoolVariants()
    onnx_path = str(tmp_path / "pool.onnx")
    models.export(model, onnx_path, (1, 3, 12, 12))
    assert fold_pads_into_average_pools(onnx_path) == 1
    exe = tool.compile(onnx_path, str(tmp_path / "pool"), batch_size=3)
    x, y = batch_clear_of_ties(fresh_rng(), model, (3, 3, 12, 12))
    loss, grads = tool.check_step(exe, x, y, str(tmp_path / "dump"))
    ref_loss, ref_grads = torch_reference(copy.deepcopy(model), x, y)
    assert_gradients_match(loss, grads, ref_loss, ref_grads)


def mix64(z):
    """lib/Runtime/Common/DropoutMask.h's mix64, in numpy uint64."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xbf58476d1ce4e5b9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94d049bb133111eb)
        return z ^ (z >> np.uint64(31))


def dropout_mask(seed, step, stream, count, ratio):
    """The elements blpa_dropout keeps, computed independently."""
    key = mix64(mix64(mix64(np.uint64(seed)) ^ np.uint64(step)) ^
                np.uint64(stream))
    draws = (mix64(key ^ np.arange(count, dtype=np.uint64)) >>
             np.uint64(32)).astype(np.uint64)
    threshold = min(int(ratio * 2.0 ** 32), 0xffffffff)
    return draws >= np.uint64(threshold)


class DropoutNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(4 * 6 * 6, 10)

    def forward(self, x, mask=None):
        h = F.relu(self.conv(x))
        h = h * mask / 0.7 if mask is not None else self.drop(h)
        return self.fc(torch.flatten(h, 1))


def test_dropout_masks_are_seeded_and_recomputed_exactly(tmp_path):
    """Training-mode dropout: element i of the node at graph index s is kept
    where the hash of (seed, step, s, i) says so; a float64 PyTorch step
    with that mask gives the same loss and gradients (so the backward pass
    recomputed the forward's mask), and the mask changes with the seed."""
    torch.manual_seed(5)
    model = DropoutNet()
    onnx_path = str(tmp_path / "dropout.onnx")
    models.export(model, onnx_path, (1, 3, 6, 6))
    import onnx
    nodes = onnx.load(onnx_path).graph.node
    stream = next(i for i, n in enumerate(nodes) if n.op_type == "Dropout")
    exe = tool.compile(onnx_path, str(tmp_path / "exe"), batch_size=4)
    mask = dropout_mask(0, 0, stream, 4 * 4 * 6 * 6, 0.3)
    assert 0.2 < 1 - mask.mean() < 0.4
    reference = copy.deepcopy(model).double().train()
    mask = torch.from_numpy(mask.reshape(4, 4, 6, 6)).double()
    x, y = draw_clear_of_ties(
        fresh_rng(), lambda rng: random_batch(rng, (4, 3, 6, 6)),
        lambda xy: reference(torch.from_numpy(xy[0]).double(), mask))
    loss, grads = tool.check_step(exe, x, y, str(tmp_path / "dump"))
    logits = reference(torch.from_numpy(x).double(), mask)
    ref = F.cross_entropy(logits, torch.from_numpy(y))
    ref.backward()
    assert_gradients_match(loss, grads, ref.item(),
                           {n: p.grad.numpy()
                            for n, p in reference.named_parameters()})

    seeded = [tool.train(exe, str(tmp_path / ("s%d.jsonl" % seed)),
                         "--synthetic", "--steps", 3, "--lr", 0.01,
                         "--seed", seed)[0] for seed in (1, 1, 2)]
    losses = [[r["loss"] for r in records if "loss" in r]
              for records in seeded]
    assert losses[0] == losses[1] and losses[0] != losses[2]
