"""Inference on ONNX's own backend node tests (libonnx-testdata): every
model blpa-opt imports is compiled with --infer, run on the stored inputs
and compared with the stored outputs."""

import glob
import os

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from blpa import tool

NODE_TESTS = "/usr/include/onnx/backend/test/data/node"

# Tests that must import (supported ops and attributes); the rest of the
# suite must either pass or fail cleanly.
SUPPORTED_PREFIXES = ("test_conv_", "test_relu", "test_gemm_", "test_flatten",
                      "test_globalaveragepool", "test_matmul_2d")
SUPPORTED_NAMES = {"test_batchnorm_example", "test_batchnorm_epsilon",
                   "test_maxpool_2d_default", "test_averagepool_2d_default",
                   "test_add", "test_add_bcast", "test_identity"}


def node_tests():
    return sorted(glob.glob(os.path.join(NODE_TESTS, "*", "model.onnx")))


def load_tensors(directory, prefix):
    files = sorted(glob.glob(os.path.join(directory, prefix + "_*.pb")),
                   key=lambda f: int(f.rsplit("_", 1)[1][:-3]))
    tensors = []
    for path in files:
        tensor = onnx.TensorProto()
        with open(path, "rb") as f:
            tensor.ParseFromString(f.read())
        tensors.append(numpy_helper.to_array(tensor))
    return tensors


def test_node_test_suite_is_installed():
    assert len(node_tests()) > 500


@pytest.mark.parametrize("model", node_tests(),
                         ids=lambda p: os.path.basename(os.path.dirname(p)))
def test_node_model(model, tmp_path):
    name = os.path.basename(os.path.dirname(model))
    proc = tool.run([tool.blpa_opt_path(), model, "--infer", "-o",
                     tmp_path / "exe"], check=False)
    if proc.returncode != 0:
        # Unsupported: one clear line, never a crash.
        assert proc.returncode == 1, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert not name.startswith(SUPPORTED_PREFIXES), proc.stderr
        assert name not in SUPPORTED_NAMES, proc.stderr
        return
    data = os.path.join(os.path.dirname(model), "test_data_set_0")
    inputs = [x.astype(np.float32) for x in load_tensors(data, "input")]
    expected = load_tensors(data, "output")
    outputs = tool.infer(str(tmp_path / "exe"), inputs, str(tmp_path / "d"))
    assert len(outputs) == len(expected)
    for out, ref in zip(outputs, expected):
        assert out.shape == ref.shape
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
