"""scripts/gpu-check's judges and limits (bench/gpu_run.py), on the build
machine: what counts as a failure on the GPU machine, the deadline, and
that OUT stays within what the device tool brings back. The whole run is
rehearsed by scripts/test (scripts/gpu-check --dry-run)."""

import json
import os
import subprocess
import sys
import tarfile
import time

import numpy as np
import pytest

from conftest import REPO, fresh_rng

sys.path.insert(0, os.path.join(REPO, "bench"))

import gpu_check  # noqa: E402
import gpu_run  # noqa: E402
from gpu_run import (DRY, FAILED, INCOMPLETE, NOT_AVAILABLE, NOT_RUN,  # noqa: E402
                     OK, Outcome)


def outcome(tmp_path, text, rc=0, timed_out=False):
    log = tmp_path / ("step%d.log" % len(list(tmp_path.iterdir())))
    log.write_text(text)
    return Outcome(rc, timed_out, 3.0, str(log))


def judge_kernel(tmp_path, text, rc=0, timed_out=False):
    return gpu_run.judge_kernel_test(text, outcome(tmp_path, text, rc,
                                                   timed_out))


def test_kernel_test_passes_only_when_it_ran(tmp_path):
    assert judge_kernel(tmp_path, "PASS conv\n4760 passed, 0 failed\n") == (
        OK, "4760 passed, 0 failed")
    # Without a device the test exits 0 saying skipped: a failure here.
    status, detail = judge_kernel(
        tmp_path, "blpa-cuda-kernel-test: skipped: no CUDA device (no "
        "CUDA-capable device is detected)\n")
    assert status == FAILED and "skipped" in detail
    assert judge_kernel(tmp_path, "12 passed, 2 failed\n", rc=1)[0] == FAILED
    assert judge_kernel(tmp_path, "0 passed, 0 failed\n")[0] == FAILED
    assert judge_kernel(tmp_path, "PASS conv\n")[0] == FAILED
    assert judge_kernel(tmp_path, "4760 passed, 0 failed\n", rc=-11)[0] == \
        FAILED
    assert judge_kernel(tmp_path, "PASS conv\n", timed_out=True) == (
        FAILED, "timed out after 3 s")


def write_dump(path, loss, grads):
    os.makedirs(path / "grads")
    np.save(path / "loss.npy", np.float32(loss))
    for name, g in grads.items():
        np.save(path / "grads" / (name + ".npy"), g)


@pytest.mark.randomized
def test_parity_holds_the_relative_bar_per_gradient_and_nan_fails(tmp_path):
    """A CUDA dump whose gradients differ from the CPU's by a third of the
    bar (in a random direction) passes, so does rounding noise on a
    gradient that is zero up to rounding; 3x the bar on one tensor, a loss
    off by 3x the bar, a NaN in one element and a NaN loss fail."""
    rng = fresh_rng()
    shapes = {"conv.weight": (16, 8, 3, 3), "conv.bias": (16,),
              "fc.weight": (10, 64)}
    grads = {n: rng.standard_normal(s).astype(np.float32)
             for n, s in shapes.items()}
    grads["conv.bias"] *= 1e-9   # before a batch norm: zero up to rounding
    loss = float(rng.uniform(0.5, 3))
    write_dump(tmp_path / "cpu", loss, grads)

    def judged(name, loss_got, scale, only=None, change=None):
        got = {n: g.copy() for n, g in grads.items()}
        for n, g in got.items():
            d = rng.standard_normal(g.shape)
            if only in (None, n):
                g += (scale * np.linalg.norm(g) * d /
                      np.linalg.norm(d)).astype(np.float32)
        got["conv.bias"] += 1e-8 * rng.standard_normal(16).astype(np.float32)
        if change:
            change(got)
        write_dump(tmp_path / name, loss_got, got)
        return gpu_run.judge_parity(str(tmp_path / "cpu"),
                                    str(tmp_path / name))

    status, detail, _ = judged("close", loss * (1 + 3e-4), 3e-4)
    assert status == OK, detail
    status, detail, _ = judged("far", loss, 3e-3, "conv.weight")
    assert status == FAILED and "at conv.weight" in detail, detail
    assert judged("far-loss", loss * (1 + 3e-3), 0)[0] == FAILED

    def nan_element(got):
        got["fc.weight"][rng.integers(10), rng.integers(64)] = np.nan
    status, detail, _ = judged("nan", loss, 0, change=nan_element)
    assert status == FAILED and "at fc.weight" in detail, detail
    assert judged("nan-loss", float("nan"), 0)[0] == FAILED

    def missing(got):
        del got["fc.weight"]
    assert judged("missing", loss, 0, change=missing)[0] == FAILED


def step_log(losses):
    """A training log as the driver writes it (--log)."""
    return "".join('{"step": %d, "loss": %s, "lr": 0.01, "images_per_s": '
                   '100.0, "step_ms": %.3f}\n' % (i + 1, l, 10.0 + i)
                   for i, l in enumerate(losses))


