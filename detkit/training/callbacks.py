"""Lightning callbacks of detkit: checkpoints under the run's root, EMA weights, and predictions (JSON + drawn PNGs)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter, EMAWeightAveraging, ModelCheckpoint, WeightAveraging
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from PIL import Image
from torch import Tensor

from detkit.curves import plot_curves
from detkit.visualize import draw_detections

__all__ = ["Checkpoint", "Curves", "EMA", "PredictionWriter", "ramped_ema"]


class Checkpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` writing to ``<trainer.default_root_dir>/checkpoints`` unless
    ``dirpath`` is given (Lightning's own default would be the first logger's version folder), and
    with ``save_last`` keeping ``last.ckpt`` at the last saving point (every epoch, or every
    ``every_n_train_steps``) whether or not the monitored metric improved there.

    Lightning 2.6 writes ``last.ckpt`` only when a top-k checkpoint was written at the same step, so
    once ``val/map`` stops improving its ``last.ckpt`` stays at the last improvement and resuming
    with ``--ckpt_path last`` silently rewinds the run. Here the last checkpoint is written at
    every point where Lightning considers saving (after validation, or at the end of a training
    epoch without validation, or every n steps).
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.dirpath is None:
            self.dirpath = str(Path(trainer.default_root_dir) / "checkpoints")
        self._last_written_at: int | None = None
        super().setup(trainer, pl_module, stage)

    def _save_last_checkpoint(self, trainer: Trainer, monitor_candidates: dict[str, Tensor]) -> None:
        super()._save_last_checkpoint(trainer, monitor_candidates)
        if self.save_last:
            self._last_written_at = trainer.global_step

    def _keep_last_current(self, trainer: Trainer) -> None:
        """Write ``last.ckpt`` unless it already holds this step (or Lightning saves nothing now)."""
        if not self.save_last or getattr(self, "_last_written_at", None) == trainer.global_step:
            return
        if trainer.fast_dev_run or trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking:
            return
        if getattr(self, "_defer_save_until_validation", False):
            return  # Lightning saves (best and last) after the validation that follows
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any, **kwargs: Any) -> None:
        super().on_train_batch_end(trainer, pl_module, *args, **kwargs)
        every = self._every_n_train_steps
        if every >= 1 and trainer.global_step % every == 0 and trainer.global_step > 0:
            self._keep_last_current(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._every_n_epochs >= 1 and self._should_save_on_train_epoch_end(trainer):
            self._keep_last_current(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if self._every_n_epochs >= 1 and not self._should_save_on_train_epoch_end(trainer):
            self._keep_last_current(trainer)


class Curves(Callback):
    """Writes ``curves.png`` (:func:`detkit.curves.plot_curves`) beside the CSV logger's
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


def ramped_ema(decay: float) -> Callable[[list[Tensor], list[Tensor], Tensor], None]:
    """The ``multi_avg_fn`` of :class:`EMA`: an exponential moving average whose decay ramps up as
    ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates (TensorFlow's ``ExponentialMovingAverage``
    with ``num_updates``), so early averages follow training instead of holding the initial weights.

    It updates a list of averaged tensors of one device and dtype in place from the current ones,
    with a few ``torch._foreach_*`` calls (as ``torch.optim.swa_utils.get_ema_multi_avg_fn``) and
    the rate kept as a tensor on the device (no host synchronisation).
    """
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"decay must be in [0, 1], got {decay}")

    @torch.no_grad()
    def update(averaged: list[Tensor], current: list[Tensor], num_averaged: Tensor) -> None:
        rate = ((1.0 + num_averaged) / (10.0 + num_averaged)).clamp(max=decay)  # 0-d float tensor
        if averaged[0].is_floating_point():
            rate = rate.to(averaged[0].dtype)
            torch._foreach_mul_(averaged, rate)
            torch._foreach_add_(averaged, torch._foreach_mul(current, 1.0 - rate))
        else:  # integer buffers (BatchNorm's num_batches_tracked)
            for avg, cur in zip(averaged, current):
                avg.copy_(rate * avg + (1.0 - rate) * cur)

    return update


class EMA(EMAWeightAveraging):
    """Lightning's ``EMAWeightAveraging``, an exponential moving average of the weights updated after
    every optimizer step, with a decay that ramps up and averaged weights wherever a checkpoint is
    evaluated.

    As in Lightning: validation during ``fit`` runs on the average, checkpoints hold it as
    ``state_dict`` (read by ``detkit validate/test/predict --ckpt_path`` and
    :func:`detkit.load_detector`) with the raw weights as ``current_model_state`` and the update
    count as ``averaging_state``, resuming restores both, and the module holds the average once
    ``fit`` ends. Unlike Lightning's class:

    - the decay after ``n`` updates is ``min(decay, (1 + n) / (10 + n))`` (see :func:`ramped_ema`):
      Lightning's constant decay keeps ``decay ** n`` of the random initial weights in the average,
      which ruins short runs on small datasets (0.99 ** 100 is 0.37); with the ramp one ``decay``
      serves short and long runs, reaching 0.99 after about 900 updates and 0.999 after 9,000;
    - ``trainer.test(ckpt_path=...)`` or ``validate`` on the Trainer that just ran ``fit`` evaluate
      that checkpoint's averaged weights too (Lightning's would load its raw weights for ``test``
      and swap in the run's last average for ``validate``), and evaluating with this callback in
      the config raises no warning.
    """

    def __init__(
        self,
        device: torch.device | str | int | None = None,
        use_buffers: bool = True,
        decay: float = 0.999,
        update_every_n_steps: int = 1,
        update_starting_at_step: int | None = None,
        update_starting_at_epoch: int | None = None,
    ) -> None:
        """Average as Lightning's ``EMAWeightAveraging`` does, with the ramped decay.

        Args:
            device: where the averaged copy lives (default: the module's device; ``"cpu"`` saves
                accelerator memory).
            use_buffers: average the buffers too (BatchNorm statistics); otherwise copy them.
            decay: the largest decay; the average spans about ``1 / (1 - decay)`` updates once the
                ramp reaches it.
            update_every_n_steps: update after every this many optimizer steps.
            update_starting_at_step: first optimizer step (0-based) that updates the average; until
                then it holds the initial weights, validation included.
            update_starting_at_epoch: from this epoch on, also update at the end of every epoch.
        """
        # EMAWeightAveraging.__init__ fixes avg_fn to a constant decay: set up its state here.
        WeightAveraging.__init__(self, device=device, use_buffers=use_buffers, multi_avg_fn=ramped_ema(decay))
        self.decay = decay
        self.update_every_n_steps = update_every_n_steps
        self.update_starting_at_step = update_starting_at_step
        self.update_starting_at_epoch = update_starting_at_epoch

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        # Outside fit the module has just loaded the checkpoint's state_dict, the average: keep it.
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # The module holds the average now (on_train_end); a later validate or test on this Trainer
        # must not swap in this run's last average over the checkpoint it loads.
        if stage == TrainerFn.FITTING:
            self._average_model = None
        super().teardown(trainer, pl_module, stage)


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
