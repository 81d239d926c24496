"""TestReport: the ``detkit report`` page of a ``detkit test`` run, from what the test evaluated (no second pass)."""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

__all__ = ["TestReport"]


class TestReport(Callback):
    """Writes ``report.html`` of a test run (the page of ``detkit report``, see
    :func:`~detkit.pictures.report_page.write_html_report`) with ``ground_truth.json`` and
    ``detections.json`` beside it (the files ``detkit evaluate --out`` writes), into
    ``<trainer.default_root_dir>/test`` unless ``output_dir`` is given.

    Nothing is evaluated twice: when the test epoch ends (before the module's ``on_test_epoch_end``
    computes and resets it) the ground truth and detections that the module's ``test_evaluator``
    (a :class:`~detkit.evaluation.CocoEvaluator`) accumulated are taken through its public
    :meth:`~detkit.evaluation.CocoEvaluator.coco_inputs`, on every process (under DDP it gathers),
    and rank 0 writes the page when the test ends. Galleries are drawn on the images of the
    datamodule's test reader (on grey without a datamodule); Grad-CAM maps come from a copy of the
    tested detector. A report that cannot be built never fails the test: a warning gives the reason.
    """

    # Not a test class, whatever pytest's collector makes of the name.
    __test__ = False

    def __init__(
        self,
        enabled: bool = True,
        output_dir: str | None = None,
        score_threshold: float = 0.25,
        iou_threshold: float = 0.5,
        top: int = 6,
        gradcam_top: int = 4,
        embed: bool = False,
    ) -> None:
        """Args:
        enabled: Write the report when ``test`` ends (``--test_report.enabled false``: nothing is kept or written).
        output_dir: Folder of the report; default ``<trainer.default_root_dir>/test``.
        score_threshold: Lowest score counted in the confusion matrix and the galleries.
        iou_threshold: IoU of a match for the confusion matrix, TIDE and the galleries.
        top: Gallery images per error type.
        gradcam_top: Top false positives mapped with HiResCAM (0: none).
        embed: Images inside the HTML (base64) instead of files beside it.
        """
        if not 0.0 <= score_threshold <= 1.0 or not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1] and iou_threshold in (0, 1], got {score_threshold}, {iou_threshold}")
        if top < 0 or gradcam_top < 0:
            raise ValueError(f"top and gradcam_top must be >= 0, got {top}, {gradcam_top}")
        self.enabled = enabled
        self.output_dir = output_dir
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.top = top
        self.gradcam_top = gradcam_top
        self.embed = embed
        self.path: Path | None = None  # the last report written
        self._images: dict[int, dict[str, Any]] = {}  # image_id -> file_name, height, width (this process)
        self._found: tuple[Any, Any] | None = None  # (GroundTruth, Results) of the test epoch
        self._detector: torch.nn.Module | None = None  # a copy of the tested detector, for Grad-CAM
        self._problem: str | None = None  # why no report can be written

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.path, self._images, self._found, self._detector, self._problem = None, {}, None, None, None

    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if not self.enabled or self._problem is not None:
            return
        try:
            for target in batch[1]:
                height, width = (int(v) for v in target["orig_size"])
                entry = {"height": height, "width": width}
                if target.get("file_name") is not None:
                    entry["file_name"] = str(target["file_name"])
                self._images[int(target["image_id"])] = entry
        except (TypeError, KeyError, IndexError, ValueError) as error:
            self._problem = f"the test batches are not detkit's (images, targets with image_id and orig_size): {error!r}"

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Lightning calls the callbacks' on_test_epoch_end before the module's, which computes and resets
        # the evaluator. Every process takes part here: coco_inputs and the gather below are collective.
        if not self.enabled:
            return
        evaluator = getattr(pl_module, "test_evaluator", None)
        if evaluator is None or not hasattr(evaluator, "coco_inputs"):
            self._problem = f"{type(pl_module).__name__} has no test_evaluator (a detkit CocoEvaluator)"
            return
        try:
            datamodule = getattr(trainer, "datamodule", None)
            category_ids = getattr(datamodule, "category_ids", None)
            self._found = evaluator.coco_inputs(pl_module.class_names, category_ids)
            self._images = _gathered(trainer, self._images)
        except Exception as error:  # noqa: BLE001 - a report must never fail the test
            self._problem = f"{type(error).__name__}: {error}"
        detector = getattr(pl_module, "detector", None)
        if self.gradcam_top > 0 and trainer.is_global_zero and isinstance(detector, torch.nn.Module):
            # A copy made outside inference mode (the test loop's), so that Grad-CAM can differentiate it;
            # its backward pass leaves the module's own gradients alone.
            with torch.inference_mode(False):
                try:
                    self._detector = copy.deepcopy(detector)
                except Exception as error:  # noqa: BLE001 - no Grad-CAM then, the rest of the report still
                    rank_zero_warn(f"test report: no Grad-CAM, the detector could not be copied: {error!r}")

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.enabled:
            return
        try:
            if trainer.is_global_zero:
                if self._problem is not None or self._found is None:
                    raise RuntimeError(self._problem or "the test evaluator was not read (no test epoch ended)")
                start = time.perf_counter()
                with torch.inference_mode(False):  # the test loop runs in inference mode; Grad-CAM needs gradients
                    self.path = self._write(trainer, pl_module)
                rank_zero_info(f"test report: {self.path} ({time.perf_counter() - start:.1f} s)")
        except Exception as error:  # noqa: BLE001 - a report must never fail the test
            rank_zero_warn(f"test report not written: {type(error).__name__}: {error} (`detkit report` can write it "
                           "from the checkpoint; --test_report.enabled false skips it)")  # fmt: skip
        finally:
            self._images, self._found, self._detector = {}, None, None

    def _write(self, trainer: Trainer, pl_module: LightningModule) -> Path:
        """Write the json files and the page; returns the page's path."""
        from detkit.data.readers.base import pixels_by_image_id
        from detkit.evaluation.cocojson import ground_truth_to_coco, results_to_coco, write_json
        from detkit.evaluation.run_folder import inspect_run
        from detkit.pictures.report_page import write_html_report
        from detkit.predictors import Predictor

        root = Path(trainer.default_root_dir)
        out = Path(self.output_dir) if self.output_dir is not None else root / "test"
        out.mkdir(parents=True, exist_ok=True)
        gt, dt = self._found  # type: ignore[misc]
        write_json(out / "detections.json", results_to_coco(dt, gt))
        ground_truth = ground_truth_to_coco(gt)  # with each image's file_name, height and width, as detkit evaluate's
        ground_truth["images"] = [{**im, **self._images.get(im["id"], {})} for im in ground_truth["images"]]
        write_json(out / "ground_truth.json", ground_truth)

        ckpt = Path(trainer.ckpt_path) if trainer.ckpt_path else None
        # The run folder's curves, config and exports; the checkpoint is the one tested (none: the module's
        # weights as they were), and the test's own logged stats equal those computed here.
        run = dataclasses.replace(inspect_run(root), checkpoint=ckpt, test_metrics=None, evaluation=None)
        source: dict[str, Any] = {"checkpoint": ckpt if ckpt is not None else "none (the module's weights as the test found them)"}
        images = None
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "reader"):
            reader = datamodule.reader("test")
            images = pixels_by_image_id(reader)
            source["test data"] = repr(reader)
        model = None
        if self._detector is not None:
            model = Predictor(self._detector, pl_module.class_names, pl_module.input_size, pl_module.pad_multiple)
        sizes = {i: (v["height"], v["width"]) for i, v in self._images.items()}
        return write_html_report(out, gt, dt, images=images, image_sizes=sizes, model=model, run=run, source=source,
                                 score_threshold=self.score_threshold, iou_threshold=self.iou_threshold, top=self.top,
                                 gradcam_top=self.gradcam_top, embed=self.embed)  # fmt: skip


def _gathered(trainer: Trainer, images: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The image facts of every process (under ``torch.distributed``; one process: ``images`` as they are)."""
    if trainer.world_size <= 1 or not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return images
    parts: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(parts, images)
    merged: dict[int, dict[str, Any]] = {}
    for part in parts:
        merged.update(part or {})
    return merged
