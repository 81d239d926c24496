"""DataModules for YOLO txt and Pascal VOC xml datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from detkit.data.datamodules import DetectionDataModule, Split
from detkit.data.voc import VocDetection, voc_class_names
from detkit.data.yolo import YoloDetection, read_yolo_class_names

__all__ = ["YoloDataModule", "VocDataModule"]


class YoloDataModule(DetectionDataModule):
    """Ultralytics-style YOLO data: image folders with mirrored ``labels`` folders of txt files."""

    def __init__(
        self,
        train_images: str,
        val_images: str,
        class_names: list[str] | str,
        test_images: str | None = None,
        train_labels: str | None = None,
        val_labels: str | None = None,
        test_labels: str | None = None,
        input_size: int = 640,
        batch_size: int = 8,
        num_workers: int = 4,
        **kwargs: Any,
    ) -> None:
        """Configure the splits and loaders (label files are read in ``setup``).

        Args:
            train_images: Folder of training images (searched recursively).
            val_images: Folder of validation images.
            class_names: Class names in id order, or the path of an Ultralytics ``data.yaml`` (its ``names``).
            test_images: Folder of test images; defaults to the validation split.
            train_labels: Labels folder of the training images; default: ``images`` -> ``labels`` in the path.
            val_labels: Labels folder of the validation images; same default.
            test_labels: Labels folder of the test images; same default.
            input_size: Side of the square network input; images are letterboxed to it.
            batch_size: Images per batch.
            num_workers: DataLoader worker processes (0 loads in the main process).
            **kwargs: Further options of :class:`~detkit.data.DetectionDataModule` (augmentations, mosaic,
                multi-scale, skip_unreadable, ...).
        """
        super().__init__(input_size=input_size, batch_size=batch_size, num_workers=num_workers, **kwargs)
        self.save_hyperparameters(ignore=["class_names"])  # the model holds them (merged hparams must agree)
        self._class_names = read_yolo_class_names(class_names)
        self.paths = {
            "train": (train_images, train_labels),
            "val": (val_images, val_labels),
            "test": (test_images or val_images, test_labels if test_images else val_labels),
        }

    @property
    def class_names(self) -> list[str]:
        """Class names in label order."""
        return list(self._class_names)

    def make_dataset(self, split: Split) -> YoloDetection:
        """The raw YOLO dataset of ``split``."""
        images, labels = self.paths[split]
        return YoloDetection(images, labels, self._class_names, skip_unreadable=self.skip_unreadable)


class VocDataModule(DetectionDataModule):
    """Pascal VOC data: one folder of images and one of xml, with split files (txt ids or csv ``filename``)."""

    def __init__(
        self,
        images_dir: str,
        annotations_dir: str,
        train_split: str,
        val_split: str,
        test_split: str | None = None,
        class_names: list[str] | None = None,
        input_size: int = 640,
        batch_size: int = 8,
        num_workers: int = 4,
        **kwargs: Any,
    ) -> None:
        """Configure the splits and loaders (xml files are parsed in ``setup``).

        Args:
            images_dir: Folder of images.
            annotations_dir: Folder of VOC ``.xml`` files.
            train_split: Training ids: a txt list (``ImageSets/Main/train.txt``) or a csv with a ``filename`` column.
            val_split: Validation ids, same formats.
            test_split: Test ids; defaults to the validation split.
            class_names: Class names in label order; ``None``: every object name in ``annotations_dir``, sorted.
            input_size: Side of the square network input; images are letterboxed to it.
            batch_size: Images per batch.
            num_workers: DataLoader worker processes (0 loads in the main process).
            **kwargs: Further options of :class:`~detkit.data.DetectionDataModule` (augmentations, mosaic,
                multi-scale, skip_unreadable, ...).
        """
        super().__init__(input_size=input_size, batch_size=batch_size, num_workers=num_workers, **kwargs)
        self.save_hyperparameters(ignore=["class_names"])  # the model holds them (merged hparams must agree)
        self.images_dir, self.annotations_dir = Path(images_dir), Path(annotations_dir)
        self.splits = {"train": train_split, "val": val_split, "test": test_split or val_split}
        self._class_names = list(class_names) if class_names is not None else None

    @property
    def class_names(self) -> list[str]:
        """Class names in label order (discovered from all xml files once when not given)."""
        if self._class_names is None:
            self._class_names = voc_class_names(self.annotations_dir)
        return list(self._class_names)

    def make_dataset(self, split: Split) -> VocDetection:
        """The raw VOC dataset of ``split``."""
        return VocDetection(
            self.images_dir,
            self.annotations_dir,
            self.splits[split],
            class_names=self.class_names,
            skip_unreadable=self.skip_unreadable,
        )
