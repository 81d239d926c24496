"""Lightning callbacks of detkit: checkpoints under the run's root, training curves, and predictions (streamed JSON + drawn PNGs)."""

from __future__ import annotations

import math
import os
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from PIL import Image

from detkit.pictures.curves import plot_curves
from detkit.pictures.visualize import draw_detections
from detkit.training.prediction_files import PartWriter, merge_parts, part_path

__all__ = ["Checkpoint", "Curves", "PredictionWriter"]


class Checkpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` writing to ``<trainer.default_root_dir>/checkpoints`` unless
    ``dirpath`` is given (Lightning's own default would be the first logger's version folder), and
    with ``save_last`` keeping ``last.ckpt`` at the last saving point (every epoch, or every
    ``every_n_train_steps``) whether or not the monitored metric improved there.

    Lightning 2.6 writes ``last.ckpt`` only when a top-k checkpoint was written at the same step, so
    once ``val/map`` stops improving its ``last.ckpt`` stays at the last improvement and resuming
    with ``--ckpt_path last`` silently rewinds the run. Here a second ``ModelCheckpoint``
    (:attr:`last`: ``monitor=None``, ``filename="last"``, the same saving points but every epoch)
    writes ``last.ckpt`` wherever Lightning considers saving (after validation, at the end of a
    training epoch without validation, every n steps or ``train_time_interval``), and again after a
    top-k checkpoint of a step it already holds, so that it holds the updated best scores too.
    Lightning's own ``save_last`` stays off (:attr:`save_last` reads ``None``).
    """

    def __init__(
        self,
        dirpath: str | Path | None = None,
        filename: str | None = None,
        monitor: str | None = None,
        verbose: bool = False,
        save_last: bool | None = None,
        save_top_k: int = 1,
        save_on_exception: bool = False,
        save_weights_only: bool = False,
        mode: str = "min",
        auto_insert_metric_name: bool = True,
        # When to save (at most one of the three; none: after every epoch)
        every_n_train_steps: int | None = None,
        train_time_interval: timedelta | None = None,
        every_n_epochs: int | None = None,
        save_on_train_epoch_end: bool | None = None,
        enable_version_counter: bool = True,
    ) -> None:
        """Lightning's ``ModelCheckpoint`` arguments (see its documentation for all of them).

        Args:
            dirpath: folder of the checkpoints; default ``<trainer.default_root_dir>/checkpoints``.
            filename: name pattern of the kept checkpoints, e.g. ``"best"`` or ``"{epoch}-{step}"``.
            monitor: metric that ranks checkpoints (``None``: keep the latest ``save_top_k``).
            save_last: keep ``last.ckpt`` current at every saving point (``"link"`` is not offered).
            save_top_k: how many checkpoints to keep (-1: all, 0: none).
            mode: ``"min"`` or ``"max"``: which values of ``monitor`` are better.
            every_n_train_steps: save every this many optimizer steps.
            every_n_epochs: save top-k checkpoints every this many epochs.
            save_on_train_epoch_end: save at the end of the training epoch rather than after
                validation (``None``: Lightning decides from the validation set-up).
        """
        super().__init__(
            dirpath=dirpath,
            filename=filename,
            monitor=monitor,
            verbose=verbose,
            save_last=None,  # last.ckpt is self.last's
            save_top_k=save_top_k,
            save_on_exception=save_on_exception,
            save_weights_only=save_weights_only,
            mode=mode,
            auto_insert_metric_name=auto_insert_metric_name,
            every_n_train_steps=every_n_train_steps,
            train_time_interval=train_time_interval,
            every_n_epochs=every_n_epochs,
            save_on_train_epoch_end=save_on_train_epoch_end,
            enable_version_counter=enable_version_counter,
        )
        self.keep_last = bool(save_last)
        self.last_options = {
            "every_n_train_steps": every_n_train_steps,
            "train_time_interval": train_time_interval,
            "every_n_epochs": 1 if self.every_n_epochs else 0,  # Lightning's default resolved: 1 or 0
            "save_on_train_epoch_end": save_on_train_epoch_end,
            "save_weights_only": save_weights_only,
            "save_on_exception": save_on_exception,
        }
        self.last: ModelCheckpoint | None = None
        self.saves_seen = 0  # checkpoints written with callback states (on_save_checkpoint)
        self.last_written = False  # last.ckpt written in this fit

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.dirpath is None:
            self.dirpath = str(Path(trainer.default_root_dir) / "checkpoints")
        super().setup(trainer, pl_module, stage)
        self.last, self.last_written = None, False
        if self.keep_last:
            self.last = ModelCheckpoint(
                dirpath=self.dirpath,
                filename=self.CHECKPOINT_NAME_LAST,
                monitor=None,
                save_top_k=1,
                enable_version_counter=False,
                **self.last_options,
            )
            self.last.setup(trainer, pl_module, stage)

    def last_path(self) -> str:
        """Where ``last.ckpt`` goes."""
        return os.path.join(self.dirpath, self.CHECKPOINT_NAME_LAST + self.FILE_EXTENSION)

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        self.saves_seen += 1

    def _then_last(self, hook: str, trainer: Trainer, pl_module: LightningModule, *args: Any, **kwargs: Any) -> None:
        """Run ``ModelCheckpoint``'s ``hook``, then :attr:`last`'s; write ``last.ckpt`` again when the
        first wrote a checkpoint (with callback states) and the second did not."""
        before = self.saves_seen
        getattr(super(), hook)(trainer, pl_module, *args, **kwargs)
        if self.last is None:
            return
        kept = self.saves_seen
        getattr(self.last, hook)(trainer, pl_module, *args, **kwargs)
        if kept > before and self.saves_seen == kept:  # last.ckpt may hold this step without the new best
            trainer.save_checkpoint(self.last_path(), self.save_weights_only)
            self.last_written = True
        if self.last_written or self.last.best_model_path:  # last.ckpt written in this fit
            self.last_written, self.last_model_path = True, self.last_path()

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._then_last("on_train_start", trainer, pl_module)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any, **kwargs: Any) -> None:
        self._then_last("on_train_batch_end", trainer, pl_module, *args, **kwargs)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._then_last("on_train_epoch_end", trainer, pl_module)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._then_last("on_validation_end", trainer, pl_module)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._then_last("on_exception", trainer, pl_module, exception)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        if self.last is not None and not self.last_written:  # as Lightning's save_last: never without one
            trainer.save_checkpoint(self.last_path(), self.save_weights_only)
            self.last_written, self.last_model_path = True, self.last_path()


class Curves(Callback):
    """Writes ``curves.png`` (:func:`detkit.pictures.curves.plot_curves`) beside the CSV logger's
    ``metrics.csv`` when ``fit`` ends: train loss and its parts per step, val loss and mAP per
    epoch, learning rate. ``detkit plot-logs RUN`` draws the same at any time, also mid-run.

    Without a ``CSVLogger`` among the trainer's loggers it writes nothing and says so once (the
    TensorBoard logger has its own curves).
    """

    def __init__(self, enabled: bool = True, smoothing: float = 0.6) -> None:
        """Args:
        enabled: Write the picture at the end of ``fit``.
        smoothing: Moving-average weight of per-step series (0: raw values only).
        """
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.enabled = enabled
        self.smoothing = smoothing
        self.path: Path | None = None

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.enabled or not trainer.is_global_zero:
            return
        loggers = [logger for logger in trainer.loggers if isinstance(logger, CSVLogger)]
        if not loggers:
            rank_zero_warn("curves.png not written: no CSVLogger among the trainer's loggers (detkit fit adds one "
                           "when --trainer.logger is unset)")  # fmt: skip
            return
        loggers[0].save()  # flush the rows still in memory
        metrics = Path(loggers[0].experiment.metrics_file_path)
        if metrics.is_file():
            self.path = plot_curves(metrics, smoothing=self.smoothing)
            rank_zero_info(f"training curves: {self.path}")


class PredictionWriter(BasePredictionWriter):
    """Writes the detections of ``detkit predict`` as they come (boxes in original pixels) and draws the first images to PNG.

    Every batch's detections go to this process's part, ``predictions.rank<R>.jsonl`` (one JSON line
    per image, flushed after each batch; :mod:`detkit.training.prediction_files`), so nothing per
    image is held in memory and a killed run keeps every finished batch. When the run ends, rank 0
    merges the parts of all processes, streaming, into one ``predictions.json`` (a list of
    ``{file_name, boxes, scores, labels, names}``, as always) or, with ``output_format: jsonl``,
    ``predictions.jsonl`` (one such record a line), in dataset order with each image once, and
    removes the parts. Under DDP across nodes the output folder must be one that every node
    writes to (a shared file system); rank 0 names the parts it cannot see otherwise.
    """

    def __init__(
        self,
        output_dir: str | None = None,
        max_drawn: int = 8,
        draw_threshold: float = 0.3,
        output_format: Literal["json", "jsonl"] = "json",
    ) -> None:
        """Where and how much to write.

        Args:
            output_dir: folder for the predictions and the drawn PNGs; default
                ``<trainer.default_root_dir>/predictions``.
            max_drawn: how many images to draw in all (0: none).
            draw_threshold: only detections at or above this score are drawn (all are written).
            output_format: ``json``: one ``predictions.json`` list; ``jsonl``: ``predictions.jsonl``,
                one record a line (read it a line at a time).
        """
        super().__init__(write_interval="batch")
        if max_drawn < 0:
            raise ValueError(f"max_drawn must be >= 0, got {max_drawn}")
        if output_format not in ("json", "jsonl"):
            raise ValueError(f"output_format must be 'json' or 'jsonl', got {output_format!r}")
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.max_drawn = max_drawn
        self.draw_threshold = draw_threshold
        self.output_format = output_format
        self._part: PartWriter | None = None
        self._drawn = 0
        self._dir: Path | None = None
        self.path: Path | None = None  # the merged file, once written

    def directory(self, trainer: Trainer) -> Path:
        """The folder this run writes to."""
        return self.output_dir if self.output_dir is not None else Path(trainer.default_root_dir) / "predictions"

    def on_predict_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._drawn, self.path = 0, None
        self._dir = self.directory(trainer)
        self._close()
        self._part = PartWriter(part_path(self._dir, trainer.global_rank))

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        datamodule = trainer.datamodule
        dataset = datamodule.predict_dataset if datamodule is not None else None
        share = math.ceil(self.max_drawn / trainer.world_size)  # each process draws its share
        for i, det in enumerate(prediction):
            index = int(batch_indices[i])  # the dataset index (global under DDP)
            self._part.write(
                index,
                {
                    "file_name": det.get("file_name"),
                    "boxes": det["boxes"].tolist(),
                    "scores": det["scores"].tolist(),
                    "labels": det["labels"].tolist(),
                    "names": det["names"],
                },
            )
            if self._drawn < share and dataset is not None:
                image, _ = dataset.dataset[index]  # the untransformed image
                keep = det["scores"] >= self.draw_threshold
                drawn = draw_detections(
                    image, det["boxes"][keep], det["labels"][keep], pl_module.class_names, det["scores"][keep]
                )
                stem = Path(det.get("file_name") or f"image_{index:06d}").stem
                Image.fromarray(drawn).save(self._dir / f"{stem}.png")
                self._drawn += 1
        self._part.flush()  # a killed run keeps this batch

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        folder = self._dir or self.directory(trainer)
        self._close()
        if trainer.world_size > 1:
            trainer.strategy.barrier("detkit_predictions_written")
        error = None
        if trainer.global_rank == 0:
            parts = [part_path(folder, rank) for rank in range(trainer.world_size)]
            missing = [str(part) for part in parts if not part.is_file()]
            if missing:
                error = (
                    f"rank 0 cannot see the predictions of {len(missing)} processes ({', '.join(missing[:4])}): "
                    "under DDP across nodes --predictions.output_dir must be a folder every node shares; "
                    "each node keeps its own parts (detkit.training.prediction_files.merge_parts merges them)"
                )
            else:
                self.path = folder / f"predictions.{self.output_format}"
                count = merge_parts(parts, self.path, json_lines=self.output_format == "jsonl")
                for part in parts:
                    part.unlink()
                print(f"wrote {count} predictions to {self.path} and drawn images to {folder}")
        if trainer.world_size > 1:
            error = trainer.strategy.broadcast(error, src=0)  # every process fails alike, none waits
        if error is not None:
            raise FileNotFoundError(error)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._close()  # the part keeps every finished batch

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._close()

    def _close(self) -> None:
        if self._part is not None:
            self._part.close()
            self._part = None
