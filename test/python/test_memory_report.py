"""The memory timeline as a user sees it: the SVG blpa-opt writes opens in
a browser (headless Chromium renders it) and shows each category's band."""

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from blpa import models, test_models, tool
from conftest import fresh_rng

# The band colours of writeTimelineSvg (MemoryReport.cpp), by category.
BANDS = {"saved codes": (0x2b, 0x8c, 0xbe), "gradients": (0xe3, 0x4a, 0x33),
         "decoded": (0xbc, 0xbd, 0xdc), "other activations": (0xfd, 0xae, 0x6b)}


def render(svg, png):
    """Screenshots `svg` with headless Chromium (installed by
    scripts/install-deps); its absence is a failure."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "chromium not found; run scripts/install-deps"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                    "--window-size=960,420", "--screenshot=" + png,
                    "file://" + svg], check=True, capture_output=True,
                   timeout=120)
    return np.asarray(Image.open(png).convert("RGB"))


def test_timeline_svg_renders_in_chromium(tmp_path):
    model = models.preact_resnet(depth=11, widths=((8, 16), (8, 32), (8, 32)),
                                 image_size=16, seed=1)
    onnx_path = str(tmp_path / "preact.onnx")
    models.export(model, onnx_path)
    svg = str(tmp_path / "timeline.svg")
    tool.compile(onnx_path, str(tmp_path / "exe"), batch_size=8, act_bits=4,
                 extra=["--memory-timeline", svg])
    pixels = render(svg, str(tmp_path / "timeline.png"))
    assert pixels.shape[:2] == (420, 960)
    for name, colour in BANDS.items():
        covered = np.all(pixels == colour, axis=-1).sum()
        assert covered > 50, "the %s band is missing (%d pixels)" % (
            name, covered)


@pytest.mark.randomized
def test_scheduling_for_memory_lowers_the_peak_and_changes_no_result(
        tmp_path):
    """--schedule-for-memory (on by default) reorders independent ops: on
    resnet18 the weight gradient of a 512-channel convolution then dies at
    once instead of living through the data gradient. The step computes the
    same numbers, bit for bit, in check-step and over training steps with
    momentum (the updates move too)."""
    import torch
    import torchvision
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    model.input_shape = (1, 3, 32, 32)
    onnx_path = str(tmp_path / "resnet18.onnx")
    models.export(model, onnx_path)
    rng = fresh_rng()
    x = rng.standard_normal((4, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, 4).astype(np.int64)
    results = {}
    for flag in ("true", "false"):
        report = tmp_path / ("report-%s.json" % flag)
        exe = tool.compile(onnx_path, str(tmp_path / ("exe-" + flag)),
                           batch_size=4, memory_report=str(report),
                           extra=["--schedule-for-memory=" + flag])
        loss, grads = tool.check_step(exe, x, y, str(tmp_path / flag))
        records, _ = tool.train(exe, str(tmp_path / (flag + ".jsonl")),
                                "--synthetic", "--steps", 3, "--lr", 0.05,
                                "--momentum", 0.9, "--seed", 3)
        results[flag] = (json.loads(report.read_text()), loss, grads,
                         tool.losses(records))
    scheduled, original = results["true"], results["false"]
    assert (scheduled[0]["lower_bound_bytes"]
            < 0.95 * original[0]["lower_bound_bytes"])
    assert scheduled[1].tobytes() == original[1].tobytes()
    assert scheduled[2].keys() == original[2].keys()
    for name in original[2]:
        assert scheduled[2][name].tobytes() == original[2][name].tobytes()
    assert scheduled[3] == original[3] and len(scheduled[3]) == 3


# The predicted costs in the report (docs/design.md, "Memory plan"): each
# pinned choice of MixedCNN once. bn1 at 8 bits keeps the method's codes,
# which its batch norm writes in its own kernel (no encoder op of its own);
# Relu_1 at 4 and conv3 at 2 go through the generic quantizer; Relu_2 at 8
# gets a 1-bit mask (exact codes); conv4 is recomputed from conv3's codes.
COST_PINS = {"/bn1/BatchNormalization": "8", "/Relu_1": "4",
             "/conv3/Conv": "2", "/Relu_2": "8", "/conv4/Conv": "recompute",
             "/conv5/Conv": "float32"}
COST_BATCH = 8


def compile_with_report(onnx_path, folder, pins,
                        before="blpa-lower-to-llvm", extra=()):
    """blpa-opt's memory report of the model with `pins`, and its
    @train_step before pass `before` in generic form (by default the planned
    step, which the report describes)."""
    folder.mkdir()
    report = folder / "report.json"
    cmd = [tool.blpa_opt_path(), onnx_path, "--train", "--batch-size",
           COST_BATCH, "--memory-report", str(report), "--emit", "mlir",
           "-o", os.devnull, "--mlir-print-ir-before=" + before,
           "--mlir-print-op-generic", "--mlir-print-debuginfo"]
    for node, choice in pins.items():
        cmd += ["--act-policy", "%s=%s" % (node, choice)]
    cmd += list(extra)
    ir = folder / "step.mlir"
    ir.write_text(tool.run(cmd).stderr)
    return json.loads(report.read_text()), str(ir)


def printed_gradient_errors(ir):
    """--blpa-print-op-costs of `ir`: {(node, result, bits): the
    gradient-error proxy} of @train_step's saved results."""
    out = tool.run([tool.blpa_opt_path(), ir, "--blpa-print-op-costs", "-o",
                    os.devnull]).stdout
    errors = {}
    for node, result, e8, e4, e2 in re.findall(
            r"^saved @train_step #\d+ \S+ node=(\S*) result=(\d+) "
            r"error8=(\S+) error4=(\S+) error2=(\S+)$", out, re.M):
        for bits, error in (("8", e8), ("4", e4), ("2", e2)):
            errors[(node, int(result), bits)] = float(error)
    return errors


