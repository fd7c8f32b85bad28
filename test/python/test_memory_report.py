"""The memory timeline as a user sees it: the SVG blpa-opt writes opens in
a browser (headless Chromium renders it) and shows each category's band."""

import json
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from blpa import models, tool
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
