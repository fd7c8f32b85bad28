"""The CIFAR-10/100 binary format (the paper's data): the tests write small
files in that format, since no CIFAR copy ships here."""

import numpy as np
import pytest
import torch

from conftest import fresh_rng
from blpa import models, tool


def write_cifar(directory, files, records, fine_labels=False, rng=None,
                classes=10):
    """Writes `records` random records to each of `files` (CIFAR-100 puts a
    coarse label byte before the fine one). Returns the labels written."""
    rng = rng or fresh_rng()
    directory.mkdir(exist_ok=True)
    labels = {}
    for name in files:
        y = rng.integers(0, classes, size=records).astype(np.uint8)
        pixels = rng.integers(0, 256, size=(records, 3072)).astype(np.uint8)
        head = [y[:, None]]
        if fine_labels:
            head.insert(0, rng.integers(0, 20, size=(records, 1)).astype(
                np.uint8))
        (directory / name).write_bytes(
            np.concatenate(head + [pixels], axis=1).tobytes())
        labels[name] = y
    return labels


@pytest.fixture(scope="module")
def cifar_exe(workdir):
    model = models.residual_cnn(seed=2, in_channels=3, image_size=32)
    onnx_path = str(workdir / "cifar_cnn.onnx")
    models.export(model, onnx_path, (1, 3, 32, 32))
    return tool.compile(onnx_path, str(workdir / "cifar_cnn"), batch_size=8)


@pytest.mark.parametrize("flavour", ["cifar10", "cifar100"])
def test_trains_on_cifar_binary_files(cifar_exe, tmp_path, flavour):
    data = tmp_path / flavour
    if flavour == "cifar10":
        write_cifar(data, ["data_batch_1.bin", "data_batch_2.bin"], 24)
        write_cifar(data, ["test_batch.bin"], 16)
    else:
        write_cifar(data, ["train.bin"], 40, fine_labels=True)
        write_cifar(data, ["test.bin"], 16, fine_labels=True)
    records, proc = tool.train(cifar_exe, str(tmp_path / "log.jsonl"),
                               "--data", str(data), "--steps", 6, "--lr",
                               0.01)
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 6 and all(np.isfinite(losses))
    accuracy = [r for r in records if "test_accuracy" in r]
    assert accuracy and accuracy[0]["test_images"] == 16


def run_data(exe, data, tmp_path):
    return tool.run([exe, "--data", str(data), "--steps", 1, "--lr", 0.01,
                     "--log", str(tmp_path / "x.jsonl")], check=False)


def assert_one_line(proc, *parts):
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for part in parts:
        assert part in lines[0], lines[0]


def test_truncated_cifar_file_is_refused(cifar_exe, tmp_path):
    data = tmp_path / "cut"
    write_cifar(data, ["data_batch_1.bin", "test_batch.bin"], 10)
    path = data / "data_batch_1.bin"
    path.write_bytes(path.read_bytes()[:-100])
    assert_one_line(run_data(cifar_exe, data, tmp_path), "data_batch_1.bin",
                    "not a whole number of 3073-byte CIFAR records")


def test_cifar_label_out_of_range_is_refused(cifar_exe, tmp_path):
    data = tmp_path / "labels"
    write_cifar(data, ["data_batch_1.bin", "test_batch.bin"], 10)
    path = data / "data_batch_1.bin"
    raw = bytearray(path.read_bytes())
    raw[3073 * 3] = 12
    path.write_bytes(bytes(raw))
    assert_one_line(run_data(cifar_exe, data, tmp_path), "record 3",
                    "label 12", "CIFAR-10 labels are 0 to 9")


def test_cifar_into_a_model_of_another_shape_is_refused(tmp_path):
    model = models.example_cnn(seed=1)
    onnx_path = str(tmp_path / "mnist.onnx")
    models.export(model, onnx_path, (1, 1, 28, 28))
    exe = tool.compile(onnx_path, str(tmp_path / "mnist"), batch_size=4)
    data = tmp_path / "c10"
    write_cifar(data, ["data_batch_1.bin", "test_batch.bin"], 8)
    assert_one_line(run_data(exe, data, tmp_path), "3072 values",
                    "[N, 3, 32, 32] for CIFAR", "[4, 1, 28, 28]")