OPERATION = re.compile(
    r'^\s*(?:(%[\w.$-]+)(?::(\d+))? = )?"([\w.]+)"\((.*?)\)(.*)$')


def step_ops(ir):
    """The ops of @train_step in `ir` (generic form), in order, as dicts:
    name, results, operands, result types, phase, recompute id(s)."""
    ops, inside = [], False
    for line in open(ir):
        if '"func.func"()' in line:
            inside = 'sym_name = "train_step"' in line
            continue
        match = OPERATION.match(line)
        if not inside or not match:
            continue
        name, count = match.group(1), match.group(2)
        results = ([] if name is None else [name] if count is None else
                   ["%s#%d" % (name, i) for i in range(int(count))])
        rest = match.group(5)
        arrow = rest.rfind(") -> ")
        types = re.findall(r"!blpa\.packed<[^>]*>|tensor<[^>]*>",
                           rest[arrow:]) if arrow >= 0 else []
        phase = re.search(r'blpa\.phase = "(\w+)"', rest)
        rid = re.search(r"blpa\.recompute_id = (\d+)", rest)
        ids = re.search(r"blpa\.recomputes = array<i64(?:: ([\d, ]*))?>",
                        rest)
        ops.append({
            "name": match.group(3), "results": results,
            "operands": re.findall(r"%[\w.$#-]+", match.group(4)),
            "types": types, "phase": phase and phase.group(1),
            "recompute_id": rid and int(rid.group(1)),
            "recomputes": (None if not ids else
                           [int(v) for v in (ids.group(1) or "").split(",")
                            if v.strip()])})
        if match.group(3) == "func.return":
            inside = False
    return ops


def printed_op_seconds(ir, profile=None):
    """--blpa-print-op-costs of `ir` (calibrated by `profile`): {op index:
    seconds} of @train_step, and its total."""
    option = "--blpa-print-op-costs"
    if profile:
        option += "=profile=" + profile
    out = tool.run([tool.blpa_opt_path(), ir, option, "-o",
                    os.devnull]).stdout
    seconds = {int(i): float(s) for i, s in re.findall(
        r"^cost @train_step #(\d+) .* seconds=(\S+) shapes=\S*$", out,
        re.M)}
    total = float(re.search(r"^total @train_step seconds=(\S+)$", out,
                            re.M).group(1))
    return seconds, total


def shape_of(type_text):
    dims = re.match(r"(?:!blpa\.packed|tensor)<((?:\d+x)*)", type_text)
    return [int(d) for d in dims.group(1).split("x")[:-1]]


