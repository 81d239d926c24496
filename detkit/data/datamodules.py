"""Lightning DataModules: the shared detection loader logic, the built-in Shapes data and COCO-format data."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from detkit.data.coco import CocoDetection, read_coco_categories
from detkit.data.augment import AugmentationSpec
from detkit.data.collate import MultiScaleCollate, collate_detection
from detkit.data.folder import ImageFolder
from detkit.data.mosaic import MosaicDataset, MosaicSchedule
from detkit.data.shapes import SHAPES_CLASS_NAMES, ShapesDataset
from detkit.data.transforms import TransformedDataset, eval_transforms, train_transforms

__all__ = ["DetectionDataModule", "ShapesDataModule", "CocoDataModule"]

Split = Literal["train", "val", "test"]


class DetectionDataModule(LightningDataModule):
    """Base for detection data: transforms, datasets per stage and loaders using :func:`collate_detection`.

    Subclasses implement :meth:`make_dataset` and the ``num_classes`` / ``class_names`` properties
    (which must work straight after ``__init__``). After :meth:`setup`, ``train_dataset``,
    ``val_dataset``, ``test_dataset`` and ``predict_dataset`` are :class:`TransformedDataset`
    wrappers; ``.dataset`` on each is the raw dataset (e.g. for rebuilding COCO ground truth; for
    training with mosaic it is the :class:`~detkit.data.mosaic.MosaicDataset` around it).

    Multi-scale training (``multiscale_sizes``) letterboxes training images to the largest size and
    resizes each batch to one size drawn from the list; validation, test and prediction always run
    at ``input_size`` (set it to the size the model will be deployed at).
    """

    def __init__(
        self,
        input_size: int = 640,
        batch_size: int = 8,
        num_workers: int = 2,
        hflip_prob: float = 0.5,
        scale_range: tuple[float, float] = (0.6, 1.4),
        color_jitter: float = 0.2,
        predict_images: str | None = None,
        augmentations: AugmentationSpec = "default",
        mosaic_prob: float = 0.0,
        mosaic_off_last_epochs: int = 0,
        multiscale_sizes: list[int] | None = None,
        skip_unreadable: bool = False,
    ) -> None:
        """Store loader and augmentation settings.

        Args:
            input_size: Side of the square network input; images are letterboxed to it.
            batch_size: Images per batch.
            num_workers: DataLoader worker processes (0 loads in the main process).
            hflip_prob: Training probability of a horizontal flip.
            scale_range: Training ``(low, high)`` random multiplier of the letterbox resize.
            color_jitter: Training brightness / contrast / saturation jitter strength (0 disables).
            predict_images: Folder of images for prediction; ``None`` predicts on the test split.
            augmentations: Training augmentation after the random-scale letterbox crop: a preset
                (``light``: flip; ``default``: flip + colour jitter; ``heavy``: + small affine, blur, grey;
                strengths from ``hflip_prob`` / ``color_jitter``) or a list of albumentations transforms,
                each ``{"class_path": "albumentations.Rotate", "init_args": {"limit": 10}}`` or
                ``{"name": "Rotate", "limit": 10}`` (then ``hflip_prob`` / ``color_jitter`` are unused).
            mosaic_prob: Probability that a training image is a 4-image mosaic (0 disables mosaic).
            mosaic_off_last_epochs: Train the last this many epochs (of ``trainer.max_epochs``) without mosaic.
            multiscale_sizes: Training input sides (multiples of 32), one drawn per batch; ``None``
                trains at ``input_size``. Evaluation always uses ``input_size``.
            skip_unreadable: Skip unreadable images (counted, with a warning naming each) instead of failing.
        """
        super().__init__()
        if input_size < 32:
            raise ValueError(f"input_size must be >= 32, got {input_size}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.input_size = input_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.hflip_prob = hflip_prob
        self.scale_range = tuple(scale_range)
        self.color_jitter = color_jitter
        self.predict_images = predict_images
        self.augmentations = augmentations
        if not 0 <= mosaic_prob <= 1:
            raise ValueError(f"mosaic_prob must be in [0, 1], got {mosaic_prob}")
        if mosaic_off_last_epochs < 0:
            raise ValueError(f"mosaic_off_last_epochs must be >= 0, got {mosaic_off_last_epochs}")
        self.mosaic_prob = mosaic_prob
        self.mosaic_off_last_epochs = mosaic_off_last_epochs
        self.multiscale = MultiScaleCollate(multiscale_sizes) if multiscale_sizes else None
        self.skip_unreadable = skip_unreadable
        self.train_dataset: TransformedDataset | None = None
        self.val_dataset: TransformedDataset | None = None
        self.test_dataset: TransformedDataset | None = None
        self.predict_dataset: TransformedDataset | None = None
        train_transforms(input_size, hflip_prob, self.scale_range, color_jitter, augmentations)  # validate early

    @property
    def train_size(self) -> int:
        """Side training images are letterboxed to: ``input_size``, or the largest multi-scale size."""
        return self.multiscale.train_size if self.multiscale is not None else self.input_size

    @property
    def num_classes(self) -> int:
        """Number of object classes."""
        return len(self.class_names)

    @property
    def class_names(self) -> list[str]:
        """Class names in label order."""
        raise NotImplementedError

    def make_dataset(self, split: Split) -> Dataset:
        """The raw (untransformed) dataset of ``split``."""
        raise NotImplementedError

    def _eval_wrap(self, dataset: Dataset) -> TransformedDataset:
        return TransformedDataset(dataset, eval_transforms(self.input_size), self.input_size)

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets ``stage`` needs (``fit``, ``validate``, ``test``, ``predict`` or all for ``None``)."""
        if stage in ("fit", None) and self.train_dataset is None:
            size = self.train_size
            transforms = train_transforms(
                size, self.hflip_prob, self.scale_range, self.color_jitter, self.augmentations
            )
            raw = self.make_dataset("train")
            if self.mosaic_prob > 0:
                raw = MosaicDataset(raw, size, self.mosaic_prob)
            self.train_dataset = TransformedDataset(raw, transforms, size)
        if stage in ("fit", "validate", None) and self.val_dataset is None:
            self.val_dataset = self._eval_wrap(self.make_dataset("val"))
        if stage in ("test", None) and self.test_dataset is None:
            self.test_dataset = self._eval_wrap(self.make_dataset("test"))
        if stage in ("predict", None) and self.predict_dataset is None:
            raw = ImageFolder(self.predict_images) if self.predict_images else self.make_dataset("test")
            self.predict_dataset = self._eval_wrap(raw)

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
            **{"collate_fn": collate_detection, **kwargs},
        )

    def _get_trainer(self) -> Any:
        return self.trainer

    def train_dataloader(self) -> DataLoader:
        kwargs: dict[str, Any] = {"collate_fn": self.multiscale} if self.multiscale is not None else {}
        raw = self.train_dataset.dataset if self.train_dataset is not None else None
        if isinstance(raw, MosaicDataset) and self.mosaic_off_last_epochs > 0:
            sampler = MosaicSchedule(raw, self.mosaic_off_last_epochs, self._get_trainer)
            return self._loader(self.train_dataset, "train", shuffle=False, sampler=sampler, **kwargs)
        return self._loader(self.train_dataset, "train", shuffle=True, **kwargs)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, "val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, "test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_dataset, "predict", shuffle=False)


