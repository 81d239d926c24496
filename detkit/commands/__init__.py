"""The ``detkit`` console script: dispatches to LightningCLI or to detkit's own light subcommands.

``fit``, ``validate``, ``test`` and ``predict`` go to :class:`detkit.cli.DetkitCLI`. ``evaluate``,
``check-data``, ``plot-logs``, ``explain``, ``export`` and ``prune`` are detkit's own; they are imported only when asked for, so that
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
}


def main(argv: list[str] | None = None) -> int | None:
    """Entry point of the ``detkit`` console script."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in OWN_SUBCOMMANDS:
        return importlib.import_module(OWN_SUBCOMMANDS[args[0]]).main(args[1:])
    from detkit.cli import build_cli

    build_cli(argv)  # None: LightningCLI reads sys.argv itself
    return None