def added_seconds_by_tensor(ops, seconds):
    """The seconds each choice adds, restated from the IR: for codes (keyed
    (width or scheme, shape)), an encoder none of whose results a forward op
    reads and every backward op reading the codes but no backward value;
    for a recomputed op (keyed ("recompute", shape)), the ops naming its id
    in blpa.recomputes, a copy of n ops counting 1/n."""
    defined_by = {r: op for op in ops for r in op["results"]}
    readers = {}
    for op in ops:
        for operand in op["operands"]:
            readers.setdefault(operand, []).append(op)
    added = {}
    for index, op in enumerate(ops):
        if op["phase"] != "forward":
            continue
        if op["recompute_id"] is not None:
            copies = [(i, c) for i, c in enumerate(ops)
                      if c["recomputes"] and
                      op["recompute_id"] in c["recomputes"]]
            added[("recompute", shape_of(op["types"][0]).__repr__())] = sum(
                seconds[i] / len(c["recomputes"]) for i, c in copies)
        for value, type_text in zip(op["results"], op["types"]):
            if not type_text.startswith("!blpa.packed"):
                continue
            bits, scheme = re.search(r"i(\d+), (\w+)>", type_text).groups()
            choice = scheme if scheme in ("mask", "argmax", "region") else bits
            encoder_only = all(r["phase"] == "backward"
                               for v in op["results"]
                               for r in readers.get(v, []))
            total = seconds[index] if encoder_only else 0.0
            for reader in readers.get(value, []):
                from_forward = all(
                    o not in defined_by or
                    defined_by[o]["phase"] != "backward"
                    for o in reader["operands"])
                if reader["phase"] == "backward" and from_forward:
                    total += seconds[ops.index(reader)]
            added[(choice, shape_of(type_text).__repr__())] = total
    return added


def test_report_predicts_what_each_choice_adds(tmp_path):
    """Each saved tensor's predicted_seconds is the --blpa-print-op-costs
    seconds of the ops the IR attributes to its choice (restated here from
    the printed IR: encoders, decoders, recomputed copies), float32 entries
    add 0 and have no gradient error, codes of values have a positive one;
    predicted_step_seconds is the printed total; and without batch-norm
    codes (whose batch norm encodes in its own kernel, so that no op of its
    own is added) the float32 plan's step plus what the entries add is the
    pinned plan's step."""
    model = test_models.mixed_cnn(seed=0, image_size=16)
    onnx_path = models.export(model, str(tmp_path / "model.onnx"))
    report, ir = compile_with_report(onnx_path, tmp_path / "pinned",
                                     COST_PINS)
    seconds, total = printed_op_seconds(ir)
    # --blpa-print-op-costs prints 7 significant digits.
    assert report["predicted_step_seconds"] == pytest.approx(total, rel=1e-6)
    expected = added_seconds_by_tensor(step_ops(ir), seconds)
    choices = set()
    for entry in report["saved_tensors"]:
        choice = entry["choice"]
        choices.add(choice)
        if choice == "float32":
            assert entry["predicted_seconds"] == 0, entry
            assert entry["gradient_error"] == 0, entry
            continue
        key = (choice, repr(entry["shape"]))
        assert entry["predicted_seconds"] == pytest.approx(
            expected[key], rel=1e-6, abs=1e-15), entry
        if choice in ("8", "4", "2"):
            assert entry["gradient_error"] > 0, entry
        else:
            assert entry["gradient_error"] == 0, entry
        if entry.get("encoder") == "blpa.quantize" or choice == "recompute":
            assert entry["predicted_seconds"] > 0, entry
    assert {"float32", "8", "4", "2", "mask", "recompute"} <= choices

    # The gradient errors are CostModel::gradientError of the tensors before
    # compression (the recomputed copy of conv4 reads conv3's output too).
    _, before = compile_with_report(onnx_path, tmp_path / "uncompressed",
                                    COST_PINS,
                                    before="blpa-compress-activations")
    errors = printed_gradient_errors(before)
    for entry in report["saved_tensors"]:
        if entry["choice"] in ("8", "4", "2"):
            assert entry["gradient_error"] == pytest.approx(
                errors[(entry["node"], 0, entry["choice"])], rel=1e-6), entry

    # With every node recomputed, the batch norms' copies absorb their
    # ReLUs' copies (--blpa-fuse-batch-norm-relu) and the fused forward ops
    # stand for both: every copy's time is in some entry, none twice.
    everything, ir = compile_with_report(onnx_path, tmp_path / "recompute",
                                         {"*": "recompute"})
    seconds, _ = printed_op_seconds(ir)
    copies = [i for i, op in enumerate(step_ops(ir)) if op["recomputes"]]
    assert sum(e["predicted_seconds"] for e in everything["saved_tensors"]
               if e["choice"] == "recompute") == pytest.approx(
        sum(seconds[i] for i in copies), rel=1e-6)

    # Without bn1's codes every difference from the float32 plan is an op
    # some entry accounts for.
    pins = dict(COST_PINS, **{"/bn1/BatchNormalization": "float32"})
    pinned, _ = compile_with_report(onnx_path, tmp_path / "no_bn_codes", pins)
    plain, _ = compile_with_report(onnx_path, tmp_path / "float32", {})
    added = sum(e["predicted_seconds"] for e in pinned["saved_tensors"])
    assert added > 0
    assert plain["predicted_step_seconds"] + added == pytest.approx(
        pinned["predicted_step_seconds"], rel=1e-9)


