"""``DetectionDataModule``: reader objects per split, plus the loader and augmentation options, declared once."""

from __future__ import annotations

import gc
import os
from functools import partial
from typing import Any, Literal

import numpy as np
import torch
from lightning.fabric.utilities.seed import pl_worker_init_function
from lightning.pytorch import Callback, LightningDataModule
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader

from detkit.data.augment import AugmentationSpec
from detkit.data.collate import MultiScaleCollate, collate_detection
from detkit.data.mixing import CopyPasteDataset, MixUpDataset, Switchable
from detkit.data.mosaic import MosaicDataset, MosaicSwitch
from detkit.data.readers.base import Reader
from detkit.data.sampler import EpochShuffle
from detkit.data.transforms import EvalTransform, TrainTransform, TransformedDataset

__all__ = ["DetectionDataModule", "Split"]

Split = Literal["train", "val", "test", "predict"]
SPLITS: tuple[Split, ...] = ("train", "val", "test", "predict")


def freeze_inherited_objects(worker_id: int) -> None:
    """A loader worker's first step: leave every object it inherited from the main process to the
    garbage collector's permanent generation (``gc.freeze``, in the worker's own process only).

    A forked worker shares the main process's memory until it writes to a page; a full collection
    writes to the header of every object it scans, so without this each worker soon holds a copy of
    all the Python objects of the main process (about 80 MB per worker on a train2017-size json with
    torch and Lightning loaded; ``python -m tools.bench_scale epoch``). Objects the worker creates are
    collected as usual. Then, as Lightning does for a loader without a ``worker_init_fn`` after
    ``seed_everything(workers=True)`` (which ``detkit fit`` calls), the worker's random generators
    are seeded by ``pl_worker_init_function``.
    """
    gc.freeze()
    if int(os.environ.get("PL_SEED_WORKERS", 0)):
        pl_worker_init_function(worker_id)


