"""Lightning callbacks of detkit: writing predictions (JSON + drawn PNGs) during ``detkit predict``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image

from detkit.visualize import draw_detections


class PredictionWriter(BasePredictionWriter):
    """Writes ``predictions.json`` (boxes in original pixels) and draws the first images to PNG."""

    def __init__(self, output_dir: str = "predictions", max_drawn: int = 8, draw_threshold: float = 0.3) -> None:
        """Where and how much to write.

        Args:
            output_dir: folder for ``predictions.json`` and the drawn PNGs.
            max_drawn: how many images to draw (0: none).
            draw_threshold: only detections at or above this score are drawn (all are written to JSON).
        """
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.max_drawn = max_drawn
        self.draw_threshold = draw_threshold
        self._records: list[dict[str, Any]] = []
        self._drawn = 0

    def on_predict_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._records, self._drawn = [], 0

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        datamodule = trainer.datamodule
        dataset = datamodule.predict_dataset if datamodule is not None else None
        for i, det in enumerate(prediction):
            self._records.append(
                {
                    "file_name": det.get("file_name"),
                    "boxes": det["boxes"].tolist(),
                    "scores": det["scores"].tolist(),
                    "labels": det["labels"].tolist(),
                    "names": det["names"],
                }
            )
            if self._drawn < self.max_drawn and dataset is not None and batch_indices is not None:
                image, _ = dataset.dataset[batch_indices[i]]  # the untransformed image
                keep = det["scores"] >= self.draw_threshold
                drawn = draw_detections(
                    image, det["boxes"][keep], det["labels"][keep], pl_module.class_names, det["scores"][keep]
                )
                self.output_dir.mkdir(parents=True, exist_ok=True)
                stem = Path(det.get("file_name") or f"image_{len(self._records):06d}").stem
                Image.fromarray(drawn).save(self.output_dir / f"{stem}.png")
                self._drawn += 1

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_dir / "predictions.json"
        path.write_text(json.dumps(self._records))
        print(f"wrote {len(self._records)} predictions to {path} and {self._drawn} drawn images to {self.output_dir}")
