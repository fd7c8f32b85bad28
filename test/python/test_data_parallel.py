"""Data-parallel training (blpa-opt --data-parallel, started by mpirun):
replicas at batch B together train as one process at batch ranks * B, a
two-rank run is bitwise reproducible and resumes bitwise, and a rank that
hangs or dies ends the job instead of leaving the others waiting. With
--sync-batch-norm the same equivalence holds for a model with batch
norms.

Equivalence bound: the replicas compute the same sums as one process
except in order (each replica's loss gradient is a mean over its part of
the batch; the all-reduce adds the parts and halves or quarters them, both
exact scalings), so after S steps the weights differ by float32 rounding
carried through S updates. Over 20 fresh draws the largest difference
after 20 steps was below 2e-6 of each tensor's largest weight; the bar is
1e-5 (the losses: 1e-5 relative)."""

import json
import os
import signal
import struct
import subprocess
import time

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from blpa import models, tool
from conftest import fresh_rng
from test_data_formats import write_npy_split

pytestmark = pytest.mark.randomized

IMAGE = (1, 12, 12)
TRAIN_IMAGES = 320
STEPS = 20


# mpirun refuses root unless told twice; CI runs as root.
MPI_ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def mpirun(ranks, *command, timeout=300):
    """`command` as `ranks` replicas on this machine (more ranks than cores
    allowed: CI runs 4 on 2 cores)."""
    return subprocess.run(
        ["mpirun", "--oversubscribe", "-np", str(ranks)] +
        [str(part) for part in command],
        env=MPI_ENV, capture_output=True, text=True, timeout=timeout)


def smooth_cnn(batch_norms):
    """A small CNN whose every op is smooth (tanh, average pooling): the
    replicas' other summation order moves its values by rounding only, and
    no ReLU or max-pool edge can turn that into a different gradient (a
    flipped ReLU or argmax would, after a few steps, differ by far more
    than the bound)."""
    def norm(channels):
        return [torch.nn.BatchNorm2d(channels)] if batch_norms else []
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 3, padding=1), *norm(6), torch.nn.Tanh(),
        torch.nn.AvgPool2d(2),
        torch.nn.Conv2d(6, 8, 3, padding=1), *norm(8), torch.nn.Tanh(),
        torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 32), torch.nn.Tanh(),
        torch.nn.Linear(32, 10))


@pytest.fixture(scope="module")
def setup(workdir):
    """Two small CNNs, without and with batch norms, with fresh random
    weights, and a fresh random data set of 320 images (5 steps an epoch at
    batch 64)."""
    rng = fresh_rng()
    torch.manual_seed(int(rng.integers(2**31)))
    model = smooth_cnn(batch_norms=False)
    onnx_path = str(workdir / "dp_cnn.onnx")
    models.export(model, onnx_path, (1,) + IMAGE)
    data = workdir / "dp_data"
    for split, count in (("train", TRAIN_IMAGES), ("test", 640)):
        x, _ = write_npy_split(data, split, count, rng, shape=IMAGE)
        # Samples of very different scales: each batch's statistics, and so
        # each replica's running ones, differ by far (what the shared
        # evaluation must get right).
        x *= np.exp(rng.standard_normal((count, 1, 1, 1))).astype(np.float32)
        np.save(data / ("x_%s.npy" % split), x)

    def build(name, batch, *extra):
        return tool.compile(onnx_path, str(workdir / name), batch_size=batch,
                            extra=list(extra))
    # Small buckets: the 10 KiB of gradients make several.
    exes = {"dp16": build("dp16", 16, "--data-parallel", "--bucket-size",
                          "4KiB"),
            "one32": build("one32", 32), "one64": build("one64", 64)}
    bn_model = smooth_cnn(batch_norms=True)
    onnx_path = str(workdir / "dp_bn.onnx")
    models.export(bn_model, onnx_path, (1,) + IMAGE)
    exes.update({
        "bn_sync16": build("bn_sync16", 16, "--data-parallel",
                           "--sync-batch-norm"),
        "bn_own16": build("bn_own16", 16, "--data-parallel"),
        "bn_one32": build("bn_one32", 32), "bn_one64": build("bn_one64", 64)})
    return exes, str(data)