class DetectionDataModule(LightningDataModule):
    """Detection data from one :class:`~detkit.data.readers.base.Reader` per split.

    Any reader fits any split (a COCO train set with a YOLO test set, Shapes for a demo); ``test``
    defaults to ``val`` and ``predict`` to ``test``. ``class_names`` and ``category_ids`` come from
    the readers: the val reader's (else test's, train's), and :meth:`setup` checks that the reader of
    every split it builds agrees (an unlabelled :class:`~detkit.data.readers.folder.FolderReader` has
    none and is not compared). Readers are lazy, so building the module reads no file; ``class_names``
    loads one reader, :meth:`setup` those its stage needs.

    After :meth:`setup`, ``train_dataset``, ``val_dataset``, ``test_dataset`` and
    ``predict_dataset`` are :class:`~detkit.data.transforms.TransformedDataset` wrappers; ``.dataset``
    on each is the reader (for training with copy-paste, mosaic or mixup, those wrappers around it,
    in that order). Evaluation items are letterboxed to
    ``input_size`` (padded to a multiple of ``pad_multiple``) and carry ``orig_boxes``, the reader's
    boxes in original pixels. Multi-scale training (``multiscale_sizes``) letterboxes training images
    to the largest size and resizes each batch to one size drawn from the list.
    """

    def __init__(
        self,
        train: Reader | None = None,
        val: Reader | None = None,
        test: Reader | None = None,
        predict: Reader | None = None,
        # input and loader
        input_size: int = 640,
        pad_multiple: int = 32,
        batch_size: int = 8,
        num_workers: int = 2,
        # training augmentation
        hflip_prob: float = 0.5,
        scale_range: tuple[float, float] = (0.6, 1.4),
        color_jitter: float = 0.2,
        augmentations: AugmentationSpec = "default",
        mosaic_prob: float = 0.0,
        mosaic_off_last_epochs: int = 0,
        mosaic_off_share: float = 0.0,
        mixup_prob: float = 0.0,
        copy_paste_prob: float = 0.0,
        multiscale_sizes: list[int] | None = None,
    ) -> None:
        """Store the readers and options (no file is read here).

        Args:
            train: Reader of the training split.
            val: Reader of the validation split.
            test: Reader of the test split; default: ``val``.
            predict: Reader of the images to predict on (e.g. a ``FolderReader``); default: ``test``.
            input_size: Longest side images are letterboxed to (set it to the size the model will be
                deployed at); validation, test and prediction always run at it.
            pad_multiple: Inputs and batches are zero-padded bottom/right to a multiple of this (the
                detector's largest stride).
            batch_size: Images per batch.
            num_workers: DataLoader worker processes (0 loads in the main process).
            hflip_prob: Training probability of a horizontal flip.
            scale_range: Training ``(low, high)`` random multiplier of the letterbox resize.
            color_jitter: Training brightness / contrast / saturation jitter strength (0 disables).
            augmentations: Training augmentation after the random-scale letterbox crop: a preset
                (``light``: flip; ``default``: flip + colour jitter; ``heavy``: + small affine, blur, grey;
                strengths from ``hflip_prob`` / ``color_jitter``) or a list of albumentations transforms,
                each ``{"class_path": "albumentations.Rotate", "init_args": {"limit": 10}}`` or
                ``{"name": "Rotate", "limit": 10}`` (then ``hflip_prob`` / ``color_jitter`` are unused).
            mosaic_prob: Probability that a training image is a 4-image mosaic (0 disables mosaic).
            mosaic_off_last_epochs: Train the last this many epochs (of ``trainer.max_epochs``) without mosaic.
            mosaic_off_share: Train the final share of the run (0..1; of its steps, or of
                ``trainer.max_time`` when time ends the run first) without mosaic, so the model ends on
                images as they are; holds for a run of any length. Exclusive with ``mosaic_off_last_epochs``.
                Both also switch off mixup and copy-paste, through the :class:`~detkit.data.mosaic.MosaicSwitch`
                callback of :meth:`configure_callbacks`.
            mixup_prob: Probability that a training item (a mosaic or not) is blended with another
                (:class:`~detkit.data.mixing.MixUpDataset`; 0 disables it).
            copy_paste_prob: Probability that a training image gets up to 8 boxes of another image
                pasted in as crops (:class:`~detkit.data.mixing.CopyPasteDataset`; 0 disables it).
            multiscale_sizes: Training input sides, one drawn per batch; ``None`` trains at ``input_size``.

        Raises:
            ValueError: No reader at all, or an option out of range (including augmentation entries).
        """
        super().__init__()
        if train is None and val is None and test is None and predict is None:
            raise ValueError("DetectionDataModule needs at least one reader (train, val, test or predict)")
        for name, value, low in (("input_size", input_size, 1), ("pad_multiple", pad_multiple, 1),
                                 ("batch_size", batch_size, 1), ("num_workers", num_workers, 0),
                                 ("mosaic_off_last_epochs", mosaic_off_last_epochs, 0)):  # fmt: skip
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        if not 0 <= mosaic_prob <= 1:
            raise ValueError(f"mosaic_prob must be in [0, 1], got {mosaic_prob}")
        for name, value in (("mixup_prob", mixup_prob), ("copy_paste_prob", copy_paste_prob)):
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if not 0 <= mosaic_off_share <= 1:
            raise ValueError(f"mosaic_off_share must be in [0, 1], got {mosaic_off_share}")
        if mosaic_off_share > 0 and mosaic_off_last_epochs > 0:
            raise ValueError("give mosaic_off_share or mosaic_off_last_epochs, not both")
        self.save_hyperparameters(ignore=list(SPLITS))
        test = test if test is not None else val
        self.readers: dict[Split, Reader | None] = {
            "train": train,
            "val": val,
            "test": test,
            "predict": predict if predict is not None else test,
        }
        self.input_size = int(input_size)
        self.pad_multiple = int(pad_multiple)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.hflip_prob = hflip_prob
        self.scale_range = tuple(scale_range)
        self.color_jitter = color_jitter
        self.augmentations = augmentations
        self.mosaic_prob = mosaic_prob
        self.mosaic_off_last_epochs = mosaic_off_last_epochs
        self.mosaic_off_share = mosaic_off_share
        self.mixup_prob = mixup_prob
        self.copy_paste_prob = copy_paste_prob
        # The training wrappers the end of the run switches off: filled in place by setup, since the
        # MosaicSwitch of configure_callbacks (built before setup) holds this list.
        self.switches: list[Switchable] = []
        self.multiscale = MultiScaleCollate(multiscale_sizes, self.pad_multiple) if multiscale_sizes else None
        self.train_dataset: TransformedDataset | None = None
        self.val_dataset: TransformedDataset | None = None
        self.test_dataset: TransformedDataset | None = None
        self.predict_dataset: TransformedDataset | None = None
        self._train_transform()  # validate the augmentation options now

    # ---- classes, from the readers
    def reader(self, split: Split) -> Reader:
        """The reader of ``split`` (after the ``test`` -> ``val``, ``predict`` -> ``test`` defaults).

        Raises:
            ValueError: No reader for ``split``.
        """
        if split not in self.readers:
            raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
        reader = self.readers[split]
        if reader is None:
            raise ValueError(f"no {split} reader given (data.{split})")
        return reader

    def _reference(self) -> tuple[Split, Reader]:
        """The first labelled reader of val, test, train, predict: it defines the classes."""
        for split in ("val", "test", "train", "predict"):
            reader = self.readers[split]
            if reader is not None and reader.class_names:
                return split, reader
        raise ValueError("no reader has class names (only unlabelled readers were given)")

    def check_classes(self, split: Split) -> None:
        """Check that the reader of ``split`` has the same classes as the others (unlabelled readers pass).

        Raises:
            ValueError: Its class names or category ids differ, naming both readers.
        """
        reader = self.reader(split)
        ref_split, ref = self._reference()
        if reader is ref or not reader.class_names:
            return
        if list(reader.class_names) != list(ref.class_names):
            raise ValueError(
                f"class names differ between splits: {split} ({reader!r}) has {reader.class_names}, "
                f"{ref_split} ({ref!r}) has {ref.class_names}"
            )
        ids, ref_ids = reader.category_ids, ref.category_ids
        if ids is not None and ref_ids is not None and list(ids) != list(ref_ids):
            raise ValueError(
                f"category ids differ between splits: {split} ({reader!r}) has {ids}, {ref_split} ({ref!r}) has {ref_ids}"
            )

    def check_has_boxes(self, split: Split) -> None:
        """Check that some image of ``split`` has a box that is not crowd/difficult (reads targets
        until one is found: all of them only for a split of background images).

        Raises:
            ValueError: Not one box, naming the reader: training would only learn background.
        """
        reader = self.reader(split)
        for index in range(len(reader)):
            target = reader.target(index)
            crowd = np.asarray(target.get("iscrowd", np.zeros(0)), dtype=bool).reshape(-1)
            if len(target["boxes"]) > int(crowd.sum()):
                return
        raise ValueError(
            f"the {split} split has {len(reader)} images but not one box (only background images, or only "
            f"crowd/difficult boxes): training would learn to detect nothing. Check its annotations with "
            f"`detkit check-data`: {reader!r}"
        )

    @property
    def class_names(self) -> list[str]:
        """Class names in label order: the val reader's (else test's, train's); :meth:`setup` checks the others."""
        return list(self._reference()[1].class_names)

    @property
    def num_classes(self) -> int:
        """Number of object classes."""
        return len(self.class_names)

    @property
    def category_ids(self) -> list[int] | None:
        """The format's id of each label (COCO category ids) of the reader defining ``class_names``, or ``None``."""
        ids = self._reference()[1].category_ids
        return list(ids) if ids is not None else None

    # ---- datasets
    @property
    def train_size(self) -> int:
        """Side training images are letterboxed to: ``input_size``, or the largest multi-scale size."""
        return self.multiscale.train_size if self.multiscale is not None else self.input_size

    def _train_transform(self) -> TrainTransform:
        return TrainTransform(self.train_size, self.hflip_prob, self.scale_range, self.color_jitter, self.augmentations)

    def _eval_dataset(self, split: Split) -> TransformedDataset:
        return TransformedDataset(self.reader(split), EvalTransform(self.input_size, self.pad_multiple))

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets ``stage`` needs (``fit``, ``validate``, ``test``, ``predict``, or all given for ``None``).

        Raises:
            ValueError: A split the stage needs has no reader or no image, the training split has
                not one box (only background: nothing to learn), or the readers' classes disagree.
        """
        needed: dict[str, tuple[Split, ...]] = {
            "fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",),
        }  # fmt: skip
        if stage is None:
            splits = tuple(s for s in SPLITS if self.readers[s] is not None)
        else:
            splits = needed.get(stage, ())
        for split in splits:
            if split != "predict":  # prediction needs no labels (the model has the class names)
                self.check_classes(split)
            if len(self.reader(split)) == 0:
                raise ValueError(f"the {split} split has no images: {self.reader(split)!r}")
        if "train" in splits and self.train_dataset is None:
            self.check_has_boxes("train")
        if "train" in splits and self.train_dataset is None:
            raw: Any = self.reader("train")
            self.switches.clear()
            if self.copy_paste_prob > 0:
                raw = CopyPasteDataset(raw, self.copy_paste_prob)
                self.switches.append(raw)
            if self.mosaic_prob > 0:
                raw = MosaicDataset(raw, self.train_size, self.mosaic_prob)
                self.switches.append(raw)
            if self.mixup_prob > 0:
                raw = MixUpDataset(raw, self.train_size, self.mixup_prob)
                self.switches.append(raw)
            self.train_dataset = TransformedDataset(raw, self._train_transform())
        if "val" in splits and self.val_dataset is None:
            self.val_dataset = self._eval_dataset("val")
        if "test" in splits and self.test_dataset is None:
            self.test_dataset = self._eval_dataset("test")
        if "predict" in splits and self.predict_dataset is None:
            self.predict_dataset = self._eval_dataset("predict")

    # ---- callbacks
    def configure_callbacks(self) -> list[Callback]:
        """The callbacks a ``fit`` on this data needs: a :class:`~detkit.data.mosaic.MosaicSwitch` when
        ``mosaic_off_share`` or ``mosaic_off_last_epochs`` is set (with mosaic, mixup or copy-paste on),
        else none. Lightning asks only the LightningModule for callbacks (its ``configure_callbacks``):
        ``DetectionModule`` returns these; with another module, pass them to the ``Trainer``.
        """
        if not (self.mosaic_off_share > 0 or self.mosaic_off_last_epochs > 0):
            return []
        if not (self.copy_paste_prob > 0 or self.mosaic_prob > 0 or self.mixup_prob > 0):
            return []
        return [MosaicSwitch(self.switches, self.mosaic_off_share, self.mosaic_off_last_epochs)]

    def _check_switch_attached(self) -> None:
        """Warn when a trainer runs without the MosaicSwitch this module's options ask for."""
        trainer = self.trainer
        if trainer is None or not self.switches or not (self.mosaic_off_share > 0 or self.mosaic_off_last_epochs > 0):
            return
        if not any(isinstance(c, MosaicSwitch) and c.switches is self.switches for c in trainer.callbacks):
            rank_zero_warn(
                "data.mosaic_off_share / mosaic_off_last_epochs are set but the Trainer has no MosaicSwitch for this "
                "data: mosaic stays on to the end. Pass DetectionDataModule.configure_callbacks() to the Trainer "
                "(DetectionModule adds them itself)."
            )

    # ---- loaders
    def _loader(self, dataset: TransformedDataset | None, name: str, shuffle: bool, **kwargs: Any) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{name} dataset is not set up; call setup() first")
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            drop_last=False,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            worker_init_fn=freeze_inherited_objects,
            **{"collate_fn": partial(collate_detection, pad_multiple=self.pad_multiple), **kwargs},
        )

    def train_dataloader(self) -> DataLoader:
        kwargs: dict[str, Any] = {"collate_fn": self.multiscale} if self.multiscale is not None else {}
        if self.train_dataset is None:
            raise RuntimeError("train dataset is not set up; call setup() first")
        self._check_switch_attached()
        # seed_everything's value (0 without it, as Lightning's DistributedSampler): the same on every process.
        sampler = EpochShuffle(len(self.train_dataset), int(os.environ.get("PL_GLOBAL_SEED", 0)))
        return self._loader(self.train_dataset, "train", shuffle=False, sampler=sampler, **kwargs)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, "val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, "test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_dataset, "predict", shuffle=False)
