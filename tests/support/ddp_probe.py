"""A test-only callback for the DDP test: each rank saves its final weights and what validation counted."""

import json
from pathlib import Path

import torch
from lightning.pytorch import Callback


class RankProbe(Callback):
    """Writes ``rank{R}.pt`` (parameters) and ``rank{R}.json`` (last validation metrics) into ``out_dir``.

    Parameters, not buffers: without SyncBatchNorm (GPU-only) each rank keeps its own BatchNorm
    running statistics, and DDP broadcasts rank 0's before every training forward.
    """

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)

    def on_validation_end(self, trainer, pl_module) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(metrics))

    def on_train_end(self, trainer, pl_module) -> None:
        params = {name: p.detach().clone() for name, p in pl_module.named_parameters()}
        torch.save(params, self.out_dir / f"rank{trainer.global_rank}.pt")