def train_args(data, steps, save, *more):
    return ["--data", data, "--steps", steps, "--lr", "0.05", "--seed", "5",
            "--threads", "1", "--eval-batches", "0", "--save", save] + list(more)


def weights(path):
    return {t.name: numpy_helper.to_array(t)
            for t in onnx.load(str(path)).graph.initializer}


def logged_losses(path):
    return [r["loss"] for r in tool.read_log(str(path)) if "loss" in r]


def check(proc):
    assert proc.returncode == 0, proc.stderr
    return proc


def worst_difference(path, reference):
    """The largest weight difference of `path` from `reference`, relative to
    the tensor's largest weight (running statistics included)."""
    ours, ref = weights(path), weights(reference)
    return max(np.abs(ours[name] - value).max() / np.abs(value).max()
               for name, value in ref.items())


@pytest.mark.parametrize("ranks,single,replica", [
    (2, "one32", "dp16"), (4, "one64", "dp16"),
    (2, "bn_one32", "bn_sync16"), (4, "bn_one64", "bn_sync16")])
def test_replicas_train_as_one_process_at_their_joint_batch(
        setup, tmp_path, ranks, single, replica):
    """Without batch norms, and with synchronized ones."""
    exes, data = setup
    tool.run([exes[single]] + train_args(
        data, STEPS, tmp_path / "one.onnx", "--log", tmp_path / "one.jsonl"))
    check(mpirun(ranks, exes[replica], *train_args(
        data, STEPS, tmp_path / "dp.onnx", "--log", tmp_path / "dp.jsonl")))
    worst = worst_difference(tmp_path / "dp.onnx", tmp_path / "one.onnx")
    print("largest weight difference / largest weight: %.3g" % worst)
    assert worst <= 1e-5
    # Only rank 0 logs; its loss is the job's (the replicas' mean).
    one_losses = logged_losses(tmp_path / "one.jsonl")
    dp_losses = logged_losses(tmp_path / "dp.jsonl")
    assert len(dp_losses) == STEPS
    np.testing.assert_allclose(dp_losses, one_losses, rtol=1e-5)


def test_batch_norms_of_each_replica_differ_from_synchronized_ones(
        setup, tmp_path):
    """By default (as DDP) each replica normalizes its own batch: the
    equivalence above then no longer holds, so it tests the
    synchronization."""
    exes, data = setup
    tool.run([exes["bn_one32"]] + train_args(data, 5, tmp_path / "one.onnx"))
    check(mpirun(2, exes["bn_own16"], *train_args(data, 5,
                                                  tmp_path / "own.onnx")))
    assert worst_difference(tmp_path / "own.onnx", tmp_path / "one.onnx") > 1e-3


def test_two_rank_runs_are_bitwise_reproducible(setup, tmp_path):
    exes, data = setup
    for run in ("a", "b"):
        check(mpirun(2, exes["dp16"], *train_args(
            data, 8, tmp_path / ("%s.onnx" % run))))
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


def test_resumed_two_rank_run_is_bitwise_the_uninterrupted_one(setup, tmp_path):
    exes, data = setup
    ckpt = tmp_path / "run.ckpt"
    check(mpirun(2, exes["dp16"], *train_args(
        data, STEPS, tmp_path / "whole.onnx")))
    check(mpirun(2, exes["dp16"], *train_args(
        data, 10, tmp_path / "half.onnx", "--checkpoint", ckpt)))
    check(mpirun(2, exes["dp16"], *train_args(
        data, STEPS, tmp_path / "resumed.onnx", "--resume", ckpt)))
    assert ((tmp_path / "whole.onnx").read_bytes() ==
            (tmp_path / "resumed.onnx").read_bytes())


