"""Checkpoints: a run resumed from one (after --steps ran out, SIGINT or
SIGKILL), across an epoch boundary, ends in bitwise the state of a run
never interrupted: every parameter, momentum and running statistic of the
final checkpoint and of --save, byte for byte, the loss of every step (the
log's numbers read back as the float32 the run computed), and the
evaluation-mode test accuracy."""

import collections
import json
import os
import signal
import struct
import subprocess
import time

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from blpa import models, tool
from conftest import fresh_rng
from test_data_formats import assert_one_line, write_cifar, write_npy_split

STEPS_PER_EPOCH = 6  # 24 training images in batches of 4

# The module's data set is drawn by fresh_rng() (write_cifar).
pytestmark = pytest.mark.randomized


@pytest.fixture(scope="module")
def setup(workdir):
    """A model with batch norms (running statistics to restore) on a small
    CIFAR-format data set of fresh random images: 6 batches an epoch, so
    runs cross epochs (the shuffled order must be replayed), and 8 test
    batches for the evaluation."""
    model = models.residual_cnn(seed=6, in_channels=3, image_size=32)
    onnx_path = str(workdir / "ckpt_cnn.onnx")
    models.export(model, onnx_path, (1, 3, 32, 32))
    exe = tool.compile(onnx_path, str(workdir / "ckpt_cnn"), batch_size=4)
    data = workdir / "ckpt_data"
    write_cifar(data, ["data_batch_1.bin"], 4 * STEPS_PER_EPOCH)
    write_cifar(data, ["test_batch.bin"], 32)
    return exe, str(data)


def args(data, steps, *more):
    # A step schedule: its rates depend on the step, not on --steps (cosine's
    # would differ between a 9-step and a 20-step run).
    return ["--data", data, "--steps", str(steps), "--lr", "0.05",
            "--lr-schedule", "step:2:0.5", "--seed", "3"] + list(more)


