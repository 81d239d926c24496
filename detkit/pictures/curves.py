"""Training curves from a run's CSV log: loss and its parts, validation loss and mAP, learning rate -> ``curves.png``."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

__all__ = ["Series", "draw_curves", "find_metrics_csv", "plot_curves", "read_metrics", "smooth"]

#: ``name -> (x values, y values)``: steps for per-step series, epochs for per-epoch ones.
Series = dict[str, tuple[list[float], list[float]]]


def find_metrics_csv(path: str | Path) -> Path:
    """The ``metrics.csv`` of a run: ``path`` itself, the one in a logger version folder, or the
    newest ``csv/version_N/metrics.csv`` (highest ``N``) under a run's ``default_root_dir``.

    Raises:
        FileNotFoundError: None there, naming ``path``.
    """
    path = Path(path)
    if path.is_file():
        return path
    if (path / "metrics.csv").is_file():
        return path / "metrics.csv"
    found = [p for p in path.glob("**/version_*/metrics.csv")]
    if not found:
        raise FileNotFoundError(
            f"no metrics.csv under {path}: curves are read from Lightning's CSVLogger (the default logger of "
            f"`detkit fit`; a run with only another --trainer.logger has none)"
        )
    return max(found, key=lambda p: (p.stat().st_mtime, p.parent.name))


def read_metrics(csv_path: str | Path) -> tuple[Series, Series]:
    """Read a CSVLogger ``metrics.csv`` into per-step and per-epoch series.

    A column is per epoch when it is a validation (``val/...``) metric, and per step otherwise
    (``train/...`` losses, ``lr-...`` rates). Empty cells (another metric's row) are skipped.

    Returns:
        ``(per_step, per_epoch)``: ``name -> (x, y)`` with x the row's ``step`` or ``epoch``.
    """
    per_step: Series = {}
    per_epoch: Series = {}
    with open(csv_path, newline="") as handle:
        for row in csv.DictReader(handle):
            for name, cell in row.items():
                if name in ("step", "epoch") or cell in ("", None):
                    continue
                value = float(cell)
                if not math.isfinite(value):
                    continue
                if name.startswith("val/"):
                    xs, ys = per_epoch.setdefault(name, ([], []))
                    xs.append(float(row["epoch"]))
                else:
                    xs, ys = per_step.setdefault(name, ([], []))
                    xs.append(float(row["step"]))
                ys.append(value)
    return per_step, per_epoch


def smooth(values: list[float], weight: float) -> list[float]:
    """Exponential moving average with bias correction (TensorBoard's smoothing); ``weight`` 0 keeps the values."""
    out, average = [], 0.0
    for i, value in enumerate(values):
        average = weight * average + (1.0 - weight) * value
        out.append(average / (1.0 - weight ** (i + 1)) if weight > 0 else value)
    return out


def _note(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="gray")


def draw_curves(per_step: Series, per_epoch: Series, smoothing: float = 0.6, title: str = "") -> Any:
    """A 2x2 matplotlib figure: train loss and its parts per step (raw faint, smoothed solid), val
    losses per epoch, val ``map`` / ``map_50`` per epoch, learning rate per step.

    Each drawn line carries its series name as ``label`` (smoothed lines ``"<name> (smoothed)"``).
    A panel without data says so (e.g. a run without validation).
    """
    from matplotlib.figure import Figure  # no pyplot: no backend to choose, no global figure list
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(12, 8))
    axes = fig.subplots(2, 2)
    (loss_ax, val_ax), (map_ax, lr_ax) = axes
    train = {k: v for k, v in per_step.items() if k.startswith("train/loss")}
    for i, (name, (xs, ys)) in enumerate(sorted(train.items())):
        color = f"C{i}"
        loss_ax.plot(xs, ys, color=color, alpha=0.25, linewidth=0.8, label=name)
        loss_ax.plot(xs, smooth(ys, smoothing), color=color, linewidth=1.5, label=f"{name} (smoothed)")
    loss_ax.set(title="train loss (per step)", xlabel="step")
    val_losses = {k: v for k, v in per_epoch.items() if k.startswith("val/loss")}
    for name, (xs, ys) in sorted(val_losses.items()):
        val_ax.plot(xs, ys, marker="o", label=name)
    val_ax.set(title="val loss (per epoch)", xlabel="epoch")
    for name in ("val/map", "val/map_50"):
        if name in per_epoch:
            map_ax.plot(*per_epoch[name], marker="o", label=name)
    map_ax.set(title="val mAP (per epoch)", xlabel="epoch")
    curves: dict[tuple, list[str]] = {}  # LearningRateMonitor logs a group once per scheduler: draw each curve once
    for name, (xs, ys) in sorted((k, v) for k, v in per_step.items() if k.startswith("lr-")):
        curves.setdefault((tuple(xs), tuple(ys)), []).append(name)
    for (xs, ys), names in curves.items():
        lr_ax.plot(xs, ys, label=names[0] + (f" (= {len(names) - 1} more)" if len(names) > 1 else ""))
    lr_ax.set(title="learning rate", xlabel="step")
    empty = {loss_ax: "no train/loss logged", val_ax: "no validation logged", map_ax: "no validation logged",
             lr_ax: "no learning rate logged (add LearningRateMonitor)"}  # fmt: skip
    for ax, text in empty.items():
        if ax.lines:
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
        else:
            _note(ax, text)
    for ax in (val_ax, map_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_curves(run: str | Path, out: str | Path | None = None, smoothing: float = 0.6) -> Path:
    """Write the curves of a run (see :func:`find_metrics_csv` for ``run``) as a PNG.

    Args:
        run: A ``metrics.csv``, a CSVLogger version folder or a run's ``default_root_dir``.
        out: The PNG (default: ``curves.png`` beside the ``metrics.csv``).
        smoothing: Weight of the moving average drawn over per-step series (0 to 1).

    Returns:
        The PNG's path.
    """
    csv_path = find_metrics_csv(run)
    per_step, per_epoch = read_metrics(csv_path)
    fig = draw_curves(per_step, per_epoch, smoothing, title=str(csv_path.parent))
    path = Path(out) if out is not None else csv_path.parent / "curves.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