def test_ranks_started_differently_are_refused(setup, tmp_path):
    exes, data = setup
    first = [str(a) for a in train_args(data, 4, tmp_path / "a.onnx")]
    second = first[:]
    second[second.index("0.05")] = "0.1"
    proc = subprocess.run(
        ["mpirun", "--oversubscribe", "-np", "1", exes["dp16"]] + first +
        [":", "-np", "1", exes["dp16"]] + second,
        env=MPI_ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    refusals = [line for line in proc.stderr.splitlines()
                if line.startswith("error: rank 1 of 2")]
    assert len(refusals) == 1, proc.stderr
    assert "started with another executable or other flags than rank 0" in refusals[0]
    assert not (tmp_path / "a.onnx").exists()


def test_ranks_resuming_after_different_steps_are_refused(setup, tmp_path):
    """The same command, but each rank's --resume names another file (a
    relative path, each rank in another folder, as on machines without a
    shared file system): the ranks agree on the step before training."""
    exes, data = setup
    for folder, steps in (("a", 4), ("b", 6)):
        (tmp_path / folder).mkdir()
        check(mpirun(2, exes["dp16"], *train_args(
            data, steps, tmp_path / folder / "half.onnx", "--checkpoint",
            tmp_path / folder / "run.ckpt")))
    argv = [str(a) for a in train_args(data, 10, "out.onnx",
                                       "--resume", "run.ckpt")]
    proc = subprocess.run(
        ["mpirun", "--oversubscribe", "-np", "1", "--wdir", str(tmp_path / "a"),
         exes["dp16"]] + argv + [":", "-np", "1", "--wdir",
                                 str(tmp_path / "b"), exes["dp16"]] + argv,
        env=MPI_ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    refusals = [line for line in proc.stderr.splitlines()
                if line.startswith("error: rank 1 of 2")]
    assert refusals == ["error: rank 1 of 2: resumes after step 6 but rank 0 "
                        "after step 4; give every rank the same --resume "
                        "checkpoint"], proc.stderr
    assert not (tmp_path / "a" / "out.onnx").exists()
    assert not (tmp_path / "b" / "out.onnx").exists()


def rank_pid(exe, rank):
    """The process id of replica `rank` running `exe`, once it exists."""
    for _ in range(200):
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    if not f.read().startswith(exe.encode() + b"\0"):
                        continue
                with open("/proc/%s/environ" % pid, "rb") as f:
                    env = f.read().split(b"\0")
            except OSError:
                continue
            if b"OMPI_COMM_WORLD_RANK=%d" % rank in env:
                return int(pid)
        time.sleep(0.05)
    raise AssertionError("replica %d of %s never started" % (rank, exe))


@pytest.mark.parametrize("fault", ["hang", "death"])
def test_a_failed_rank_ends_the_job(setup, tmp_path, fault):
    """A hung rank (stopped) is noticed by the others' time-out, which ends
    the job with one line naming the waiting rank; a dead one (killed) by
    mpirun, which names it. Either way nothing waits forever, and the last
    checkpoint resumes."""
    exes, data = setup
    ckpt = tmp_path / "job.ckpt"
    started = time.monotonic()
    job = subprocess.Popen(
        ["mpirun", "--oversubscribe", "-np", "2", exes["dp16"]] +
        [str(a) for a in train_args(data, 100000, tmp_path / "never.onnx",
                                    "--comm-timeout", "3", "--checkpoint",
                                    ckpt, "--checkpoint-every", "5")],
        env=MPI_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    pid = rank_pid(exes["dp16"], 1)
    time.sleep(1)  # well into training
    os.kill(pid, signal.SIGSTOP if fault == "hang" else signal.SIGKILL)
    try:
        _, stderr = job.communicate(timeout=60)
    finally:
        job.kill()
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert job.returncode != 0
    assert time.monotonic() - started < 60
    if fault == "hang":
        # Rank 0's line; mpirun's clean-up may wake the stopped rank long
        # enough for it to time out as well.
        lines = [l for l in stderr.splitlines()
                 if l.startswith("blpa runtime error: rank 0 of 2")]
        assert len(lines) == 1, stderr
        assert "within 3 s" in lines[0], lines[0]
        assert "another rank died or hangs" in lines[0], lines[0]
    else:
        assert "process rank 1" in stderr, stderr
    assert not (tmp_path / "never.onnx").exists()
    # The checkpoint rank 0 wrote last (atomically) carries the job on.
    (step,) = struct.unpack_from("<Q", ckpt.read_bytes(), 12)
    assert step >= 5 and step % 5 == 0
    check(mpirun(2, exes["dp16"], *train_args(
        data, step + 2, tmp_path / "resumed.onnx", "--resume", ckpt)))
    assert (tmp_path / "resumed.onnx").exists()


def test_compile_refusals(setup, workdir, tmp_path):
    """--data-parallel is for training on the CPU target (for now)."""
    model = str(workdir / "dp_cnn.onnx")
    for extra, message in (
            (["--infer", "--data-parallel"], "--data-parallel applies to --train only"),
            (["--train", "--sync-batch-norm"],
             "--sync-batch-norm needs --data-parallel"),
            (["--train", "--data-parallel", "--bucket-size", "lots"],
             "--bucket-size")):
        proc = tool.run([tool.blpa_opt_path(), model, "--batch-size", "4",
                         "-o", str(tmp_path / "x")] + extra, check=False)
        assert proc.returncode == 1
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], proc.stderr


def test_profile_shows_each_bucket_on_the_step_timeline(setup, tmp_path):
    """--profile of a data-parallel run adds the communication: per bucket
    when its all-reduce was queued, began and ended, on the clock of the
    step's ops, and the summed times. Each bucket is queued right after the
    backward op that finishes its last gradient, so before the step's last
    op; the overlap is a part of the all-reduce time."""
    exes, data = setup
    profile = tmp_path / "profile.json"
    check(mpirun(2, exes["dp16"], *train_args(
        data, 4, tmp_path / "p.onnx", "--profile", profile)))
    with open(profile) as f:
        report = json.load(f)
    comm = report["data_parallel"]
    assert comm["ranks"] == 2 and comm["buckets"] >= 2
    timeline = comm["last_step"]
    ops, allreduces = timeline["ops"], timeline["allreduces"]
    assert len(ops) == len(report["ops"])
    assert len(allreduces) == comm["buckets"]
    waits = [op for op in ops if op[2:] == ["wait"]]
    assert len(waits) == comm["buckets"]
    step_end = max(op[1] for op in ops)
    for queued, began, ended in allreduces:
        assert 0 <= queued <= began <= ended <= step_end
    # Buckets go out in order, the first before the backward pass ends.
    assert [a[0] for a in allreduces] == sorted(a[0] for a in allreduces)
    assert allreduces[0][0] < min(w[0] for w in waits)
    assert 0 <= comm["overlapped_seconds"] <= comm["allreduce_seconds"]
    assert comm["wait_seconds"] > 0


@pytest.mark.parametrize("ranks", [2, 3])
def test_shared_evaluation_is_that_of_the_saved_model(setup, tmp_path, ranks):
    """The replicas deal the test batches among them (3 ranks: unevenly)
    and add up their sums, having taken rank 0's running statistics first:
    the logged accuracy and loss are those of the model --save-inference
    writes, run here over the whole test split (the loss in float64 from
    its logits)."""
    exes, data = setup
    saved = tmp_path / "trained.onnx"
    args = train_args(data, 40, tmp_path / "unused.onnx",
                      "--log", tmp_path / "log.jsonl",
                      "--save-inference", saved)
    args.remove("--eval-batches")
    args.remove("0")
    check(mpirun(ranks, exes["bn_own16"], *args))
    (record,) = [r for r in tool.read_log(str(tmp_path / "log.jsonl"))
                 if "test_accuracy" in r]
    x = np.load(os.path.join(data, "x_test.npy"))
    y = np.load(os.path.join(data, "y_test.npy"))
    # In batches of the evaluation's size, so that every kernel sees the
    # shapes it saw there and rounds alike (no argmax can flip).
    infer = tool.compile(str(saved), str(tmp_path / "infer"), train=False,
                         batch_size=16)
    logits = np.concatenate([
        tool.infer(infer, [x[i:i + 16]], str(tmp_path / ("out%d" % i)))[0]
        for i in range(0, len(x), 16)])
    assert record["test_images"] == len(x)
    assert record["test_accuracy"] == np.mean(logits.argmax(1) == y)
    z = logits.astype(np.float64)
    top = z.max(1)
    losses = np.log(np.exp(z - top[:, None]).sum(1)) + top - z[np.arange(len(y)), y]
    assert abs(record["test_loss"] - losses.mean()) <= 1e-6 * losses.mean()
