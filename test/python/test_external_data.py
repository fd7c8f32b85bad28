"""Models with ONNX external data (initializers in a file beside the .onnx,
as models over 2 GiB must be saved): they compile and train exactly like
the same model saved inline, --weights reads them, --save writes them."""

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import fresh_rng
from blpa import models, tool
from test_errors import assert_one_line_error


@pytest.fixture(scope="module")
def both_layouts(tmp_path_factory):
    """The residual CNN saved inline and with every initializer external
    (in model.onnx.data), each compiled for batch 4."""
    root = tmp_path_factory.mktemp("external")
    os.makedirs(root / "inline")
    os.makedirs(root / "external")
    inline = str(root / "inline" / "model.onnx")
    models.export(models.residual_cnn(seed=1), inline, (1, 3, 16, 16))
    external = str(root / "external" / "model.onnx")
    onnx.save_model(onnx.load(inline), external, save_as_external_data=True,
                    location="model.onnx.data", size_threshold=0)
    stored = onnx.load(external, load_external_data=False)
    assert all(t.data_location == TensorProto.EXTERNAL
               for t in stored.graph.initializer)
    exes = {name: tool.compile(path, str(root / name / "exe"), batch_size=4)
            for name, path in (("inline", inline), ("external", external))}
    return {"inline": inline, "external": external, "exes": exes}


def check_step(exe, tmp_path, name, *extra):
    """--check-step on a fixed batch; returns (loss, grads) as bytes, for
    bitwise comparison."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 16, 16)).astype(np.float32)
    y = rng.integers(0, 10, size=4).astype(np.int64)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    dump = tmp_path / name
    tool.run([exe, "--check-step", "--inputs", tmp_path / "x.npy",
              "--labels", tmp_path / "y.npy", "--dump", dump, *extra])
    grads = tool.load_grads(str(dump))
    loss = np.load(dump / "loss.npy")
    return loss.tobytes(), {k: g.tobytes() for k, g in grads.items()}


def initializers(path):
    return {t.name: numpy_helper.to_array(t)
            for t in onnx.load(path).graph.initializer}


def test_gradients_equal_the_inline_model(both_layouts, tmp_path):
    exes = both_layouts["exes"]
    inline = check_step(exes["inline"], tmp_path, "inline")
    # The executable embeds the external model's values inline...
    assert check_step(exes["external"], tmp_path, "embedded") == inline
    # ...and --weights reads them from the data file.
    assert check_step(exes["external"], tmp_path, "weights", "--weights",
                      both_layouts["external"]) == inline
    assert len(inline[1]) > 10


def test_save_writes_external_data_that_loads_back(both_layouts, tmp_path):
    exes = both_layouts["exes"]
    train = ["--synthetic", "--steps", 2, "--lr", 0.05, "--seed", 3]
    os.makedirs(tmp_path / "out")
    saved = str(tmp_path / "out" / "trained.onnx")
    records, stdout = tool.train(
        exes["external"], str(tmp_path / "external.jsonl"), *train,
        "--weights", both_layouts["external"], "--save", saved)
    assert "(weights in %s.data)" % saved in stdout
    # Weights that started inline are saved inline.
    saved_inline = str(tmp_path / "inline.onnx")
    inline_records, _ = tool.train(exes["inline"],
                                   str(tmp_path / "inline.jsonl"), *train,
                                   "--save", saved_inline)
    assert tool.losses(records) == tool.losses(inline_records)
    assert len(tool.losses(records)) == 2
    assert not os.path.exists(saved_inline + ".data")

    onnx.checker.check_model(saved)
    stored = onnx.load(saved, load_external_data=False)
    locations = {e.value for t in stored.graph.initializer
                 for e in t.external_data if e.key == "location"}
    assert locations == {"trained.onnx.data"}
    assert not [f for f in os.listdir(tmp_path / "out") if ".tmp" in f]
    after, expected = initializers(saved), initializers(saved_inline)
    assert after.keys() == expected.keys()
    for name in expected:
        assert after[name].tobytes() == expected[name].tobytes(), name
    before = initializers(both_layouts["external"])
    assert not np.array_equal(before["conv1.weight"], after["conv1.weight"])

    assert check_step(exes["external"], tmp_path, "resumed", "--weights",
                      saved) == check_step(exes["inline"], tmp_path,
                                           "resumed-inline", "--weights",
                                           saved_inline)


def test_weights_refuse_data_outside_the_model_directory(both_layouts,
                                                         tmp_path):
    """The driver applies the importer's checks: here a symlink out."""
    model = str(tmp_path / "model.onnx")
    with open(both_layouts["external"], "rb") as src, open(model, "wb") as f:
        f.write(src.read())
    os.symlink(both_layouts["external"] + ".data",
               str(tmp_path / "model.onnx.data"))
    proc = tool.run([both_layouts["exes"]["external"], "--synthetic",
                     "--steps", 1, "--lr", 0.1, "--weights", model],
                    check=False)
    assert_one_line_error(proc, "--weights " + model, "initializer '",
                          "resolves to", "outside the model's directory")


@pytest.mark.randomized
def test_weights_over_2gib_are_not_embedded(tmp_path):
    """A 2 GiB weight (a sparse file: no disk used) cannot be embedded: the
    compiler says so, the executable asks for --weights and runs with
    it."""
    classes, features = 8192, 65536
    weight = TensorProto(name="W", data_type=TensorProto.FLOAT,
                         dims=[classes, features],
                         data_location=TensorProto.EXTERNAL)
    for key, value in (("location", "big.onnx.data"), ("offset", "0"),
                       ("length", str(classes * features * 4))):
        weight.external_data.add(key=key, value=value)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["X", "W"], ["Y"], transB=1)], "big",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT,
                                       ["N", features])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT,
                                       ["N", classes])], [weight])
    model = str(tmp_path / "big.onnx")
    with open(model, "wb") as f:
        f.write(helper.make_model(graph, opset_imports=[
            helper.make_opsetid("", 15)]).SerializeToString())
    with open(model + ".data", "wb") as f:
        f.truncate(classes * features * 4)
    proc = tool.run([tool.blpa_opt_path(), model, "--infer", "--batch-size",
                     1, "-o", tmp_path / "exe"])
    assert "the weights are not embedded" in proc.stderr
    assert os.path.getsize(tmp_path / "exe") < 64 << 20
    x = fresh_rng().standard_normal((1, features)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    run = [tmp_path / "exe", "--inputs", tmp_path / "x.npy", "--dump",
           tmp_path / "dump"]
    assert_one_line_error(tool.run(run, check=False),
                          "the embedded model has no values for initializer "
                          "'W'", "--weights MODEL.onnx")
    tool.run(run + ["--weights", model])
    out = np.load(tmp_path / "dump" / "output_0.npy")
    assert out.shape == (1, classes) and not out.any()