def band_heights(svg, title):
    """The heights (pixels) of the timeline band `title` at each drawn op:
    its polygon runs along the band's top, then back along its bottom."""
    match = re.search(r'<polygon fill="[^"]*" points="([^"]*)"><title>%s'
                      r'</title>' % re.escape(title), svg)
    assert match, "no band " + title
    ys = [float(p.split(",")[1]) for p in match.group(1).split()]
    half = len(ys) // 2
    return [abs(a - b) for a, b in zip(ys[:half], reversed(ys[half:]))]


def test_timeline_shows_recomputed_values_in_their_own_band(tmp_path):
    """--memory-timeline draws recomputed values (results of
    --blpa-recompute's copies) in their own band: with every node
    recomputed it has live bytes, without recomputation none (the batch
    norms' ReLU is kept, --recompute-relu=false, so that no fused
    recomputation shows either). The legend names the saved codes'
    band."""
    model = test_models.mixed_cnn(seed=0, image_size=16)
    onnx_path = models.export(model, str(tmp_path / "model.onnx"))
    svgs = {}
    for name, pins in (("recompute", ["--act-policy", "*=recompute"]),
                       ("kept", [])):
        path = tmp_path / (name + ".svg")
        tool.compile(onnx_path, os.devnull, batch_size=COST_BATCH,
                     act_bits=0, emit="mlir",
                     extra=pins + ["--recompute-relu=false",
                                   "--memory-timeline", str(path)])
        svgs[name] = path.read_text()
    assert max(band_heights(svgs["recompute"], "recomputed activations")) > 1
    assert max(band_heights(svgs["kept"], "recomputed activations")) == 0
    assert max(band_heights(svgs["kept"], "saved activations, float32")) > 1
    assert ">saved codes (K-bit)</text>" in svgs["kept"]


def test_report_predictions_follow_the_profile(tmp_path):
    """With --profile, the report's times are the calibrated model's: each
    entry's predicted_seconds and the step's are what --blpa-print-op-costs
    with the same profile gives for the attributed ops, and they follow the
    profile: the same profile with every measured time tripled triples the
    step's. (Not "they differ from the analytical figures": the measured
    step spreads +-15% between runs around the analytical one on some
    machines, so a run can land within any bar of it.)"""
    model = test_models.mixed_cnn(seed=0, image_size=16)
    onnx_path = models.export(model, str(tmp_path / "model.onnx"))
    exe = tool.compile(onnx_path, str(tmp_path / "exe"),
                       batch_size=COST_BATCH)
    profile = str(tmp_path / "profile.json")
    tool.run([exe, "--synthetic", "--steps", 3, "--lr", 0.01,
              "--profile", profile])
    report, ir = compile_with_report(onnx_path, tmp_path / "calibrated",
                                     COST_PINS, extra=["--profile", profile])
    with open(profile) as f:
        tripled = json.load(f)
    for op in tripled["ops"]:
        op["mean_seconds"] *= 3
    tripled_path = str(tmp_path / "tripled.json")
    with open(tripled_path, "w") as f:
        json.dump(tripled, f)
    slower, _ = compile_with_report(onnx_path, tmp_path / "tripled",
                                    COST_PINS, extra=["--profile",
                                                      tripled_path])
    seconds, total = printed_op_seconds(ir, profile)
    assert report["predicted_step_seconds"] == pytest.approx(total, rel=1e-6)
    assert slower["predicted_step_seconds"] == pytest.approx(
        3 * report["predicted_step_seconds"], rel=1e-6)
    expected = added_seconds_by_tensor(step_ops(ir), seconds)
    for entry in report["saved_tensors"]:
        if entry["choice"] != "float32":
            assert entry["predicted_seconds"] == pytest.approx(
                expected[(entry["choice"], repr(entry["shape"]))], rel=1e-6,
                abs=1e-15), entry
