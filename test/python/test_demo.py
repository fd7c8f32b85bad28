"""scripts/demo's comparison (blpa.demo) on fabricated memory reports and
training logs: the figures it reads, the table it prints, its exit status.
The demo itself (two real trainings) is not run here."""

import json

import numpy as np
import pytest

from blpa import demo
from conftest import fresh_rng


def write_run(directory, name, report, records):
    """Writes a memory report and a JSONL log; returns their paths."""
    report_path = directory / ("%s.json" % name)
    log_path = directory / ("%s.jsonl" % name)
    report_path.write_text(json.dumps(report))
    log_path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(report_path), str(log_path)


def fabricated_run(rng, steps, loss_scale):
    """A report and a log as the compiler and the driver write them: random
    step times whose first two are slow (warm-up), losses falling by
    `loss_scale` over the run, an evaluation halfway and one at the end."""
    report = {"peak_bytes": int(rng.integers(1 << 20, 1 << 26)),
              "lower_bound_bytes": int(rng.integers(1 << 10, 1 << 20)),
              "saved_activation_bytes": int(rng.integers(1 << 10, 1 << 24)),
              "persistent_bytes": int(rng.integers(1 << 10, 1 << 20))}
    step_ms = rng.uniform(5, 50, steps)
    step_ms[:2] = rng.uniform(500, 1000, 2)
    losses = 2.3 * np.linspace(1, loss_scale, steps) * rng.uniform(
        0.9, 1.1, steps)
    records = []
    for step in range(steps):
        records.append({"step": step + 1, "loss": float(losses[step]),
                        "lr": 0.05, "images_per_s": 1000.0,
                        "step_ms": float(step_ms[step])})
        if step + 1 in (steps // 2, steps):
            records.append({"test_accuracy": float(rng.uniform(0.5, 1)),
                            "test_images": 9984, "after_step": step + 1})
    return report, records, losses, step_ms


def table_rows(text):
    """{row label: [exact, K-bit, ratio]} of the table in main's output."""
    rows = {}
    for line in text.splitlines():
        cells = [c for c in line.split("  ") if c.strip()]
        if len(cells) == 4:
            rows[cells[0].strip()] = [c.strip() for c in cells[1:]]
    return rows


@pytest.mark.randomized
def test_summary_restated(tmp_path):
    """Each figure of a Run equals its numpy restatement on the fabricated
    log: median step time without the two warm-up steps, the final (not the
    halfway) accuracy, the last-fifth / first-fifth loss ratio."""
    rng = fresh_rng()
    steps = int(rng.integers(10, 60))
    report, records, losses, step_ms = fabricated_run(rng, steps, 0.3)
    run = demo.load(*write_run(tmp_path, "run", report, records))
    fifth = steps // 5
    accuracies = [r["test_accuracy"] for r in records if "test_accuracy" in r]
    assert run.saved_bytes == report["saved_activation_bytes"]
    assert run.peak_bytes == report["peak_bytes"]
    assert run.accuracy == accuracies[1] != accuracies[0]
    assert run.step_ms == pytest.approx(np.median(step_ms[2:]), rel=1e-12)
    assert run.loss_ratio == pytest.approx(
        np.mean(losses[-fifth:]) / np.mean(losses[:fifth]), rel=1e-12)


@pytest.mark.randomized
def test_table_side_by_side(tmp_path, capsys):
    """main prints both runs' figures in their columns and the 4-bit /
    exact ratio of each, and exits 0 when both losses fell."""
    rng = fresh_rng()
    exact = fabricated_run(rng, 40, 0.3)
    compressed = fabricated_run(rng, 40, 0.3)
    status = demo.main(
        ["--exact", *write_run(tmp_path, "exact", *exact[:2]),
         "--compressed", "4", *write_run(tmp_path, "4", *compressed[:2])])
    out = capsys.readouterr().out
    assert status == 0, out
    assert ["exact", "4-bit", "ratio"] in [line.split()
                                           for line in out.splitlines()]
    rows = table_rows(out)
    for label, key in (("saved activations", "saved_activation_bytes"),
                       ("planned peak (arena)", "peak_bytes")):
        a, b = exact[0][key], compressed[0][key]
        assert rows[label] == [demo.format_bytes(a), demo.format_bytes(b),
                               "%.3fx" % (b / a)]
    final = [[r["test_accuracy"] for r in run[1] if "test_accuracy" in r][-1]
             for run in (exact, compressed)]
    assert rows["test accuracy"] == ["%.4f" % final[0], "%.4f" % final[1],
                                     "%.3fx" % (final[1] / final[0])]
    medians = [np.median(run[3][2:]) for run in (exact, compressed)]
    assert rows["median step time"] == [
        "%.2f ms" % medians[0], "%.2f ms" % medians[1],
        "%.3fx" % (medians[1] / medians[0])]
    assert out.count("below 0.6: ok") == 2


@pytest.mark.randomized
def test_flat_loss_fails(tmp_path, capsys):
    """A run whose loss did not fall makes main exit 1 and say which run,
    whichever side it is on; the table is still printed."""
    rng = fresh_rng()
    learning = write_run(tmp_path, "learning",
                         *fabricated_run(rng, 30, 0.3)[:2])
    flat = write_run(tmp_path, "flat", *fabricated_run(rng, 30, 1.0)[:2])
    for exact, compressed, bad in ((learning, flat, "4-bit"),
                                   (flat, learning, "exact")):
        status = demo.main(["--exact", *exact, "--compressed", "4",
                            *compressed])
        out = capsys.readouterr().out
        assert status == 1, out
        assert [line.split(":")[0] for line in out.splitlines()
                if "NOT below 0.6" in line] == [bad]
        assert "median step time" in out


@pytest.mark.parametrize("broken, message", [
    (lambda report, records: (report, [r for r in records
                                       if "test_accuracy" not in r]),
     "no test_accuracy"),
    (lambda report, records: ({k: v for k, v in report.items()
                               if k != "peak_bytes"}, records),
     "no 'peak_bytes'"),
    (lambda report, records: (report, records[:3] + records[-1:]),
     "at least 5"),
])
def test_missing_figure_is_one_line(tmp_path, capsys, broken, message):
    """A report or log without a figure the table needs: one error line
    naming the files, exit 1."""
    rng = np.random.default_rng(0)
    good = write_run(tmp_path, "good", *fabricated_run(rng, 20, 0.3)[:2])
    bad = write_run(tmp_path, "bad",
                    *broken(*fabricated_run(rng, 20, 0.3)[:2]))
    assert demo.main(["--exact", *good, "--compressed", "4", *bad]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert message in err[0] and bad[0] in err[0], err


def test_missing_file_is_one_line(tmp_path, capsys):
    missing = str(tmp_path / "absent.json")
    assert demo.main(["--exact", missing, missing, "--compressed", "4",
                      missing, missing]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "absent.json" in err[0], err


def test_format_bytes():
    assert demo.format_bytes(512) == "512 B"
    assert demo.format_bytes(1536) == "1.50 KiB"
    assert demo.format_bytes(3 * 2**20 + 2**19) == "3.50 MiB"
    assert demo.format_bytes(5 * 2**30) == "5.00 GiB"