def test_replay_must_equal_the_run_without_graphs_bitwise():
    losses = ["2.30258512", "2.29112053", "2.27433968", "2.25118852",
              "2.2230916", "2.19157243"]
    log = step_log(losses)
    assert gpu_run.judge_replay(log, log, 6, "w", "w")[0] == OK
    # One float32 ulp at the last step, which 7 digits would not show.
    differ = losses[:5] + ["2.19157219"]
    status, detail = gpu_run.judge_replay(step_log(differ), log, 6, "w", "w")
    assert status == FAILED and detail.startswith("step 6:"), detail
    assert gpu_run.judge_replay(log, log, 6, "w", "v") == (
        FAILED, "6 losses equal, but the weights after step 6 differ")
    nan = losses[:3] + ["null"] + losses[4:]
    assert gpu_run.judge_replay(step_log(nan), step_log(nan), 6, "w",
                                "w")[0] == FAILED
    assert gpu_run.judge_replay(step_log(losses[:5]), step_log(losses[:5]),
                                6, "w", "w")[0] == FAILED
    # The NCCL check names its two runs.
    status, detail = gpu_run.judge_replay(
        step_log(differ), log, 6, "w", "w", names=("--data-parallel", "plain"))
    assert status == FAILED and detail == (
        "step 6: loss 2.19157219 --data-parallel, 2.19157243 plain"), detail


def test_two_identical_runs_replay_equal_and_their_log_is_exact(
        residual_cnn_exe, tmp_path):
    """Two single-threaded CPU runs of the same steps judge equal from the
    driver's own logs, whose losses are float32s written in 9 digits (7
    would lose the last bits and let a one-ulp difference through)."""
    exe, _ = residual_cnn_exe
    logs, saved = [], []
    for run in ("a", "b"):
        log, model = tmp_path / (run + ".jsonl"), tmp_path / (run + ".onnx")
        subprocess.run(
            [exe, "--synthetic", "--steps", "6", "--lr", "0.01", "--threads",
             "1", "--log", str(log), "--save", str(model)], check=True,
            capture_output=True, timeout=120)
        logs.append(log.read_text())
        saved.append(gpu_check.sha256(str(model)))
    status, detail = gpu_run.judge_replay(logs[0], logs[1], 6, *saved)
    assert status == OK, detail
    tokens = gpu_run.LOSS.findall(logs[0])
    for token in tokens:
        assert "%.9g" % np.float32(token) == token
    assert max(len(t.replace(".", "").lstrip("0")) for t in tokens) > 7


def test_training_run_nan_or_missing_steps_fail(tmp_path):
    done = outcome(tmp_path, "device memory: 5 bytes allocated at start\n")
    losses = ["2.3"] * 25
    status, _, ms = gpu_run.judge_training(step_log(losses), 25, done)
    assert status == OK and ms == 24.5  # median of steps 6..25
    nan = losses[:7] + ["null"] + losses[8:]
    assert gpu_run.judge_training(step_log(nan), 25, done)[0] == FAILED
    assert gpu_run.judge_training(step_log(losses[:20]), 25, done)[0] == FAILED
    diverged = outcome(tmp_path, "error: the loss is NaN at step 8", rc=1)
    status, detail, _ = gpu_run.judge_training(step_log(losses[:7]), 25,
                                               diverged)
    assert status == FAILED and "NaN at step 8" in detail
    assert gpu_run.device_bytes(done.text()) == 5


SANITIZER_CLEAN = """========= COMPUTE-SANITIZER
step 3/3  epoch 1  loss 2.3012  10.0 images/s  0:00 left
========= ERROR SUMMARY: 0 errors
"""
SANITIZER_ERRORS = """========= COMPUTE-SANITIZER
========= Invalid __global__ read of size 4 bytes
=========     at blpa_relu_grad+0x1d0
=========     by thread (255,0,0) in block (12,0,0)
========= Error: process didn't terminate successfully
========= ERROR SUMMARY: 2 errors
"""


def judge_sanitizer(tmp_path, text, rc=0, timed_out=False):
    return gpu_run.judge_sanitizer(text, outcome(tmp_path, text, rc,
                                                 timed_out))


def test_sanitizer_errors_fail_and_a_refusal_is_not_available(tmp_path):
    assert judge_sanitizer(tmp_path, SANITIZER_CLEAN)[0] == OK
    status, detail = judge_sanitizer(tmp_path, SANITIZER_ERRORS, rc=9)
    assert status == FAILED and "Invalid __global__ read" in detail, detail
    assert judge_sanitizer(tmp_path, SANITIZER_ERRORS, timed_out=True)[0] \
        == FAILED
    assert judge_sanitizer(tmp_path, "========= COMPUTE-SANITIZER\n",
                           timed_out=True)[0] == INCOMPLETE
    for refusal in (
            "========= Error: Target application terminated before first "
            "instrumented API call\n========= ERROR SUMMARY: 0 errors\n",
            "========= Internal Sanitizer Error: The Sanitizer got an "
            "error\n",
            "Unknown option: --report-api-errors\n", ""):
        assert judge_sanitizer(tmp_path, refusal, rc=1)[0] == NOT_AVAILABLE
    # The program itself failing under the tool, with no error found.
    assert judge_sanitizer(tmp_path, SANITIZER_CLEAN.replace(
        "step", "error: out of memory"), rc=1)[0] == FAILED


