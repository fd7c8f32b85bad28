"""The GPT-style language model of issue 18: token ids in, next-token
logits [B, T, V] out. --check-step against PyTorch autograd in float64
(1e-4 relative per parameter, labels with ignored positions), the same at
8/4/2 bits with the loss equal to the exact build's, training on a text
file read as bytes with checkpoint and resume, --infer against PyTorch,
and the errors a user meets with token inputs."""

import json
import os
import subprocess

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import (assert_compressed_like_exact, assert_gradients_match,
                      compare_bit_widths, fresh_rng)
from blpa import models, tool

pytestmark = pytest.mark.randomized

# PyTorch's default ignore_index, and blpa-opt's.
IGNORE = -100
# A text every Debian system has (base-files).
TEXT = "/usr/share/common-licenses/GPL-3"


def small_gpt(seed, vocab=61, context=12, layers=2, width=32, heads=4,
              tied=False):
    return models.gpt(seed=seed, vocab=vocab, context=context, layers=layers,
                      width=width, heads=heads, tied=tied)


def export(model, tmp_path, name="gpt"):
    path = str(tmp_path / (name + ".onnx"))
    return models.export(model, path, opset=17)


def random_tokens(rng, model, batch, ignored=0.2):
    """Token ids [batch, context] and next-token labels, a share of them
    `ignored` (IGNORE)."""
    shape = (batch, model.context)
    ids = rng.integers(0, model.vocab, size=shape).astype(np.int64)
    labels = rng.integers(0, model.vocab, size=shape).astype(np.int64)
    labels[rng.random(shape) < ignored] = IGNORE
    return ids, labels


def torch_lm_reference(model, ids, labels):
    """Loss and parameter gradients in float64: the mean cross-entropy over
    the positions not labelled IGNORE."""
    reference = model.double().train()
    reference.zero_grad()
    logits = reference(torch.from_numpy(ids))
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                           torch.from_numpy(labels).reshape(-1),
                           ignore_index=IGNORE)
    loss.backward()
    return loss.item(), {name: p.grad.numpy().copy()
                         for name, p in reference.named_parameters()}


@pytest.mark.parametrize("size", ["small", "tied", "example"])
def test_gpt_matches_pytorch_float64(size, tmp_path):
    """The example GPT (byte vocabulary, context 128, 4 layers, width 128)
    at batch 2, and a small one at batch 3, also with the head tied to the
    token table (one initializer read by Gather and by MatMul through a
    Transpose: its gradient sums both)."""
    seed = int(fresh_rng().integers(1 << 31))
    model = (models.gpt(seed=seed) if size == "example"
             else small_gpt(seed, tied=size == "tied"))
    batch = 2 if size == "example" else 3
    exe = tool.compile(export(model, tmp_path), str(tmp_path / "gpt"),
                       batch_size=batch)
    ids, labels = random_tokens(fresh_rng(), model, batch)
    loss, grads = tool.check_step(exe, ids, labels, str(tmp_path / "dump"))
    ref_loss, ref_grads = torch_lm_reference(model, ids, labels)
    assert_gradients_match(loss, grads, ref_loss, ref_grads)


def test_gpt_at_8_4_2_bits_keeps_the_forward_exact(tmp_path):
    """Batch 4 of a context-32 GPT of width 64: its saved tensors pass the
    quantizer's size floor. The loss equals the exact build's bit for bit
    (the forward pass is exact), fewer bytes are saved at each narrower
    width, and the gradient stays close to exact."""
    model = small_gpt(int(fresh_rng().integers(1 << 31)), vocab=97,
                      context=32, width=64)
    ids, labels = random_tokens(fresh_rng(), model, 4)
    assert_compressed_like_exact(
        "gpt", "gpt",
        compare_bit_widths(export(model, tmp_path), ids, labels, tmp_path))


