"""Recomputation as a per-tensor choice (--act-policy NODE=recompute,
--blpa-recompute): recomputed segments read exact inputs, so at --act-bits 0
the step is bitwise the plain exact plan's, dropout masks included; and
recomputing blocks keeps less."""

import json

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn

from conftest import fresh_rng, random_batch
from blpa import models, tool


def small_preact_resnet():
    """BN, ReLU, convolutions, residual adds (projected and identity),
    global pooling and a Gemm."""
    return models.preact_resnet(depth=20, widths=((4, 8), (8, 16), (8, 16)),
                                image_size=8, seed=5)


def mlp_with_dropout():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 64), nn.ReLU(),
                          nn.Dropout(0.3), nn.Linear(64, 32), nn.ReLU(),
                          nn.Dropout(0.5), nn.Linear(32, 10))
    model.input_shape = (1, 3, 8, 8)
    return model


def compile_with(onnx_path, out, policy=()):
    """A training executable at batch 4 and its memory report."""
    report = out + ".json"
    extra = [arg for pin in policy for arg in ("--act-policy", pin)]
    tool.compile(onnx_path, out, batch_size=4, memory_report=report,
                 extra=extra)
    with open(report) as f:
        return out, json.load(f)


def check_step(exe, x, y, dump_dir, threads):
    """tool.check_step with the executable's --threads."""
    np.save(dump_dir + "-x.npy", x)
    np.save(dump_dir + "-y.npy", y)
    tool.run([exe, "--check-step", "--inputs", dump_dir + "-x.npy",
              "--labels", dump_dir + "-y.npy", "--dump", dump_dir,
              "--threads", threads])
    return np.load(dump_dir + "/loss.npy"), tool.load_grads(dump_dir)


def assert_bitwise(result, expected):
    (loss, grads), (ref_loss, ref_grads) = result, expected
    assert loss.tobytes() == ref_loss.tobytes()
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        assert grads[name].tobytes() == ref_grads[name].tobytes(), name


@pytest.mark.randomized
@pytest.mark.parametrize("build", [small_preact_resnet, mlp_with_dropout])
def test_recomputing_every_saved_tensor_is_bitwise_exact(tmp_path, build):
    """--act-policy '*=recompute' at --act-bits 0: loss and every gradient
    of --check-step are bit for bit the plain plan's, with 1 and 2 kernel
    threads, on fresh data; with dropout the losses of three training steps
    are too (each step draws new masks, which the copies must replay); and
    the recompute plan keeps less."""
    onnx_path = models.export(build(), str(tmp_path / "model.onnx"))
    plain, plain_report = compile_with(onnx_path, str(tmp_path / "plain"))
    recomputed, report = compile_with(onnx_path, str(tmp_path / "recompute"),
                                      ["*=recompute"])
    assert (report["saved_activation_bytes"]
            < plain_report["saved_activation_bytes"])
    x, y = random_batch(fresh_rng(), (4, 3, 8, 8))
    for threads in (1, 2):
        assert_bitwise(
            check_step(recomputed, x, y, str(tmp_path / ("r%d" % threads)),
                       threads),
            check_step(plain, x, y, str(tmp_path / ("p%d" % threads)),
                       threads))
    runs = [tool.train(exe, str(tmp_path / ("%d.jsonl" % i)), "--synthetic",
                       "--steps", 3, "--lr", 0.01, "--momentum", 0.9,
                       "--threads", 2)[0]
            for i, exe in enumerate((plain, recomputed))]
    losses = [tool.losses(records) for records in runs]
    assert len(losses[0]) == 3 and losses[0] == losses[1]


def block_pins(onnx_path, k):
    """--act-policy pins recomputing the inner tensors of every k-th block
    of a pre-activation ResNet: each of its nodes but the residual Add,
    whose output (the checkpoint the block is recomputed from, read by the
    next block's first batch-norm gradient) every Add keeps in float32."""
    pins = []
    for node in onnx.load(onnx_path).graph.node:
        parts = node.name.split("/")
        if len(parts) < 3 or not parts[2].startswith("blocks."):
            continue
        if parts[-1] == "Add":
            pins.append(node.name + "=float32")
        elif int(parts[2].split(".")[1]) % k == 0:
            pins.append(node.name + "=recompute")
    return pins


@pytest.mark.parametrize("k", [1, 2])
def test_recomputing_blocks_keeps_less(tmp_path, k):
    """Recomputing every k-th block's inner tensors from its input lowers
    the saved bytes and the planned peak (figures in docs/design.md,
    "Recomputation as a choice")."""
    onnx_path = models.export(small_preact_resnet(),
                              str(tmp_path / "model.onnx"))
    _, plain = compile_with(onnx_path, str(tmp_path / "plain"))
    _, blocks = compile_with(onnx_path, str(tmp_path / "blocks"),
                             block_pins(onnx_path, k))
    assert blocks["saved_activation_bytes"] < plain["saved_activation_bytes"]
    assert blocks["peak_bytes"] < plain["peak_bytes"]


