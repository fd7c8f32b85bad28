"""Learning-rate schedules, warm-up, epochs and periodic evaluation: the
rate of every step against a hand-computed list."""

import math

import numpy as np
import pytest

from blpa import models, tool
from test_data_formats import assert_one_line, write_cifar


@pytest.fixture(scope="module")
def small_exe(workdir):
    model = models.residual_cnn(seed=4, in_channels=3, image_size=32)
    onnx_path = str(workdir / "schedule_cnn.onnx")
    models.export(model, onnx_path, (1, 3, 32, 32))
    return tool.compile(onnx_path, str(workdir / "schedule_cnn"), batch_size=4)


def rates(exe, tmp_path, *flags):
    """The logged rate of each step of a synthetic run whose epoch is 2
    batches."""
    records, _ = tool.train(exe, str(tmp_path / "log.jsonl"), "--synthetic",
                            "--synthetic-batches", 2, "--lr", 0.1, *flags)
    return [r["lr"] for r in records if "lr" in r]


@pytest.mark.parametrize("flags,expected", [
    (("--steps", 5), [0.1] * 5),
    (("--steps", 10, "--lr-schedule", "step:2,4:0.5"),
     [0.1] * 4 + [0.05] * 4 + [0.025] * 2),
    (("--steps", 8, "--lr-schedule", "cosine"),
     [0.05 * (1 + math.cos(math.pi * t / 8)) for t in range(8)]),
    (("--steps", 6, "--warmup", 3), [0.1 / 3, 0.2 / 3, 0.1, 0.1, 0.1, 0.1]),
    (("--steps", 6, "--warmup", 2, "--lr-schedule", "step:1:0.1"),
     [0.05, 0.1, 0.01, 0.01, 0.01, 0.01]),
    (("--epochs", 3, "--lr-schedule", "step:2:0.5"),
     [0.1] * 4 + [0.05] * 2),
])
def test_rate_of_every_step(small_exe, tmp_path, flags, expected):
    got = rates(small_exe, tmp_path, *flags)
    assert len(got) == len(expected)
    assert np.allclose(got, expected, rtol=1e-7, atol=0), (got, expected)


@pytest.mark.parametrize("flags,message", [
    (("--steps", 2, "--lr-schedule", "linear"), "--lr-schedule 'linear'"),
    (("--steps", 2, "--lr-schedule", "step:a:0.5"), "step:E1,E2"),
    (("--steps", 2, "--lr-schedule", "step:2:0"), "step:E1,E2"),
    (("--steps", 2, "--epochs", 2), "--steps or --epochs, not both"),
])
def test_bad_schedule_flags_are_refused(small_exe, tmp_path, flags,
                                        message):
    proc = tool.run([small_exe, "--synthetic", "--lr", 0.1] + list(flags),
                    check=False)
    assert_one_line(proc, message)


@pytest.mark.randomized
def test_evaluates_every_k_steps_and_at_the_end(small_exe, tmp_path):
    data = tmp_path / "c10"
    write_cifar(data, ["data_batch_1.bin"], 24)
    write_cifar(data, ["test_batch.bin"], 8)
    records, _ = tool.train(small_exe, str(tmp_path / "log.jsonl"), "--data",
                            str(data), "--steps", 5, "--lr", 0.01,
                            "--eval-every", 2)
    assert [r["after_step"] for r in records if "test_accuracy" in r] == \
        [2, 4, 5]


def test_progress_is_one_rewritten_line_on_a_terminal(small_exe):
    """On a terminal every step rewrites one line (carriage return, erase
    to the end of line); through a pipe the lines are plain."""
    import os
    import pty
    import subprocess
    master, slave = pty.openpty()
    proc = subprocess.Popen([small_exe, "--synthetic", "--steps", "30",
                             "--lr", "0.01"], stdout=slave,
                            stderr=subprocess.PIPE)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=60)
    os.close(master)
    text = out.decode()
    assert proc.returncode == 0
    assert text.count("\rstep ") == 30 and "\x1b[K" in text
    assert "step 30/30  epoch 30  loss " in text and " left\r\n" in text
    piped = tool.run([small_exe, "--synthetic", "--steps", 40, "--lr", 0.01])
    # A line every twentieth of the run.
    assert "\r" not in piped.stdout and piped.stdout.count(" left\n") == 20