def read_log(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_gpt_trains_on_text_and_resumes_bit_for_bit(tmp_path):
    """--data on a text file read as bytes: windows of the context with
    next-byte labels. The loss falls from log(vocab); a run checkpointed
    at step 6 and resumed ends with the uninterrupted run's losses and
    weights, bit for bit; the test split is evaluated."""
    model = small_gpt(int(fresh_rng().integers(1 << 31)), vocab=256,
                      context=32)
    exe = tool.compile(export(model, tmp_path), str(tmp_path / "gpt"),
                       batch_size=8)
    common = [exe, "--data", TEXT, "--lr", "0.1", "--seed", "3"]
    full = str(tmp_path / "full.jsonl")
    tool.run(common + ["--steps", "12", "--log", full,
                       "--save", str(tmp_path / "full.onnx")])
    ckpt = str(tmp_path / "ckpt")
    tool.run(common + ["--steps", "6", "--checkpoint", ckpt])
    resumed = str(tmp_path / "resumed.jsonl")
    tool.run(common + ["--steps", "12", "--resume", ckpt, "--log", resumed,
                       "--save", str(tmp_path / "resumed.onnx")])
    steps = [r for r in read_log(full) if "loss" in r]
    assert len(steps) == 12
    assert steps[0]["loss"] == pytest.approx(np.log(256), rel=0.05)
    assert steps[-1]["loss"] < steps[0]["loss"] - 1.0
    later = [r["loss"] for r in read_log(resumed) if "loss" in r]
    assert later == [r["loss"] for r in steps[6:]]
    test = [r for r in read_log(full) if "test_loss" in r]
    assert len(test) == 1 and np.isfinite(test[0]["test_loss"])
    assert 0 <= test[0]["test_accuracy"] <= 1
    with open(tmp_path / "full.onnx", "rb") as a, \
            open(tmp_path / "resumed.onnx", "rb") as b:
        assert a.read() == b.read()


def test_gpt_infer_matches_pytorch_and_saved_model_runs_in_onnxruntime(
        tmp_path):
    """--infer on token ids against PyTorch in float64; a trained model
    written with --save gives onnxruntime the logits of our --infer."""
    import onnxruntime
    model = small_gpt(int(fresh_rng().integers(1 << 31)), vocab=256)
    onnx_path = export(model, tmp_path)
    ids, _ = random_tokens(fresh_rng(), model, 5)
    infer = tool.compile(onnx_path, str(tmp_path / "infer"), train=False,
                         batch_size=5)
    (logits,) = tool.infer(infer, [ids], str(tmp_path / "out"))
    with torch.no_grad():
        want = model.double()(torch.from_numpy(ids)).numpy()
    assert np.abs(logits - want).max() <= 1e-4 * np.abs(want).max()

    train = tool.compile(onnx_path, str(tmp_path / "train"), batch_size=8)
    saved = str(tmp_path / "trained.onnx")
    tool.run([train, "--data", TEXT, "--steps", "5", "--lr", "0.1",
              "--save", saved])
    session = onnxruntime.InferenceSession(saved)
    (ort_logits,) = session.run(None, {"input": ids})
    trained = tool.compile(saved, str(tmp_path / "trained"), train=False,
                           batch_size=5)
    (ours,) = tool.infer(trained, [ids], str(tmp_path / "out2"))
    assert np.abs(ours - ort_logits).max() <= 1e-4 * np.abs(ort_logits).max()


def test_gpt_synthetic_batches_train(tmp_path):
    """--synthetic draws token ids below the embedding's vocabulary."""
    model = small_gpt(0)
    exe = tool.compile(export(model, tmp_path), str(tmp_path / "gpt"),
                       batch_size=4)
    log = str(tmp_path / "log.jsonl")
    tool.run([exe, "--synthetic", "--steps", "5", "--lr", "0.05",
              "--log", log])
    losses = [r["loss"] for r in read_log(log)]
    assert len(losses) == 5 and all(np.isfinite(losses))


def run_failing(cmd):
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_token_errors_are_one_line(tmp_path):
    """A token id outside the table and a label outside the vocabulary are
    refused by name; float inputs for a token model too."""
    model = small_gpt(0)
    exe = tool.compile(export(model, tmp_path), str(tmp_path / "gpt"),
                       batch_size=2)
    ids, labels = random_tokens(fresh_rng(), model, 2)
    bad = ids.copy()
    bad[1, 3] = model.vocab
    np.save(tmp_path / "bad.npy", bad)
    np.save(tmp_path / "labels.npy", labels)
    line = run_failing([exe, "--check-step", "--inputs",
                        str(tmp_path / "bad.npy"), "--labels",
                        str(tmp_path / "labels.npy"), "--dump",
                        str(tmp_path / "d")])
    assert "token id %d" % model.vocab in line and "embedding" in line, line
    np.save(tmp_path / "ids.npy", ids)
    wrong = labels.copy()
    wrong[0, 0] = model.vocab + 5
    np.save(tmp_path / "wrong.npy", wrong)
    line = run_failing([exe, "--check-step", "--inputs",
                        str(tmp_path / "ids.npy"), "--labels",
                        str(tmp_path / "wrong.npy"), "--dump",
                        str(tmp_path / "d")])
    assert "label %d" % (model.vocab + 5) in line, line
    np.save(tmp_path / "floats.npy", ids.astype(np.float32))
    line = run_failing([exe, "--check-step", "--inputs",
                        str(tmp_path / "floats.npy"), "--labels",
                        str(tmp_path / "labels.npy"), "--dump",
                        str(tmp_path / "d")])
    assert "--inputs" in line, line
    assert not os.path.exists(tmp_path / "d" / "loss.npy")
