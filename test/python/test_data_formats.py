"""The training data formats besides (Fashion-)MNIST IDX: CIFAR-10/100
binary files (the paper's data; the tests write small files in that format,
since no CIFAR copy ships here) and NumPy arrays."""

import numpy as np
import pytest
import torch

from conftest import fresh_rng
from blpa import models, tool

# Every test writes data drawn by fresh_rng() (write_cifar, write_npy_split).
pytestmark = pytest.mark.randomized


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


def write_npy_split(directory, split, count, rng, classes=10, shape=(3, 32, 32)):
    directory.mkdir(exist_ok=True)
    x = rng.standard_normal((count,) + shape).astype(np.float32)
    y = rng.integers(0, classes, size=count).astype(np.int64)
    np.save(directory / ("x_%s.npy" % split), x)
    np.save(directory / ("y_%s.npy" % split), y)
    return x, y


def test_trains_on_numpy_arrays_in_a_directory(cifar_exe, tmp_path):
    rng = fresh_rng()
    data = tmp_path / "npy"
    write_npy_split(data, "train", 40, rng)
    write_npy_split(data, "test", 16, rng)
    records, _ = tool.train(cifar_exe, str(tmp_path / "log.jsonl"), "--data",
                            str(data), "--steps", 6, "--lr", 0.01)
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 6 and all(np.isfinite(losses))
    assert [r["test_images"] for r in records if "test_images" in r] == [16]


def test_numpy_pair_trains_the_same_as_the_directory(cifar_exe, tmp_path):
    """X.npy,Y.npy names a training split only; the same arrays in a
    directory give bitwise the same losses (same shuffle, same data)."""
    rng = fresh_rng()
    data = tmp_path / "npy"
    write_npy_split(data, "train", 24, rng)
    runs = []
    for spec in (str(data),
                 "%s/x_train.npy,%s/y_train.npy" % (data, data)):
        records, _ = tool.train(cifar_exe, str(tmp_path / "l.jsonl"),
                                "--data", spec, "--steps", 4, "--lr", 0.01)
        runs.append([r["loss"] for r in records if "loss" in r])
        assert not any("test_accuracy" in r for r in records)
    assert runs[0] == runs[1]


@pytest.mark.parametrize("case", ["shape", "truncated", "label", "count",
                                  "dtype"])
def test_bad_numpy_data_is_refused(cifar_exe, tmp_path, case):
    rng = fresh_rng()
    data = tmp_path / case
    x, y = write_npy_split(data, "train", 16, rng,
                           shape=(3, 28, 28) if case == "shape" else
                           (3, 32, 32))
    expected = {"shape": ("2352 values", "[8, 3, 32, 32]"),
                "truncated": ("x_train.npy", "data bytes but shape"),
                "label": ("labels go up to 12", "10 classes"),
                "count": ("15 labels for 16 samples",),
                "dtype": ("float32 array", "<f8")}[case]
    if case == "truncated":
        path = data / "x_train.npy"
        path.write_bytes(path.read_bytes()[:-64])
    elif case == "label":
        y[5] = 12
        np.save(data / "y_train.npy", y)
    elif case == "count":
        np.save(data / "y_train.npy", y[:15])
    elif case == "dtype":
        np.save(data / "x_train.npy", x.astype(np.float64))
    assert_one_line(run_data(cifar_exe, data, tmp_path), *expected)


def test_augmentation_is_seeded_and_changes_the_batches(cifar_exe,
                                                        tmp_path):
    """--augment crop4,flip: the same seed gives the same losses, and the
    losses differ from an unaugmented run (the images moved)."""
    rng = fresh_rng()
    data = tmp_path / "aug"
    write_npy_split(data, "train", 32, rng)

    def run(*flags):
        records, _ = tool.train(cifar_exe, str(tmp_path / "a.jsonl"),
                                "--data", str(data), "--steps", 5, "--lr",
                                0.01, *flags)
        return [r["loss"] for r in records if "loss" in r]

    augmented = run("--augment", "crop4,flip")
    assert augmented == run("--augment", "crop4,flip")
    assert augmented != run()
    assert augmented != run("--augment", "crop4,flip", "--seed", "9")
    proc = tool.run([cifar_exe, "--data", str(data), "--steps", 1, "--lr",
                     0.1, "--augment", "rotate"], check=False)
    assert_one_line(proc, "--augment: 'rotate' is not cropP")