@pytest.mark.randomized
@pytest.mark.parametrize("below_mib", [1, 2])
def test_solver_recomputes_from_exact_values_before_coding(tmp_path,
                                                           below_mib):
    """A budget just under the exact plan of torchvision's resnet50
    (32x32, batch 16): recomputing a few convolutions' outputs from their
    inputs, which the weight gradients keep float32 anyway, fits as well as
    coding them, for time within the solver's 2% step. Recomputed from
    exact values they are exact, so the solver ranks that plan first (it
    once counted every recomputed node as if from codes wherever any node
    was coded, and chose 8-bit codes): no node coded, and --check-step is
    bit for bit the exact plan's on fresh data."""
    import torchvision
    torch.manual_seed(0)
    model = torchvision.models.resnet50(num_classes=10)
    onnx_path = models.export(model, str(tmp_path / "model.onnx"),
                              (1, 3, 32, 32))
    exact = str(tmp_path / "exact")
    tool.compile(onnx_path, exact, batch_size=16,
                 memory_report=exact + ".json")
    with open(exact + ".json") as f:
        limit = json.load(f)["total_bytes"] - (below_mib << 20)
    solved = str(tmp_path / "solved")
    proc = tool.run([tool.blpa_opt_path(), onnx_path, "--train",
                     "--batch-size", 16, "--memory-limit", limit,
                     "--min-act-bits", 2, "-o", solved])
    note = proc.stderr.strip().splitlines()[-1]
    assert "recomputed" in note and "bits" not in note, note
    x, y = random_batch(fresh_rng(), (16, 3, 32, 32))
    assert_bitwise(check_step(solved, x, y, str(tmp_path / "s"), 1),
                   check_step(exact, x, y, str(tmp_path / "e"), 1))


def coded_checkpoint_pins(onnx_path):
    """--act-policy pins recomputing every block's nodes before its residual
    Add, whose output (the block's checkpoint) keeps the plan's codes."""
    pins = []
    for node in onnx.load(onnx_path).graph.node:
        parts = node.name.split("/")
        if (len(parts) > 3 and parts[2].startswith("blocks.")
                and parts[-1] != "Add"):
            pins.append(node.name + "=recompute")
    return pins


def whole_cosine(grads, reference):
    a, b = (np.concatenate([g[k].ravel() for k in sorted(g)]).astype(
        np.float64) for g in (grads, reference))
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.randomized
@pytest.mark.parametrize("bits,slack", [(8, 1.0), (4, 3.0)])
def test_recomputing_from_codes_keeps_the_relu_masks(tmp_path, bits, slack):
    """Blocks recomputed from checkpoints kept as K-bit codes: each
    recomputed ReLU replays the forward's 1-bit mask, so the gradient is
    about as exact as the codes alone (1 - cos at 8 bits about 0.05x the
    codes', at 4 bits about 1.4x; without the masks 19x and 50x:
    docs/design.md, "Exactness"); the loss is exact either way."""
    model = models.preact_resnet(depth=20, widths=((4, 8), (8, 16), (8, 16)),
                                 image_size=16, seed=5)
    onnx_path = models.export(model, str(tmp_path / "model.onnx"))
    batch = 16  # every saved tensor over min-elements: all of them coded

    def compile_step(name, pins=()):
        exe = str(tmp_path / name)
        extra = ["--act-bits", bits] + [
            arg for pin in pins for arg in ("--act-policy", pin)]
        tool.compile(onnx_path, exe, batch_size=batch, extra=extra)
        return exe

    exact = str(tmp_path / "exact")
    tool.compile(onnx_path, exact, batch_size=batch)
    codes = compile_step("codes")
    recomputed = compile_step("recomputed", coded_checkpoint_pins(onnx_path))
    x, y = random_batch(fresh_rng(), (batch, 3, 16, 16))
    results = {exe: check_step(exe, x, y, exe + "-step", 2)
               for exe in (exact, codes, recomputed)}
    exact_loss, exact_grads = results[exact]
    errors = {}
    for exe in (codes, recomputed):
        loss, grads = results[exe]
        assert loss.tobytes() == exact_loss.tobytes()
        errors[exe] = 1 - whole_cosine(grads, exact_grads)
    print("1 - cos: codes %.3e, recomputed from codes %.3e"
          % (errors[codes], errors[recomputed]))
    assert errors[recomputed] <= slack * errors[codes]
