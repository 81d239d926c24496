"""Tests for detkit.pictures.curves and the Curves callback: curves.png from a run's CSV log, plotting exactly the logged values."""

import csv
import math
import subprocess
import sys

import pytest
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import CSVLogger
from tiny import cpu_trainer, shapes_loader, tiny_module

from detkit.training.callbacks import Curves
from detkit.pictures.curves import draw_curves, find_metrics_csv, read_metrics


def _column(csv_path, name: str, x: str) -> tuple[list[float], list[float]]:
    """The non-empty cells of one column with their step or epoch, read independently of detkit."""
    xs, ys = [], []
    with open(csv_path, newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get(name) not in ("", None) and math.isfinite(float(row[name])):
                xs.append(float(row[x]))
                ys.append(float(row[name]))
    return xs, ys


@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    curves = Curves()
    trainer = cpu_trainer(root, callbacks=(curves, LearningRateMonitor("step")), max_epochs=2, log_every_n_steps=1,
                          logger=CSVLogger(root, name="csv"))  # fmt: skip
    loader = shapes_loader(num_images=6, batch_size=2)
    trainer.fit(tiny_module(warmup_steps=2), loader, loader)
    return root, curves


def test_fit_writes_curves_png_beside_the_csv_log(two_epoch_run):
    root, curves = two_epoch_run
    assert curves.path == root / "csv" / "version_0" / "curves.png"
    assert curves.path.stat().st_size > 10_000 and curves.path.read_bytes()[:4] == b"\x89PNG"
    assert find_metrics_csv(root) == root / "csv" / "version_0" / "metrics.csv"


def test_plotted_series_are_the_csv_values(two_epoch_run):
    root, _ = two_epoch_run
    csv_path = root / "csv" / "version_0" / "metrics.csv"
    per_step, per_epoch = read_metrics(csv_path)
    figure = draw_curves(per_step, per_epoch, smoothing=0.6)
    lines = {line.get_label(): line for ax in figure.axes for line in ax.lines}
    # Learning rates: each distinct curve drawn once, labelled by its first column and how many equal it.
    rates = [label for label in lines if label.startswith("lr-")]
    columns = [name for name in per_step if name.startswith("lr-")]
    assert len(rates) == len({(tuple(per_step[c][0]), tuple(per_step[c][1])) for c in columns}) >= 1
    lines["lr-AdamW/decay"] = lines[next(label for label in rates if label.startswith("lr-AdamW"))]
    checks = {"train/loss": "step", "train/loss_cls": "step", "val/loss": "epoch", "val/map": "epoch",
              "val/map_50": "epoch", "lr-AdamW/decay": "step"}  # fmt: skip
    for name, x in checks.items():
        xs, ys = _column(csv_path, name, x)
        assert len(ys) >= (6 if x == "step" else 2), name  # 3 steps x 2 epochs, 2 validations
        assert lines[name].get_xdata().tolist() == xs and lines[name].get_ydata().tolist() == pytest.approx(ys), name
    smoothed = lines["train/loss (smoothed)"].get_ydata().tolist()
    assert smoothed[0] == pytest.approx(_column(csv_path, "train/loss", "step")[1][0]) and len(smoothed) == 6


def test_a_run_without_validation_says_so_and_plot_logs_names_a_missing_log(tmp_path):
    per_step = {"train/loss": ([0.0, 1.0], [2.0, 1.5])}
    figure = draw_curves(per_step, {})
    texts = [t.get_text() for ax in figure.axes for t in ax.texts]
    assert texts.count("no validation logged") == 2
    done = subprocess.run([sys.executable, "-m", "detkit", "plot-logs", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 1 and f"no metrics.csv under {tmp_path}" in done.stderr
