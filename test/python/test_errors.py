"""Bad input: one clear line, a non-zero exit, no crash."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from blpa import tool


def assert_one_line_error(proc, *fragments):
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:"), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    for bad in ("Traceback", "Assertion", "Aborted", "terminate called"):
        assert bad not in proc.stderr


def compile_cmd(model, tmp_path, *extra):
    return [tool.blpa_opt_path(), model, "--train", *extra, "-o",
            tmp_path / "exe"]


def test_truncated_model(residual_cnn_exe, workdir, tmp_path):
    data = (workdir / "residual_cnn.onnx").read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 2])
    proc = tool.run(compile_cmd(truncated, tmp_path, "--batch-size", 4),
                    check=False)
    assert_one_line_error(proc, "truncated.onnx", "cannot parse")
    assert not (tmp_path / "exe").exists()


def test_unknown_op(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Softsign", ["x"], ["y"], name="odd_node")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    path = tmp_path / "unknown.onnx"
    onnx.save(helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 15)]), path)
    proc = tool.run(compile_cmd(path, tmp_path), check=False)
    assert_one_line_error(proc, "unknown.onnx", "odd_node", "Softsign",
                          "supported ops")


def test_symbolic_batch_without_batch_size(residual_cnn_exe, workdir,
                                           tmp_path):
    proc = tool.run(compile_cmd(workdir / "residual_cnn.onnx", tmp_path),
                    check=False)
    assert_one_line_error(proc, "symbolic batch dimension", "--batch-size")


def test_missing_data_directory(residual_cnn_exe, tmp_path):
    exe, _ = residual_cnn_exe
    proc = tool.run([exe, "--data", tmp_path / "nowhere", "--steps", 1,
                     "--lr", 0.1], check=False)
    assert_one_line_error(proc, "nowhere")


@pytest.mark.parametrize("flag", [["--act-bits", "3"], ["--target", "tpu"]])
def test_invalid_compile_flags(residual_cnn_exe, workdir, tmp_path, flag):
    proc = tool.run(compile_cmd(workdir / "residual_cnn.onnx", tmp_path,
                                "--batch-size", 4, *flag), check=False)
    assert_one_line_error(proc, flag[0])


def test_wrong_input_shape(residual_cnn_exe, tmp_path):
    exe, _ = residual_cnn_exe
    np.save(tmp_path / "x.npy", np.zeros((3, 3, 16, 16), np.float32))
    np.save(tmp_path / "y.npy", np.zeros(3, np.int64))
    proc = tool.run([exe, "--check-step", "--inputs", tmp_path / "x.npy",
                     "--labels", tmp_path / "y.npy", "--dump",
                     tmp_path / "d"], check=False)
    assert_one_line_error(proc, "x.npy")
