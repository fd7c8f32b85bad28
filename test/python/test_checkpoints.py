"""Checkpoints: a run resumed from one (after --steps ran out, SIGINT or
SIGKILL) continues with bitwise the losses of a run never interrupted."""

import json
import os
import signal
import subprocess
import time

import pytest

from blpa import models, tool
from test_data_formats import write_cifar

# The module's data set is drawn by fresh_rng() (write_cifar).
pytestmark = pytest.mark.randomized


@pytest.fixture(scope="module")
def setup(workdir):
    """A model with batch norms (running statistics to restore) on a small
    CIFAR-format data set: 6 batches an epoch, so runs cross epochs (the
    shuffled order must be replayed)."""
    model = models.residual_cnn(seed=6, in_channels=3, image_size=32)
    onnx_path = str(workdir / "ckpt_cnn.onnx")
    models.export(model, onnx_path, (1, 3, 32, 32))
    exe = tool.compile(onnx_path, str(workdir / "ckpt_cnn"), batch_size=4)
    data = workdir / "ckpt_data"
    write_cifar(data, ["data_batch_1.bin"], 24)
    write_cifar(data, ["test_batch.bin"], 8)
    return exe, str(data)


def args(data, steps, *more):
    # A step schedule: its rates depend on the step, not on --steps (cosine's
    # would differ between a 9-step and a 20-step run).
    return ["--data", data, "--steps", str(steps), "--lr", "0.05",
            "--lr-schedule", "step:2:0.5", "--seed", "3", "--eval-batches",
            "0"] + list(more)


def losses(log):
    with open(log) as f:
        return {r["step"]: r["loss"] for r in map(json.loads, f)
                if "loss" in r}


def run(exe, tmp_path, name, *flags):
    log = str(tmp_path / (name + ".jsonl"))
    tool.run([exe] + list(flags) + ["--log", log])
    return losses(log)


def test_resume_after_the_last_step(setup, tmp_path):
    exe, data = setup
    whole = run(exe, tmp_path, "whole", *args(data, 20))
    ckpt = str(tmp_path / "c.ckpt")
    first = run(exe, tmp_path, "first", *args(data, 9, "--checkpoint", ckpt))
    second = run(exe, tmp_path, "second",
                 *args(data, 20, "--resume", ckpt, "--checkpoint", ckpt))
    assert sorted(first) == list(range(1, 10))
    assert sorted(second) == list(range(10, 21))
    assert {**first, **second} == whole


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


def resumed_matches(exe, data, tmp_path, ckpt, done):
    """Resumes `ckpt` (written after `done` steps) for 4 more steps and
    compares them with an uninterrupted run."""
    whole = run(exe, tmp_path, "whole", *args(data, done + 4))
    resumed = run(exe, tmp_path, "resumed",
                  *args(data, done + 4, "--resume", ckpt))
    assert sorted(resumed) == list(range(done + 1, done + 5))
    assert all(resumed[s] == whole[s] for s in resumed)


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
    assert done == max(losses(log))
    resumed_matches(exe, data, tmp_path, ckpt, done)


def test_sigkill_resumes_from_the_last_periodic_checkpoint(setup, tmp_path):
    exe, data = setup
    ckpt, log = str(tmp_path / "c.ckpt"), str(tmp_path / "run.jsonl")
    proc = start(exe, data, log, "--checkpoint", ckpt,
                 "--checkpoint-every", "3")
    wait_for_steps(log, 8, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    leftovers = [f for f in os.listdir(tmp_path) if ".tmp" in f]
    # The checkpoint is whole (written atomically): resuming it works, from
    # a step that is a multiple of 3.
    probe = subprocess.run([exe] + args(data, 1, "--resume", ckpt),
                           capture_output=True, text=True)
    resumed_line = [line for line in probe.stdout.splitlines()
                    if line.startswith("resumed after step ")][0]
    done = int(resumed_line.split()[3])
    assert done % 3 == 0 and done >= 6
    resumed_matches(exe, data, tmp_path, ckpt, done)
    assert not [f for f in leftovers if f.startswith("c.ckpt")]


def test_bad_checkpoint_is_refused(setup, tmp_path):
    exe, data = setup
    path = tmp_path / "bad.ckpt"
    path.write_bytes(b"BLPACKPT\x01\x00\x00\x00\x05")
    proc = tool.run([exe] + args(data, 3, "--resume", str(path)), check=False)
    assert proc.returncode == 1
    assert "ends early" in proc.stderr and len(
        proc.stderr.strip().splitlines()) == 1
