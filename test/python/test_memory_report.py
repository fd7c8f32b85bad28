"""The memory timeline as a user sees it: the SVG blpa-opt writes opens in
a browser (headless Chromium renders it) and shows each category's band."""

import shutil
import subprocess

import numpy as np
from PIL import Image

from blpa import models, tool

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