def test_pytorch_peak_counts_only_the_timed_steps():
    """The peak is reset after the warm-up (whose cuDNN algorithm search
    allocates workspaces), before the first timed step."""
    calls = []

    def step():
        calls.append("step")
        return 10.0 * len(calls), 2.0

    times, losses = gpu_check.timed_steps(step, 3, 4,
                                          lambda: calls.append("peak"))
    assert calls == ["step"] * 3 + ["peak"] + ["step"] * 4
    assert times == [50.0, 60.0, 70.0, 80.0] and len(losses) == 7


def test_largest_batch_is_the_ladders_last_that_fits():
    plans = {"128": 100, "256": 200, "512": 400}
    assert gpu_run.largest_fitting_batch(plans, 250) == (256, 320)
    assert gpu_run.largest_fitting_batch(plans, 99)[0] is None


def test_a_step_is_cut_at_the_deadline_and_its_processes_killed(tmp_path):
    """The whole process group goes at the deadline (a child started in
    the background never finishes), and a step with too little time left
    does not start."""
    run = gpu_run.Run(str(tmp_path / "out"),
                      deadline_s=gpu_run.RESERVE_S + 1.5)
    marker = tmp_path / "child-finished"
    start = time.monotonic()
    result = run.execute("sleep.log", ["sh", "-c", "(sleep 3; touch %s) & "
                                       "sleep 30" % marker], 60, minimum=0)
    assert result.timed_out and time.monotonic() - start < 10
    time.sleep(3)
    assert not marker.exists()
    assert run.execute("late.log", ["true"], 60, minimum=1) is None
    assert run.finish() == 1   # no row at all is no pass


def test_out_holds_only_its_files_rewritten_per_row(tmp_path, capsys,
                                                    monkeypatch):
    out = tmp_path / "out"
    run = gpu_run.Run(str(out))
    big = os.path.join(run.logs, "kernel-test.log")
    with open(big, "w") as f:
        f.write("PASS x\n" * 160000 + "FAIL conv 3x3: 0.5 off\n")
    run.row("kernel test", FAILED, "1 passed, 1 failed", big)
    table = json.load(open(out / "table.json"))
    assert table["verdict"] == "running" and len(table["rows"]) == 1
    run.row("parity", OK, "fine", None, worst=1e-6)
    run.row("replay", NOT_RUN, "3 s left")
    run.row("sanitizer", NOT_AVAILABLE, "not installed")
    assert sorted(os.listdir(out)) == sorted(gpu_run.OUT_FILES)
    with tarfile.open(out / "logs.tar.gz", "r:gz") as tar:
        body = tar.extractfile("logs/kernel-test.log").read()
    assert len(body) <= gpu_run.LOG_CAP + 100 and body.endswith(
        b"FAIL conv 3x3: 0.5 off\n")
    # Logs that do not compress are cut until the archive is well under
    # what comes back (here 1 MiB instead of 16, to be quick).
    monkeypatch.setattr(gpu_run, "MAX_FILE_BYTES", 1 << 20)
    for i in range(2):
        with open(os.path.join(run.logs, "noise%d.log" % i), "wb") as f:
            f.write(os.urandom(gpu_run.LOG_CAP))
    run.write_out()
    assert os.path.getsize(out / "logs.tar.gz") <= 1 << 19
    assert run.finish() == 1
    printed = capsys.readouterr().out
    assert "gpu-check: FAIL: 1 FAILED, 1 ok, 1 not run (deadline), " \
        "1 not available" in printed
    assert "kernel test: 1 passed, 1 failed\n  FAIL conv 3x3" in printed
    assert not os.path.exists(run.tmp)
    assert gpu_run.check_limits(str(out))[1] == []
    assert json.load(open(out / "table.json"))["verdict"].startswith("FAIL")
    assert (out / "summary.txt").read_text() == printed


def test_a_dry_run_of_only_rehearsed_steps_passes(tmp_path):
    run = gpu_run.Run(str(tmp_path / "out"), dry=True)
    run.row("bundle", OK, "fine")
    run.row("kernel test", DRY, "would run it")
    assert run.finish() == 0


def test_the_limits_checker_fails_what_would_not_come_back(tmp_path):
    def limits(files):
        out = tmp_path / str(len(os.listdir(tmp_path)))
        for name, size in files.items():
            path = out / name
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as f:
                f.truncate(size)
        return gpu_run.check_limits(str(out))

    passed, failed = limits({"summary.txt": 10, "a/b/table.md": 10})
    assert len(passed) == 5 and failed == []
    assert len(limits({"f%d" % i: 1 for i in range(7)})[1]) == 1
    assert len(limits({"big.txt": 16 << 20})[1]) == 1
    assert len(limits({"a/b/c/deep.txt": 1})[1]) == 1
    assert len(limits({"odd name.txt": 1})[1]) == 1
    assert len(limits({"logs.tar.gz": 4})[1]) == 1
    assert len(limits({})[1]) == 1
