"""The ``detkit`` console script: dispatches to LightningCLI or to detkit's own light subcommands.

``fit``, ``validate``, ``test`` and ``predict`` go to :class:`detkit.training.cli.DetkitCLI`. ``evaluate``,
``check-data``, ``plot-logs``, ``explain``, ``export``, ``prune`` and ``tune`` are detkit's own; they are imported only when asked for, so that
``detkit evaluate --gt --dt`` does not pay for importing Lightning.
"""

from __future__ import annotations

import importlib
import sys

# subcommand -> module with a ``main(argv: list[str]) -> int``
OWN_SUBCOMMANDS = {
    "evaluate": "detkit.commands.evaluate",
    "check-data": "detkit.commands.check_data",
    "plot-logs": "detkit.commands.plot_logs",
    "explain": "detkit.commands.explain",
    "export": "detkit.commands.export",
    "prune": "detkit.commands.prune",
    "tune": "detkit.commands.tune",
    "report": "detkit.commands.report",
}


#: One line per subcommand for ``detkit --help`` (written here, so the overview imports nothing).
SUMMARIES = {
    "fit": "train a detector (LightningCLI: --config FILE, --trainer.*, --model.*, --data.*)",
    "validate": "COCO mAP of a checkpoint on the validation split",
    "test": "COCO mAP of a checkpoint on the test split",
    "predict": "detect on the predict split and draw or write the detections",
    "evaluate": "COCO stats and reports for a results json, or a checkpoint or export on the test split",
    "check-data": "report what is in, and wrong with, each split of a config's data",
    "plot-logs": "draw a run's training curves (curves.png) from its CSV log",
    "explain": "feature maps and Grad-CAM localization maps of a trained detector",
    "export": "a checkpoint to ONNX or TorchScript (decoding and NMS inside), optionally int8",
    "prune": "structured channel pruning of a checkpoint, to fine-tune",
    "tune": "search configs (Optuna) for the best val/map at the lowest latency: table, Pareto plot, configs",
    "report": "one HTML page of a run or an evaluation: stats, curves, confusion, TIDE errors, failure galleries",
}


def overview() -> str:
    """The text of ``detkit --help``."""
    width = max(map(len, SUMMARIES))
    lines = [f"  {name.ljust(width)}  {text}" for name, text in SUMMARIES.items()]
    return "\n".join([
        "usage: detkit SUBCOMMAND [options]   (detkit SUBCOMMAND --help lists the options)",
        "", "Object detection on PyTorch Lightning.", "", "subcommands:", *lines,
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int | None:
    """Entry point of the ``detkit`` console script."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        # Answered without importing torch or Lightning (seconds and hundreds of MB on a small CPU).
        # Asked for: stdout, exit 0; no subcommand is a usage error: stderr, exit 2 (as argparse).
        print(overview(), file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    if args[0] in OWN_SUBCOMMANDS:
        return importlib.import_module(OWN_SUBCOMMANDS[args[0]]).main(args[1:])
    from detkit.training.cli import build_cli

    build_cli(argv)  # None: LightningCLI reads sys.argv itself
    return None