def epoch_after(done):
    """A last step such that an epoch ends between step `done` and it."""
    return (done // STEPS_PER_EPOCH + 1) * STEPS_PER_EPOCH + 3


def losses(log):
    """{step: loss} of a --log file, each loss as the float32 it printed
    (a line still being written, without its newline, is left out)."""
    with open(log) as f:
        return {r["step"]: np.float32(r["loss"])
                for r in (json.loads(line) for line in f
                          if line.endswith("\n"))
                if "loss" in r}


CheckpointFile = collections.namedtuple(
    "CheckpointFile", "step seed tensors flag_offsets")


def read_checkpoint(path):
    """A --checkpoint file read from the layout Checkpoint.h documents:
    step, seed, {name: (value bytes, momentum bytes or None)} and where
    each tensor's has-momentum byte is."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"BLPACKPT"
    version, step, seed, count = struct.unpack_from("<IQQI", data, 8)
    assert version == 1
    at, tensors, flags = 32, {}, {}
    for _ in range(count):
        (length,) = struct.unpack_from("<I", data, at)
        name = data[at + 4:at + 4 + length].decode()
        elements, has_momentum = struct.unpack_from("<QB", data,
                                                    at + 4 + length)
        flags[name] = at + 4 + length + 8
        at += 4 + length + 9
        values = data[at:at + 4 * elements]
        at += 4 * elements
        momentum = data[at:at + 4 * elements] if has_momentum else None
        at += 4 * elements if has_momentum else 0
        tensors[name] = (values, momentum)
    assert at == len(data)
    return CheckpointFile(step, seed, tensors, flags)


def saved_initializers(path):
    return {t.name: numpy_helper.to_array(t).tobytes()
            for t in onnx.load(path).graph.initializer}


def differing_elements(a, b):
    """How many float32 elements of two equally long byte strings differ,
    and the largest distance in ulps (as integers of the bit patterns)."""
    x = np.frombuffer(a, np.float32).view(np.int32).astype(np.int64)
    y = np.frombuffer(b, np.float32).view(np.int32).astype(np.int64)
    return int(np.sum(x != y)), int(np.max(np.abs(x - y), initial=0))


def assert_same_tensors(got, expected, what):
    assert got.keys() == expected.keys(), what
    for name in expected:
        assert len(got[name]) == len(expected[name]), (what, name)
        assert got[name] == expected[name], (
            "%s '%s': %d elements differ, by up to %d ulps" %
            ((what, name) + differing_elements(got[name], expected[name])))


def assert_same_checkpoint(got_path, expected_path):
    """Step, seed and every tensor of two checkpoints byte for byte, named
    on failure."""
    got, expected = read_checkpoint(got_path), read_checkpoint(expected_path)
    assert (got.step, got.seed) == (expected.step, expected.seed)
    got, expected = got.tensors, expected.tensors
    assert_same_tensors({n: v for n, (v, _) in got.items()},
                        {n: v for n, (v, _) in expected.items()},
                        "parameter")
    assert_same_tensors({n: m for n, (_, m) in got.items() if m is not None},
                        {n: m for n, (_, m) in expected.items()
                         if m is not None}, "momentum of")
    assert {n for n, (_, m) in got.items() if m is None} == \
        {n for n, (_, m) in expected.items() if m is None}


class Run:
    """The files one training run wrote: its log, final checkpoint and
    --save model."""

    def __init__(self, exe, data, tmp_path, name, steps, *flags):
        self.log = str(tmp_path / (name + ".jsonl"))
        self.checkpoint = str(tmp_path / (name + ".ckpt"))
        self.saved = str(tmp_path / (name + ".onnx"))
        tool.run([exe] + args(data, steps, *flags) +
                 ["--log", self.log, "--checkpoint", self.checkpoint,
                  "--save", self.saved])

    def records(self):
        with open(self.log) as f:
            return [json.loads(line) for line in f]

    def accuracy(self):
        return [(r["test_accuracy"], r["test_images"], r["after_step"])
                for r in self.records() if "test_accuracy" in r]


def assert_resumed_matches(resumed, whole, done, end):
    """`resumed` (resumed after step `done`, run to `end`) logged steps
    done + 1 to end with the losses of `whole` and ends in its state."""
    resumed_losses, whole_losses = losses(resumed.log), losses(whole.log)
    assert sorted(resumed_losses) == list(range(done + 1, end + 1))
    assert sorted(whole_losses) == list(range(1, end + 1))
    assert {s: whole_losses[s] for s in resumed_losses} == resumed_losses
    assert_same_checkpoint(resumed.checkpoint, whole.checkpoint)
    assert_same_tensors(saved_initializers(resumed.saved),
                        saved_initializers(whole.saved), "--save initializer")
    accuracy = whole.accuracy()
    assert len(accuracy) == 1 and accuracy[0][1:] == (32, end)
    assert resumed.accuracy() == accuracy


@pytest.mark.randomized
def test_resume_after_the_last_step(setup, tmp_path):
    """9 steps, then a resume to 20 (epochs end after steps 12 and 18)."""
    exe, data = setup
    whole = Run(exe, data, tmp_path, "whole", 20)
    first = Run(exe, data, tmp_path, "first", 9)
    resumed = Run(exe, data, tmp_path, "resumed", 20, "--resume",
                  first.checkpoint)
    assert losses(first.log) == {s: losses(whole.log)[s] for s in range(1, 10)}
    # The checkpoint holds running statistics (state, no momentum) and
    # momenta, and the steps after it changed them.
    state = read_checkpoint(first.checkpoint).tensors
    last = read_checkpoint(whole.checkpoint).tensors
    statistics = [n for n, (_, m) in state.items() if m is None]
    assert statistics and all(state[n] != last[n] for n in statistics)
    assert any(m is not None and m != last[n][1]
               for n, (_, m) in state.items())
    assert_resumed_matches(resumed, whole, 9, 20)


@pytest.mark.randomized
def test_restoring_a_checkpoint_writes_it_back_byte_for_byte(setup,
                                                             tmp_path):
    """A resume with no steps left checkpoints what it restored: the same
    bytes as the checkpoint it read, whatever later steps would round
    away."""
    exe, data = setup
    first = Run(exe, data, tmp_path, "first", 7)
    back = Run(exe, data, tmp_path, "back", 7, "--resume", first.checkpoint)
    assert losses(back.log) == {}
    assert_same_checkpoint(back.checkpoint, first.checkpoint)
    with open(back.checkpoint, "rb") as a, open(first.checkpoint, "rb") as b:
        assert a.read() == b.read()
    assert_same_tensors(saved_initializers(back.saved),
                        saved_initializers(first.saved), "--save initializer")
    assert back.accuracy() == first.accuracy()


def start(exe, data, log, *flags):
    return subprocess.Popen([exe] + args(data, 100000, *flags) +
                            ["--log", log], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def wait_for_steps(log, count, proc):
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(log) and len(losses(log)) >= count:
            return
        time.sleep(0.02)
    raise AssertionError("the run did not reach %d steps" % count)


def resume_and_compare(exe, data, tmp_path, checkpoint, done):
    """Resumes `checkpoint` (written after `done` steps) past the end of an
    epoch and compares the result with an uninterrupted run."""
    end = epoch_after(done)
    whole = Run(exe, data, tmp_path, "whole", end)
    resumed = Run(exe, data, tmp_path, "resumed", end, "--resume", checkpoint)
    assert_resumed_matches(resumed, whole, done, end)
    return whole


@pytest.mark.randomized
def test_sigint_saves_a_checkpoint_and_stops_cleanly(setup, tmp_path):
    exe, data = setup
    ckpt, log = str(tmp_path / "c.ckpt"), str(tmp_path / "run.jsonl")
    proc = start(exe, data, log, "--checkpoint", ckpt)
    wait_for_steps(log, 5, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted after step ")
    done = int(lines[0].split()[3].rstrip(";"))
    assert done == max(losses(log)) and read_checkpoint(ckpt).step == done
    whole = resume_and_compare(exe, data, tmp_path, ckpt, done)
    assert losses(log) == {s: losses(whole.log)[s] for s in losses(log)}


@pytest.mark.randomized
def test_sigkill_resumes_from_the_last_periodic_checkpoint(setup, tmp_path):
    exe, data = setup
    ckpt, log = str(tmp_path / "c.ckpt"), str(tmp_path / "run.jsonl")
    proc = start(exe, data, log, "--checkpoint", ckpt,
                 "--checkpoint-every", "3")
    wait_for_steps(log, 8, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    leftovers = [f for f in os.listdir(tmp_path) if ".tmp" in f]
    # The checkpoint is whole (written atomically): it reads, from a step
    # that is a multiple of 3.
    done = read_checkpoint(ckpt).step
    assert done % 3 == 0 and done >= 6
    resume_and_compare(exe, data, tmp_path, ckpt, done)
    assert not [f for f in leftovers if f.startswith("c.ckpt")]


def test_bad_checkpoint_is_refused(setup, tmp_path):
    exe, data = setup
    path = tmp_path / "bad.ckpt"
    path.write_bytes(b"BLPACKPT\x01\x00\x00\x00\x05")
    proc = tool.run([exe] + args(data, 3, "--resume", str(path)), check=False)
    assert_one_line(proc, "ends early")


@pytest.mark.randomized
def test_checkpoint_of_another_kind_or_later_step_is_refused(setup,
                                                             tmp_path):
    """A trainable parameter without a momentum (the has-momentum byte
    flipped), and a checkpoint after the run's last step."""
    exe, data = setup
    first = Run(exe, data, tmp_path, "first", 2)
    proc = tool.run([exe] + args(data, 1, "--resume", first.checkpoint),
                    check=False)
    assert_one_line(proc, "is after step 2, past this run's last step 1")
    checkpoint = read_checkpoint(first.checkpoint)
    name = next(n for n, (_, m) in checkpoint.tensors.items()
                if m is not None)
    with open(first.checkpoint, "rb") as f:
        flipped = bytearray(f.read())
    flipped[checkpoint.flag_offsets[name]] = 0
    path = tmp_path / "flipped.ckpt"
    path.write_bytes(bytes(flipped))
    proc = tool.run([exe] + args(data, 3, "--resume", str(path)), check=False)
    assert_one_line(proc, "parameter '%s' has no momentum but is trainable"
                    % name)


@pytest.mark.randomized
def test_logged_losses_read_back_as_the_float32_losses(workdir, tmp_path):
    """With --lr 0 and batches of one sample, each step's loss is that of
    one sample under the initial weights, which --check-step writes as a
    float32 array: an epoch's logged losses, read back as float32, are
    exactly those arrays (%.7g would print most of them too short)."""
    model = models.residual_cnn(seed=7, in_channels=3, image_size=32)
    onnx_path = str(workdir / "one_sample_cnn.onnx")
    models.export(model, onnx_path, (1, 3, 32, 32))
    exe = tool.compile(onnx_path, str(workdir / "one_sample_cnn"),
                       batch_size=1)
    x, y = write_npy_split(tmp_path / "npy", "train", 8, fresh_rng())
    records, _ = tool.train(exe, str(tmp_path / "log.jsonl"), "--data",
                            str(tmp_path / "npy"), "--steps", 8, "--lr", 0)
    logged = sorted(np.float32(loss) for loss in tool.losses(records))
    checked = sorted(
        tool.check_step(exe, x[i:i + 1], y[i:i + 1],
                        str(tmp_path / str(i)))[0].reshape(()).item()
        for i in range(8))
    assert logged == [np.float32(loss) for loss in checked]