def losses_and_accuracy(exe, log, data, *flags):
    records, stdout = tool.train(exe, log, "--data", str(data), "--steps", 5,
                               "--lr", 0.01, *flags)
    return ([r["loss"] for r in records if "loss" in r],
            [r["test_accuracy"] for r in records if "test_accuracy" in r],
            stdout)


def test_byte_images_are_normalized_by_the_training_split(cifar_exe,
                                                          tmp_path):
    """CIFAR bytes train as NumPy arrays normalized by hand with the
    training split's per-channel mean and std (of pixel / 255), the test
    split with the training split's figures; the printed figures are
    NumPy's."""
    rng = fresh_rng()
    data = tmp_path / "cifar"
    write_cifar(data, ["data_batch_1.bin"], 32, rng=rng)
    write_cifar(data, ["test_batch.bin"], 16, rng=rng)

    def read(name):
        raw = np.frombuffer((data / name).read_bytes(), np.uint8)
        raw = raw.reshape(-1, 3073)
        return (raw[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255,
                raw[:, 0].astype(np.int64))

    x_train, y_train = read("data_batch_1.bin")
    x_test, y_test = read("test_batch.bin")
    mean = x_train.astype(np.float64).mean(axis=(0, 2, 3))
    std = x_train.astype(np.float64).std(axis=(0, 2, 3))
    by_hand = tmp_path / "npy"
    by_hand.mkdir()
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        x = (x - mean[:, None, None].astype(np.float32)) / std[
            :, None, None].astype(np.float32)
        np.save(by_hand / ("x_%s.npy" % split), x.astype(np.float32))
        np.save(by_hand / ("y_%s.npy" % split), y)
    log = str(tmp_path / "n.jsonl")
    losses, accuracy, stdout = losses_and_accuracy(cifar_exe, log, data)
    expected_losses, expected_accuracy, _ = losses_and_accuracy(
        cifar_exe, log, by_hand)
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-5)
    assert accuracy == expected_accuracy
    line = next(l for l in stdout.splitlines() if l.startswith("normalizing"))
    assert "mean " + ",".join("%.4f" % m for m in mean) in line
    assert "std " + ",".join("%.4f" % s for s in std) in line
    assert "measured on the training split" in line
    # `auto` is the default for bytes; `none` is pixel / 255 as it is.
    assert losses_and_accuracy(cifar_exe, log, data, "--normalize",
                               "auto")[0] == losses
    assert losses_and_accuracy(cifar_exe, log, data, "--normalize",
                               "none")[0] != losses


def test_normalize_flag_on_numpy_arrays(cifar_exe, tmp_path):
    """NumPy arrays are used as they are unless --normalize says otherwise;
    given figures (one for all channels or one per channel) train as the
    arrays normalized by hand do, bitwise."""
    rng = fresh_rng()
    raw, by_hand = tmp_path / "raw", tmp_path / "by_hand"
    x, y = write_npy_split(raw, "train", 24, rng)
    mean = np.float32([0.5, -0.25, 0.125])
    std = np.float32([2.0, 0.5, 1.5])
    by_hand.mkdir()
    np.save(by_hand / "x_train.npy",
            ((x - mean[:, None, None]) / std[:, None, None]).astype(
                np.float32))
    np.save(by_hand / "y_train.npy", y)
    log = str(tmp_path / "n.jsonl")
    given = losses_and_accuracy(cifar_exe, log, raw, "--normalize",
                                "0.5,-0.25,0.125:2,0.5,1.5")[0]
    assert given == losses_and_accuracy(cifar_exe, log, by_hand)[0]
    as_is = losses_and_accuracy(cifar_exe, log, raw)
    assert as_is[0] != given and "normalizing" not in as_is[2]
    assert as_is[0] == losses_and_accuracy(cifar_exe, log, raw,
                                           "--normalize", "none")[0]


@pytest.mark.parametrize("value,message", [
    ("0.5", "no ':' between the means and the standard deviations"),
    ("0.5:0", "standard deviations must be positive"),
    ("a:1", "'a' is not a number"),
    ("0.1,0.2:1", "2 mean values for data with 3 channels"),
])
def test_bad_normalize_values_are_refused(cifar_exe, tmp_path, value,
                                          message):
    rng = fresh_rng()
    write_npy_split(tmp_path / "d", "train", 16, rng)
    proc = tool.run([cifar_exe, "--data", str(tmp_path / "d"), "--steps", 1,
                     "--lr", 0.1, "--normalize", value], check=False)
    assert_one_line(proc, message)
