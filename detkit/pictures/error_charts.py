"""Charts of where a detector fails: the AP each TIDE error type costs (all classes and per class), and missed-vs-found box geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detkit.evaluation.tide import ERROR_TYPES, ErrorDecomposition
from detkit.pictures.galleries import OUTCOME_COLORS

__all__ = ["plot_error_decomposition", "plot_geometry"]


def _rgb(name: str) -> tuple[float, float, float]:
    return tuple(c / 255 for c in OUTCOME_COLORS[name])  # type: ignore[return-value]


def plot_error_decomposition(decomposition: ErrorDecomposition, path: str | Path, classes: int = 15) -> Path:
    """Bars of the AP (points) each error type would add if fixed, with their counts, and, with more
    than one class, the per-class dAP of the ``classes`` classes losing most, stacked by type."""
    from matplotlib.figure import Figure

    d = decomposition
    ranked = np.zeros(0, dtype=np.int64)
    if len(d.category_names) > 1:
        total = np.nansum(np.stack([d.category_errors[n] for n in ERROR_TYPES]), axis=0)
        ranked = np.argsort(-total, kind="stable")[:classes]
        ranked = ranked[total[ranked] > 0]
    fig = Figure(figsize=(13 if len(ranked) else 7, max(3.6, 0.3 * len(ranked) + 1.6)))
    axes = fig.subplots(1, 2 if len(ranked) else 1, squeeze=False)[0]
    names = [*ERROR_TYPES, "false_positive", "false_negative"]
    values = [d.errors[n] for n in names]
    colors = [_rgb(n) for n in ERROR_TYPES] + [(0.45, 0.45, 0.45)] * 2
    labels = [f"{n} ({d.counts[n]})" for n in ERROR_TYPES] + ["all false positives", "all false negatives"]
    ax = axes[0]
    y = np.arange(len(names))[::-1]
    ax.barh(y, values, color=colors, edgecolor="black", linewidth=0.5)
    ax.set_yticks(y, labels, fontsize="small")
    for yi, v in zip(y, values):
        ax.text(v, yi, f" {v:.2f}", va="center", fontsize="small")
    ax.axhline(1.5, color="gray", linewidth=0.8, linestyle=":")
    ax.set_xlim(0, max(max(values, default=0), 1e-3) * 1.2)
    ax.set_xlabel("AP points gained if fixed (dAP)")
    ax.set_title(f"AP50 {d.ap:.1f}: what each error type costs (count)", fontsize="medium")
    if len(ranked):
        ax = axes[1]
        left = np.zeros(len(ranked))
        y = np.arange(len(ranked))[::-1]
        for n in ERROR_TYPES:
            v = np.nan_to_num(d.category_errors[n][ranked])
            ax.barh(y, v, left=left, color=_rgb(n), edgecolor="black", linewidth=0.3, label=n)
            left += v
        ax.set_yticks(y, [d.category_names[k] for k in ranked], fontsize="small")
        ax.set_xlabel("dAP of the class alone, by error type")
        ax.set_title(f"the {len(ranked)} classes losing most AP" if len(d.category_names) > len(ranked) else "per class", fontsize="medium")
        ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return Path(path)


_BORDER_BINS = np.array([0.0, 1e-9, 0.02, 0.05, 0.1, 0.2, np.inf])
_BORDER_LABELS = ["touching", "<2%", "2-5%", "5-10%", "10-20%", ">20%"]


def _panel(ax, found: np.ndarray, missed: np.ndarray, bins: np.ndarray, labels: list[str] | None, title: str) -> None:
    """Side-by-side bars of found / not-found counts per bin and the not-found share as a line."""
    f, _ = np.histogram(found, bins)
    m, _ = np.histogram(missed, bins)
    x = np.arange(len(f))
    ax.bar(x - 0.2, f, 0.4, color=_rgb("found"), label="found")
    ax.bar(x + 0.2, m, 0.4, color=_rgb("missed"), edgecolor="black", linewidth=0.5, label="not found")
    ax.set_xticks(x, labels if labels is not None else [f"{v:.3g}" for v in bins[:-1]], rotation=45, fontsize="x-small")
    ax.set_ylabel("ground-truth boxes")
    ax.set_title(title, fontsize="medium")
    share = ax.twinx()
    total = f + m
    rate = np.where(total > 0, m / np.maximum(total, 1), np.nan)
    share.plot(x, rate, color="black", marker="o", markersize=3, linewidth=1, label="share not found")
    share.set_ylim(0, 1.05)
    share.set_ylabel("share not found", fontsize="small")


def plot_geometry(geometry: dict[str, np.ndarray], found: np.ndarray, path: str | Path) -> Path:
    """Histograms of found vs not-found ground truth by size, aspect ratio and distance to the border.

    Args:
        geometry: from :func:`detkit.evaluation.errors.box_geometry` (non-crowd rows only).
        found: ``bool[G]`` matched by a true positive.
        path: the PNG.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 4.2))
    axes = fig.subplots(1, 3)
    size, aspect, border = geometry["size"], geometry["aspect"], geometry["border"]
    if len(size):
        low, high = max(float(size.min()), 1.0), max(float(size.max()), 2.0)
        edges = np.unique(np.r_[np.geomspace(low, high * 1.0001, 9), [32, 96]].clip(low, high * 1.0001))
        edges[0], edges[-1] = 0, np.inf
        labels = [f"{a:.0f}-{b:.0f}" if np.isfinite(b) else f">{a:.0f}" for a, b in zip(edges[:-1], edges[1:])]
        _panel(axes[0], size[found], size[~found], edges, labels, "size: sqrt(area) in pixels (COCO small < 32 < medium < 96)")
        edges = np.r_[0, 1 / 4, 1 / 2, 1 / 1.33, 1.33, 2, 4, np.inf]
        labels = ["<1/4", "1/4-1/2", "1/2-3/4", "~square", "4/3-2", "2-4", ">4"]
        _panel(axes[1], aspect[found], aspect[~found], edges, labels, "aspect ratio width / height (thin: far from 1)")
    else:
        for ax in axes[:2]:
            ax.text(0.5, 0.5, "no ground truth", ha="center", va="center", transform=ax.transAxes, color="gray")
    known = np.isfinite(border)
    if known.any():
        title = "distance to the image border (share of the shorter side)"
        _panel(axes[2], border[found & known], border[~found & known], _BORDER_BINS, _BORDER_LABELS, title)
    else:
        axes[2].text(0.5, 0.5, "image sizes unknown", ha="center", va="center", transform=axes[2].transAxes, color="gray")
        axes[2].set_title("distance to the image border", fontsize="medium")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Patch(color=_rgb("found"), label="found"), Patch(facecolor=_rgb("missed"), edgecolor="black", label="not found"),
               Line2D([], [], color="black", marker="o", markersize=3, label="share not found (right axis)")]  # fmt: skip
    fig.legend(handles=handles, loc="upper center", ncol=3, fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(path, dpi=100)
    return Path(path)