class ShapesDataModule(DetectionDataModule):
    """The built-in, download-free Shapes data (circles, squares, triangles) in three disjoint splits."""

    def __init__(
        self,
        num_train: int = 2000,
        num_val: int = 200,
        num_test: int = 200,
        seed: int = 0,
        min_image_size: int = 96,
        max_image_size: int = 160,
        max_shapes: int = 4,
        input_size: int = 160,
        batch_size: int = 16,
        num_workers: int = 2,
        hflip_prob: float = 0.5,
        scale_range: tuple[float, float] = (0.6, 1.4),
        color_jitter: float = 0.2,
        predict_images: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Configure the generated splits and loaders.

        Args:
            num_train: Number of training images.
            num_val: Number of validation images.
            num_test: Number of test images.
            seed: Non-negative base seed; the train / val / test splits use seeds ``3*seed``,
                ``3*seed+1`` and ``3*seed+2``, so they never share an image.
            min_image_size: Smallest generated image side in pixels.
            max_image_size: Largest generated image side in pixels.
            max_shapes: Most shapes per image.
            input_size: Side of the square network input; images are letterboxed to it.
            batch_size: Images per batch.
            num_workers: DataLoader worker processes (0 loads in the main process).
            hflip_prob: Training probability of a horizontal flip.
            scale_range: Training ``(low, high)`` random multiplier of the letterbox resize.
            color_jitter: Training brightness / contrast / saturation jitter strength (0 disables).
            predict_images: Folder of images for prediction; ``None`` predicts on the test split.
            **kwargs: Further options of :class:`DetectionDataModule` (augmentations, mosaic, multi-scale).
        """
        super().__init__(
            input_size=input_size,
            batch_size=batch_size,
            num_workers=num_workers,
            hflip_prob=hflip_prob,
            scale_range=scale_range,
            color_jitter=color_jitter,
            predict_images=predict_images,
            **kwargs,
        )
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.save_hyperparameters()
        self.num_images = {"train": num_train, "val": num_val, "test": num_test}
        self.seed = seed
        self.min_image_size = min_image_size
        self.max_image_size = max_image_size
        self.max_shapes = max_shapes
        self.make_dataset("val")  # validate the generator arguments now

    @property
    def class_names(self) -> list[str]:
        """Class names in label order: circle, square, triangle."""
        return list(SHAPES_CLASS_NAMES)

    def make_dataset(self, split: Split) -> ShapesDataset:
        """The raw Shapes dataset of ``split``."""
        offset = {"train": 0, "val": 1, "test": 2}[split]
        return ShapesDataset(
            num_images=self.num_images[split],
            seed=3 * self.seed + offset,
            min_image_size=self.min_image_size,
            max_image_size=self.max_image_size,
            max_shapes=self.max_shapes,
        )


class CocoDataModule(DetectionDataModule):
    """COCO-format data: image folders with instances jsons for train, val and (optionally) test."""

    def __init__(
        self,
        train_images: str,
        train_annotations: str,
        val_images: str,
        val_annotations: str,
        test_images: str | None = None,
        test_annotations: str | None = None,
        input_size: int = 800,
        batch_size: int = 8,
        num_workers: int = 4,
        hflip_prob: float = 0.5,
        scale_range: tuple[float, float] = (0.6, 1.4),
        color_jitter: float = 0.2,
        predict_images: str | None = None,
        skip_unreadable: bool = False,
        **kwargs: Any,
    ) -> None:
        """Configure the splits and loaders (jsons are parsed in ``setup``).

        Args:
            train_images: Folder of training images.
            train_annotations: COCO instances json of the training images.
            val_images: Folder of validation images.
            val_annotations: COCO instances json of the validation images; its categories define
                ``class_names`` (every split must have the same categories).
            test_images: Folder of test images; defaults to the validation split.
            test_annotations: COCO instances json of the test images; given together with ``test_images``.
            input_size: Side of the square network input; images are letterboxed to it.
            batch_size: Images per batch.
            num_workers: DataLoader worker processes (0 loads in the main process).
            hflip_prob: Training probability of a horizontal flip.
            scale_range: Training ``(low, high)`` random multiplier of the letterbox resize.
            color_jitter: Training brightness / contrast / saturation jitter strength (0 disables).
            predict_images: Folder of images for prediction; ``None`` predicts on the test split.
            skip_unreadable: Skip unreadable images (counted, with a warning naming each) instead of failing.
            **kwargs: Further options of :class:`DetectionDataModule` (augmentations, mosaic, multi-scale).
        """
        super().__init__(
            input_size=input_size,
            batch_size=batch_size,
            num_workers=num_workers,
            hflip_prob=hflip_prob,
            scale_range=scale_range,
            color_jitter=color_jitter,
            predict_images=predict_images,
            skip_unreadable=skip_unreadable,
            **kwargs,
        )
        if (test_images is None) != (test_annotations is None):
            raise ValueError(
                f"give test_images and test_annotations together (got test_images={test_images!r}, "
                f"test_annotations={test_annotations!r})"
            )
        self.save_hyperparameters()
        self.paths: dict[str, tuple[Path, Path]] = {
            "train": (Path(train_images), Path(train_annotations)),
            "val": (Path(val_images), Path(val_annotations)),
            "test": (Path(test_images or val_images), Path(test_annotations or val_annotations)),
        }
        self._class_names: list[str] | None = None

    @property
    def class_names(self) -> list[str]:
        """Category names in label order (ascending COCO id), read from the validation json once."""
        if self._class_names is None:
            categories = read_coco_categories(self.paths["val"][1])
            self._class_names = [str(c["name"]) for c in categories]
        return list(self._class_names)

    def make_dataset(self, split: Split) -> CocoDetection:
        """The raw COCO dataset of ``split``, checked to have the validation json's categories."""
        images, annotations = self.paths[split]
        dataset = CocoDetection(images, annotations, skip_unreadable=self.skip_unreadable)
        if dataset.class_names != self.class_names:
            raise ValueError(
                f"categories of {annotations} ({dataset.class_names}) differ from those of "
                f"{self.paths['val'][1]} ({self.class_names})"
            )
        return dataset
