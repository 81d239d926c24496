"""Lightning callbacks of detkit: checkpoints under the run's root, and predictions (JSON + drawn PNGs)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint
from PIL import Image

from detkit.visualize import draw_detections

__all__ = ["Checkpoint", "PredictionWriter"]


class Checkpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` writing to ``<trainer.default_root_dir>/checkpoints`` unless
    ``dirpath`` is given (Lightning's own default would be the first logger's version folder)."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.dirpath is None:
            self.dirpath = str(Path(trainer.default_root_dir) / "checkpoints")
        super().setup(trainer, pl_module, stage)


class PredictionWriter(BasePredictionWriter):
    """Writes ``predictions.json`` (boxes in original pixels) and draws the first images to PNG.

    Under DDP each process writes ``predictions.rank<R>.json`` for its share of the images; rank 0
    then merges them into one ``predictions.json`` in dataset order (images that the distributed
    sampler repeated to even out the shares appear once) and removes the parts.
    """

    def __init__(self, output_dir: str | None = None, max_drawn: int = 8, draw_threshold: float = 0.3) -> None:
        """Where and how much to write.

        Args:
            output_dir: folder for ``predictions.json`` and the drawn PNGs; default
                ``<trainer.default_root_dir>/predictions``.
            max_drawn: how many images to draw in all (0: none).
            draw_threshold: only detections at or above this score are drawn (all are written to JSON).
        """
        super().__init__(write_interval="batch")
        if max_drawn < 0:
            raise ValueError(f"max_drawn must be >= 0, got {max_drawn}")
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.max_drawn = max_drawn
        self.draw_threshold = draw_threshold
        self._records: list[dict[str, Any]] = []
        self._drawn = 0
        self._dir: Path | None = None

    def directory(self, trainer: Trainer) -> Path:
        """The folder this run writes to."""
        return self.output_dir if self.output_dir is not None else Path(trainer.default_root_dir) / "predictions"

    def on_predict_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._records, self._drawn = [], 0
        self._dir = self.directory(trainer)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        datamodule = trainer.datamodule
        dataset = datamodule.predict_dataset if datamodule is not None else None
        share = math.ceil(self.max_drawn / trainer.world_size)  # each process draws its share
        for i, det in enumerate(prediction):
            index = int(batch_indices[i])  # the dataset index (global under DDP)
            self._records.append(
                {
                    "index": index,
                    "file_name": det.get("file_name"),
                    "boxes": det["boxes"].tolist(),
                    "scores": det["scores"].tolist(),
                    "labels": det["labels"].tolist(),
                    "names": det["names"],
                }
            )
            if self._drawn < share and dataset is not None:
                image, _ = dataset.dataset[index]  # the untransformed image
                keep = det["scores"] >= self.draw_threshold
                drawn = draw_detections(
                    image, det["boxes"][keep], det["labels"][keep], pl_module.class_names, det["scores"][keep]
                )
                self._dir.mkdir(parents=True, exist_ok=True)
                stem = Path(det.get("file_name") or f"image_{index:06d}").stem
                Image.fromarray(drawn).save(self._dir / f"{stem}.png")
                self._drawn += 1

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        folder = self._dir or self.directory(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "predictions.json"
        if trainer.world_size == 1:
            records = self._records
        else:
            (folder / f"predictions.rank{trainer.global_rank}.json").write_text(json.dumps(self._records))
            trainer.strategy.barrier("detkit_predictions_written")
            if trainer.global_rank == 0:
                parts = [folder / f"predictions.rank{rank}.json" for rank in range(trainer.world_size)]
                by_index = {}
                for part in parts:
                    for record in json.loads(part.read_text()):
                        by_index.setdefault(record["index"], record)
                    part.unlink()
                records = [by_index[i] for i in sorted(by_index)]
        if trainer.global_rank == 0:
            path.write_text(json.dumps([{k: v for k, v in r.items() if k != "index"} for r in records]))
            print(f"wrote {len(records)} predictions to {path} and drawn images to {folder}")
        if trainer.world_size > 1:
            trainer.strategy.barrier("detkit_predictions_merged")
