"""DetectionModule: the LightningModule that trains and evaluates a plain :class:`~detkit.models.Detector`."""

from __future__ import annotations

import math
from typing import Any, Callable, Literal

import torch
from lightning.pytorch import Callback, LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn
from torch.nn.utils import get_total_norm
from torch.optim.lr_scheduler import LambdaLR, LinearLR

from detkit.checkpoints import CHECKPOINT_FORMAT_VERSION, migrate_checkpoint
from detkit.config import instantiate, resolve
from detkit.evaluation import COCO_STAT_NAMES
from detkit.evaluation import CocoEvaluator
from detkit.models import Detector
from detkit.ops.letterbox import to_original_pixels
from detkit.schedule import RunSchedule, run_has_end, run_progress
from detkit.training.transfer import load_detector_weights
from detkit.types import Detections, Target

Batch = tuple[Tensor, list[Target]]


def weight_decay_groups(module: nn.Module) -> list[dict[str, Any]]:
    """The trainable parameters of ``module`` in two optimizer parameter groups.

    ``{"name": "decay", "params": [...]}`` holds the convolution and linear weights (tensors of 2 or
    more dimensions) and takes the optimizer's own ``weight_decay``; ``{"name": "no_decay", "params":
    [...], "weight_decay": 0.0}`` holds every 1-dimensional parameter: normalisation weights and
    biases, all biases, and per-level multipliers such as ``FCOSHead.scales``. Decaying those pulls
    them towards 0 for no regularising benefit (a norm's scale, a class prior, a stride scale).
    Frozen parameters are left out; an empty group is dropped.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for param in module.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [{"name": "decay", "params": decay}, {"name": "no_decay", "params": no_decay, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


class DetectionModule(LightningModule):
    """Trains a detector with injected optimizer and scheduler; validates and tests with COCO mAP.

    Logs ``train/loss*`` every step, ``val/loss*`` per epoch and the 12 COCO stats as ``val/map``,
    ``val/map_50``, ... (``test/...`` under ``detkit test``). The checkpoint carries a ``detkit``
    block (format version, class names, detector config, input size) that
    :func:`detkit.load_detector` reads without Lightning's Trainer.

    Weight decay applies to convolution and linear weights only (see :func:`weight_decay_groups`).
    For an exponential moving average of the weights, add :class:`detkit.training.ema.EMA` (Lightning's
    ``WeightAveraging`` updated as its ``EMAWeightAveraging``, with a ramped decay) to
    ``trainer.callbacks``: validation runs on the averaged weights, checkpoints hold them as
    ``state_dict`` (what ``detkit test --ckpt_path`` and :func:`detkit.load_detector` read) with the
    raw weights beside them for resuming, and the module holds the averaged weights once ``fit`` ends.
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
        schedule: RunSchedule | None = None,
        # Linear learning-rate warm-up
        warmup_epochs: float = 1.0,
        warmup_min_steps: int = 20,
        warmup_steps: int | None = None,
        warmup_start_factor: float = 0.001,
        init_weights: str | None = None,
        max_nonfinite_steps: int = 5,
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
            optimizer: optimizer class and its arguments; it receives the trainable parameters
                as two groups, the second with ``weight_decay: 0`` (norms, biases, scales; see
                :func:`weight_decay_groups`), so its ``weight_decay`` applies to conv and linear
                weights only.
            lr_scheduler: learning-rate scheduler class and arguments, or none for a constant rate.
            lr_scheduler_interval: ``"epoch"`` or ``"step"``: when the scheduler steps.
            schedule: a learning-rate schedule over the run's progress
                (:class:`~detkit.schedule.RunSchedule`: warm-up for a share of the run, then decay to a
                floor), set every optimizer step. Progress is the share of the run's steps done or of
                ``trainer.max_time`` used, whichever is further, so a run given a time budget ends
                annealed when its time is up. Replaces ``lr_scheduler`` and the ``warmup_*`` options
                (giving ``lr_scheduler`` or ``warmup_steps`` as well is an error; ``warmup_epochs``
                and ``warmup_min_steps`` are not used).
            warmup_epochs: length of the linear learning-rate warm-up in epochs of the training
                data (a fraction such as 0.5 is allowed), turned into optimizer steps from the
                number of training batches per epoch (per process, after gradient accumulation)
                when training starts; at least one step. On a small dataset this keeps the warm-up a
                fixed share of the run rather than a fixed step count that may outlast it.
            warmup_min_steps: floor of the warm-up in optimizer steps, for datasets so small that
                an epoch is a handful of steps. The warm-up lasts
                ``max(round(warmup_epochs * steps_per_epoch), warmup_min_steps)`` steps; both 0
                turn it off.
            warmup_steps: exact length of the warm-up in optimizer steps, overriding
                ``warmup_epochs`` and ``warmup_min_steps`` when given (0 turns it off).
            warmup_start_factor: learning-rate multiplier at the first warm-up step.
            init_weights: path of a detkit checkpoint to fine-tune from (trained on other classes,
                or on the same ones): when training starts on a module that loaded no checkpoint
                (no ``--ckpt_path``, not ``load_from_checkpoint``), every detector
                tensor whose name and shape match is copied from it; the others (the classifier of
                another number of classes, a changed head) keep their initialisation, and a warning
                lists them (:func:`detkit.training.transfer.load_detector_weights`). Class names come from
                the data, never from this checkpoint. Resuming (``--ckpt_path``) ignores it.
                ``"torchvision:fcos_resnet50_fpn:COCO_V1"`` (or ``...:<local .pth>``) starts from a
                torchvision COCO detector instead: the detector must be built as detkit's composition
                of it (``configs/coco_fcos_finetune.yaml``), and every tensor but the classifier loads.
            max_nonfinite_steps: an optimizer step whose gradients are NaN or infinite (a
                non-finite loss, in any accumulated batch and on any process) changes no weight: its
                gradients are dropped (with fp16 AMP the gradient scaler skips it), it is counted (``train/skipped_steps``) and
                warned about. More such steps in a row than this stop training with an error
                (0: the first one does), and no checkpoint is ever written with non-finite weights.
            compile: compile the detector's forward with ``torch.compile`` (slow first steps,
                faster after; see ``tools/benchmark.py --compile`` for its effect on your machine).
        """
        super().__init__()
        if max_nonfinite_steps < 0:
            raise ValueError(f"max_nonfinite_steps must be >= 0, got {max_nonfinite_steps}")
        if warmup_epochs < 0 or warmup_min_steps < 0 or (warmup_steps is not None and warmup_steps < 0):
            raise ValueError(
                f"warm-up lengths must be >= 0, got warmup_epochs={warmup_epochs}, "
                f"warmup_min_steps={warmup_min_steps}, warmup_steps={warmup_steps}"
            )
        if schedule is not None and (lr_scheduler is not None or warmup_steps is not None):
            raise ValueError(
                "schedule sets the learning rate over the whole run (warm-up included): give it without "
                "lr_scheduler and warmup_steps"
            )
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names has {len(class_names)} names but num_classes is {num_classes}")
        self.save_hyperparameters()
        self.detector = detector(num_classes)
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.schedule = schedule
        self.input_size = int(input_size)
        self.pad_multiple = int(pad_multiple)
        self.val_evaluator = CocoEvaluator()
        self.test_evaluator = CocoEvaluator()
        self._weights_from_checkpoint = False
        self.skipped_steps = 0  # training steps with a non-finite loss, in total and in a row
        self._nonfinite_in_a_row = 0
        self._small_boxes = [0, 0]  # this epoch: boxes dropped for shrinking under 1 px, boxes trained on

    def setup(self, stage: str) -> None:
        # Here rather than in configure_model: callbacks such as WeightAveraging copy the module
        # in their own setup (which runs first) and warn about modules that override configure_model.
        if self.hparams.compile:
            self.detector.compile()

    def configure_callbacks(self) -> list[Callback]:
        """The callbacks the attached data module asks for (``DetectionDataModule.configure_callbacks``:
        the mosaic switch of ``data.mosaic_off_share`` / ``mosaic_off_last_epochs``); none without one.
        Lightning asks only the LightningModule for callbacks, so the data's are passed on here."""
        configure = getattr(self.trainer.datamodule, "configure_callbacks", None)
        return list(configure()) if callable(configure) else []

    def on_train_start(self) -> None:
        # After any checkpoint restore (for every strategy): a module that loaded a checkpoint
        # (resumed, or load_from_checkpoint) keeps its weights. An EMA average copies these weights
        # at its first update.
        init_weights = self.hparams.get("init_weights")
        if init_weights and not self._weights_from_checkpoint and self.trainer.global_step == 0:
            report = load_detector_weights(self.detector, init_weights)
            rank_zero_info(f"init_weights: {report}")
        if self._warmup_in_epochs():
            # The training data is loaded now: give the warm-up (the first scheduler, see
            # configure_optimizers) its length in steps before its first step. A resumed warm-up keeps
            # the length it was restored with: LinearLR steps from its previous rate, so a new length
            # mid-ramp would end it away from the base rate.
            configs = self.trainer.lr_scheduler_configs
            if configs and isinstance(configs[0].scheduler, LinearLR) and configs[0].scheduler.last_epoch == 0:
                configs[0].scheduler.total_iters = max(1, self.warmup_length(self._steps_per_epoch()))

    def forward(self, images: Tensor) -> list[Detections]:
        """Detections in input pixels for a batch ``FloatTensor[B, 3, H, W]`` in ``[0, 1]``."""
        return self.detector.predict_batch(images)

    # ---- training -------------------------------------------------------------------------
    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        images, targets = batch
        losses = self.detector.loss(images, targets)
        self._last_losses = {k: v.detach() for k, v in losses.items()}  # for the message of a skipped step
        self.log("train/skipped_steps", float(self.skipped_steps), batch_size=images.shape[0])
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, batch_size=images.shape[0])
        self.log("loss", losses["loss"], prog_bar=True, logger=False, batch_size=images.shape[0])
        return losses["loss"]

    def on_train_batch_end(self, outputs: Any, batch: Batch, batch_idx: int) -> None:
        targets = batch[1]
        self._small_boxes[0] += sum(int(t.get("small_boxes_dropped", 0)) for t in targets)
        self._small_boxes[1] += sum(len(t["boxes"]) for t in targets)

    def on_train_epoch_end(self) -> None:
        dropped, kept = self._small_boxes
        self._small_boxes = [0, 0]
        if dropped:
            rank_zero_warn(
                f"epoch {self.current_epoch}: {dropped} training boxes shrank under 1 px in the resize and "
                f"augmentation and were dropped ({kept} trained on, this process); raise data.input_size or "
                f"the low end of data.scale_range if objects that small matter"
            )

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Skip an optimizer step whose gradients are not finite (a NaN/inf loss in any accumulated
        micro-batch, or a finite loss with NaN gradients): the gradients are dropped, and optimizers
        leave parameters without gradient untouched (no momentum or weight-decay update). Under DDP
        the gradients are already averaged, so every process decides alike. fp16 AMP's gradient
        scaler finds the infinities itself and skips the step (it needs the gradients to do so)."""
        if getattr(self.trainer.precision_plugin, "scaler", None) is not None:
            return
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        # The largest absolute gradient is finite iff every gradient is (a 2-norm could overflow instead).
        if not grads or bool(get_total_norm(grads, norm_type=math.inf).isfinite()):  # one host sync per step
            self._nonfinite_in_a_row = 0
            return
        self._count_nonfinite()
        for group in optimizer.param_groups:
            for param in group["params"]:
                param.grad = None

    def _count_nonfinite(self) -> None:
        self.skipped_steps += 1
        self._nonfinite_in_a_row += 1
        losses = getattr(self, "_last_losses", {})
        parts = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items()) or "no loss recorded"
        where = f"step {self.global_step} (epoch {self.current_epoch})"
        if self._nonfinite_in_a_row > self.hparams.max_nonfinite_steps:
            raise FloatingPointError(
                f"training stopped: the loss or its gradients were not finite for {self._nonfinite_in_a_row} steps "
                f"in a row, the last at {where} (last loss: {parts}). Lower the learning rate, clip gradients "
                f"(--trainer.gradient_clip_val) or check the data; model.max_nonfinite_steps "
                f"({self.hparams.max_nonfinite_steps}) sets how many such steps in a row are skipped before "
                f"stopping. No checkpoint holds non-finite weights."
            )
        rank_zero_warn(
            f"{where}: the loss or its gradients are not finite (last loss: {parts}); the step is skipped, no "
            f"weight changes ({self.skipped_steps} skipped so far, {self._nonfinite_in_a_row} in a row; training "
            f"stops after {self.hparams.max_nonfinite_steps} in a row)"
        )

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
    def warmup_length(self, steps_per_epoch: int | None) -> int:
        """Optimizer steps of warm-up for epochs of ``steps_per_epoch`` steps (``None``: unknown,
        as for a module outside a Trainer or an iterable dataset without a length, then the floor
        ``warmup_min_steps``). ``warmup_steps``, when set, is the answer whatever the epoch."""
        if self.hparams.warmup_steps is not None:
            return int(self.hparams.warmup_steps)
        from_epochs = round(self.hparams.warmup_epochs * steps_per_epoch) if steps_per_epoch else 0
        return max(from_epochs, int(self.hparams.warmup_min_steps))

    def _warmup_in_epochs(self) -> bool:
        """Whether the warm-up length follows the epoch length (``warmup_epochs`` > 0, no ``warmup_steps``)."""
        return self.schedule is None and self.hparams.warmup_steps is None and self.hparams.warmup_epochs > 0

    def _steps_per_epoch(self) -> int | None:
        """Optimizer steps in one training epoch of this process (from ``on_train_start`` on, when
        the training data is loaded), ``None`` when not known (an iterable dataset without a length)."""
        batches = self.trainer.num_training_batches
        if not math.isfinite(batches) or batches <= 0:
            return None
        return math.ceil(batches / self.trainer.accumulate_grad_batches)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(weight_decay_groups(self))
        schedule = self.schedule
        if schedule is not None:
            trainer = self.trainer  # configure_optimizers runs inside a Trainer
            if not run_has_end(trainer):
                rank_zero_warn(
                    "model.schedule follows the run's progress, but the run has no end (trainer.max_epochs=-1, "
                    "no max_steps, no max_time): the learning rate stays at the start of its warm-up"
                )
            # A plain function (not a bound method): LambdaLR's state_dict then saves nothing of it.
            factor = lambda _step: schedule.factor(run_progress(trainer))  # noqa: E731
            return [optimizer], [{"scheduler": LambdaLR(optimizer, factor), "interval": "step"}]
        schedulers = []
        # A warm-up in epochs starts at its floor (the epoch length is not known yet: Lightning loads
        # the training data after this hook) and gets its length in on_train_start.
        warmup_steps = self.warmup_length(None)
        if self._warmup_in_epochs():
            warmup_steps = max(1, warmup_steps)
        if warmup_steps > 0:
            warmup = LinearLR(optimizer, start_factor=self.hparams.warmup_start_factor, total_iters=warmup_steps)
            schedulers.append({"scheduler": warmup, "interval": "step"})
        if self.lr_scheduler_factory is not None:
            main = self.lr_scheduler_factory(optimizer)
            schedulers.append({"scheduler": main, "interval": self.hparams.lr_scheduler_interval})
        return [optimizer], schedulers

    # ---- checkpoints ----------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("state_dict", {})
        nonfinite = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if nonfinite:
            raise FloatingPointError(
                f"refusing to write a checkpoint with non-finite weights ({len(nonfinite)} tensors, e.g. "
                f"{', '.join(nonfinite[:3])}) at step {self.global_step}: training diverged; lower the learning rate"
            )
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
        self._weights_from_checkpoint = True  # init_weights must not overwrite them
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
