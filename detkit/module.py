"""DetectionModule: the LightningModule that trains and evaluates a plain :class:`~detkit.models.Detector`."""

from __future__ import annotations

from typing import Any, Callable, Literal

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor
from torch.optim.lr_scheduler import LinearLR

from detkit.checkpoints import CHECKPOINT_FORMAT_VERSION, migrate_checkpoint
from detkit.config import instantiate, resolve
from detkit.evaluation import COCO_STAT_NAMES
from detkit.evaluation import CocoEvaluator
from detkit.models import Detector
from detkit.ops.letterbox import Letterbox
from detkit.types import Detections, Target

Batch = tuple[Tensor, list[Target]]


def to_original_pixels(detections: list[Detections], targets: list[Target]) -> tuple[list[Detections], list[Target]]:
    """Detections mapped from letterboxed input pixels back to each original image (the letterbox's
    exact inverse), and the targets with their original-pixel ``orig_boxes`` as ``boxes``."""
    dets_out: list[Detections] = []
    targets_out: list[Target] = []
    for det, tgt in zip(detections, targets):
        boxes = Letterbox.to_original(det["boxes"], tgt["scale"], tuple(tgt["orig_size"].tolist()))
        dets_out.append({**det, "boxes": boxes})
        original = tgt.get("orig_boxes")
        targets_out.append({**tgt, "boxes": original if original is not None else tgt["boxes"]})
    return dets_out, targets_out


class DetectionModule(LightningModule):
    """Trains a detector with injected optimizer and scheduler; validates and tests with COCO mAP.

    Logs ``train/loss*`` every step, ``val/loss*`` per epoch and the 12 COCO stats as ``val/map``,
    ``val/map_50``, ... (``test/...`` under ``detkit test``). The checkpoint carries a ``detkit``
    block (format version, class names, detector config, input size) that
    :func:`detkit.load_detector` reads without Lightning's Trainer.
    """

    def __init__(
        self,
        detector: Callable[[int], Detector],
        num_classes: int = 3,
        class_names: list[str] | None = None,
        input_size: int = 640,
        pad_multiple: int = 32,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
        lr_scheduler_interval: Literal["epoch", "step"] = "epoch",
        warmup_steps: int = 100,
        warmup_start_factor: float = 0.001,
        compile: bool = False,
    ) -> None:
        """Build the system around a detector.

        Args:
            detector: the detector (``class_path: detkit.models.Detector``); it receives
                ``num_classes`` when built.
            num_classes: number of object classes; linked from the data, do not set it by hand.
            class_names: one name per class; linked from the data.
            input_size: side of the square letterbox the data feeds the detector; linked from the
                data and saved in checkpoints for :func:`detkit.load_detector`.
            pad_multiple: the data's letterbox pads its square to a multiple of this; linked from
                the data and saved in checkpoints likewise.
            optimizer: optimizer class and its arguments (receives the trainable parameters).
            lr_scheduler: learning-rate scheduler class and arguments, or none for a constant rate.
            lr_scheduler_interval: ``"epoch"`` or ``"step"``: when the scheduler steps.
            warmup_steps: optimizer steps of linear learning-rate warm-up (0 turns it off).
            warmup_start_factor: learning-rate multiplier at the first warm-up step.
            compile: compile the detector's forward with ``torch.compile`` (slow first steps,
                faster after; see ``tools/benchmark.py --compile`` for its effect on your machine).
        """
        super().__init__()
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names has {len(class_names)} names but num_classes is {num_classes}")
        self.save_hyperparameters()
        self.detector = detector(num_classes)
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.input_size = int(input_size)
        self.pad_multiple = int(pad_multiple)
        self.val_evaluator = CocoEvaluator()
        self.test_evaluator = CocoEvaluator()

    def configure_model(self) -> None:
        if self.hparams.compile:
            self.detector.compile()

    def forward(self, images: Tensor) -> list[Detections]:
        """Detections in input pixels for a batch ``FloatTensor[B, 3, H, W]`` in ``[0, 1]``."""
        return self.detector.predict_batch(images)

    # ---- training -------------------------------------------------------------------------
    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        images, targets = batch
        losses = self.detector.loss(images, targets)
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, batch_size=images.shape[0])
        self.log("loss", losses["loss"], prog_bar=True, logger=False, batch_size=images.shape[0])
        return losses["loss"]

    # ---- evaluation -----------------------------------------------------------------------
    def _evaluate_batch(self, batch: Batch, stage: str, evaluator: CocoEvaluator) -> None:
        images, targets = batch
        losses, detections = self.detector.loss_and_predict(images, targets)
        self.log_dict({f"{stage}/{k}": v for k, v in losses.items()}, batch_size=images.shape[0], sync_dist=True)
        evaluator.update(*to_original_pixels(detections, targets))

    def _log_coco_stats(self, stage: str, evaluator: CocoEvaluator) -> None:
        stats = evaluator.compute()
        evaluator.reset()
        for name in (*COCO_STAT_NAMES, "num_images"):
            self.log(f"{stage}/{name}", stats[name], prog_bar=name == "map")

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate_batch(batch, "val", self.val_evaluator)

    def on_validation_epoch_end(self) -> None:
        self._log_coco_stats("val", self.val_evaluator)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate_batch(batch, "test", self.test_evaluator)

    def on_test_epoch_end(self) -> None:
        self._log_coco_stats("test", self.test_evaluator)

    def predict_step(self, batch: Batch, batch_idx: int) -> list[dict[str, Any]]:
        """Detections in original-image pixels, with each image's ``file_name`` and class names."""
        images, targets = batch
        detections, _ = to_original_pixels(self.detector.predict_batch(images), targets)
        return [
            {**det, "names": [self.class_names[i] for i in det["labels"].tolist()], "file_name": tgt.get("file_name")}
            for det, tgt in zip(detections, targets)
        ]

    # ---- optimisation ---------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params)
        schedulers = []
        if self.hparams.warmup_steps > 0:
            warmup = LinearLR(optimizer, start_factor=self.hparams.warmup_start_factor, total_iters=self.hparams.warmup_steps)
            schedulers.append({"scheduler": warmup, "interval": "step"})
        if self.lr_scheduler_factory is not None:
            main = self.lr_scheduler_factory(optimizer)
            schedulers.append({"scheduler": main, "interval": self.hparams.lr_scheduler_interval})
        return [optimizer], schedulers

    # ---- checkpoints ----------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        detector_config = self.hparams.get("detector")
        checkpoint["detkit"] = {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            # A plain {class_path, init_args} dict when built through the CLI or from_config.
            "detector": detector_config if isinstance(detector_config, dict) else None,
            "input_size": self.input_size,
            "pad_multiple": self.pad_multiple,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Upgrade an older detkit checkpoint in place (weight names) before its weights load."""
        if isinstance(checkpoint.get("detkit"), dict):
            checkpoint.update(migrate_checkpoint(checkpoint))

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "DetectionModule":
        """Build from a plain config dict (the ``model:`` block of a YAML), keeping it for checkpoints.

        Use this rather than ``DetectionModule(detector=...)`` in Python code whose checkpoints
        should load with :func:`detkit.load_detector`: like LightningCLI, it records the parsed plain
        config (``class_path`` dicts, defaults filled in) as the hyperparameters.
        """
        block = {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": config}
        module = instantiate(cls, block)
        module.hparams.update(resolve(cls, block)["init_args"])
        return module
