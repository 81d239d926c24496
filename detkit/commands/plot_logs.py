"""``detkit plot-logs RUN``: draw a run's training curves (``curves.png``) from its CSV log."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str]) -> int:
    """Run ``detkit plot-logs``; returns the exit status (0: written, 1: no CSV log found)."""
    parser = argparse.ArgumentParser(
        prog="detkit plot-logs",
        description="Write curves.png (train loss and its parts per step, val loss and mAP per epoch, learning "
        "rate) from the metrics.csv of Lightning's CSVLogger, which `detkit fit` writes by default.",
        allow_abbrev=False,
    )
    parser.add_argument("run", help="a run's default_root_dir (its newest csv/version_N), a version folder or a metrics.csv")
    parser.add_argument("--out", help="the PNG (default: curves.png beside metrics.csv)")
    parser.add_argument("--smoothing", type=float, default=0.6, help="moving-average weight of per-step series (0..1)")
    options = parser.parse_args(argv)
    from detkit.pictures.curves import plot_curves

    try:
        path = plot_curves(options.run, options.out, options.smoothing)
    except FileNotFoundError as error:
        print(f"detkit plot-logs: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0
