"""``detkit prune``: structured channel pruning of a checkpoint, written as a checkpoint + config to fine-tune."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    """Run ``detkit prune``; returns the exit status (0: written, 2: bad input)."""
    parser = argparse.ArgumentParser(
        prog="detkit prune",
        description="Remove the least important channels of every prunable layer group (Torch-Pruning's dependency "
        "graph, L2 magnitude). Writes <out>.ckpt (loads with load_detector and detkit export) and <out>.yaml "
        "(the pruned detector config and init_weights) to fine-tune: detkit fit --config RUN.yaml --config <out>.yaml",
        allow_abbrev=False,
    )
    parser.add_argument("--ckpt_path", required=True, help="a detkit checkpoint")
    parser.add_argument("--ratio", type=float, required=True, help="fraction of channels to remove, e.g. 0.5")
    parser.add_argument("--out", help="output checkpoint (default: pruned_<ratio>.ckpt beside the checkpoint)")
    options = parser.parse_args(argv)
    from detkit.deploy.prune import prune_checkpoint, write_fine_tune_config

    ckpt = Path(options.ckpt_path)
    out = Path(options.out) if options.out else ckpt.with_name(f"pruned_{options.ratio:g}.ckpt")
    try:
        path, config = prune_checkpoint(ckpt, out, options.ratio)
    except (FileNotFoundError, ValueError, ImportError, NotImplementedError) as error:
        print(f"detkit prune: {ckpt}: {error}" if isinstance(error, NotImplementedError) else f"detkit prune: {error}",
              file=sys.stderr)  # fmt: skip
        return 2
    recipe = write_fine_tune_config(path, config)
    print(f"wrote {path} and {recipe}; fine-tune with: detkit fit --config <your config> --config {recipe}")
    return 0
