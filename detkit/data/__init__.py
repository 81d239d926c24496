"""Detection data: readers (COCO, YOLO, VOC, Shapes, image folders), checks, transforms, the DataModule."""

from detkit.data.augment import PRESETS, AugmentationSpec, build_augmentations, resolve_transform
from detkit.data.check import DataReport, check_dataset, plot_reports
from detkit.data.collate import MultiScaleCollate, collate_detection
from detkit.data.datamodule import DetectionDataModule
from detkit.data.images import IMAGE_EXTENSIONS, ImageReadError, image_size, read_image
from detkit.data.mixing import CopyPasteDataset, MixUpDataset, copy_paste, mixup
from detkit.data.mosaic import MosaicDataset, MosaicSwitch, mosaic
from detkit.data.readers import (
    SHAPES_CLASS_NAMES,
    CocoReader,
    DatasetIssues,
    DetectionRecords,
    FolderReader,
    Reader,
    Records,
    ShapesReader,
    VocReader,
    YoloReader,
    read_coco_categories,
    read_split_file,
    read_yolo_class_names,
)
from detkit.data.transforms import LABEL_FIELDS, EvalTransform, TrainTransform, TransformedDataset

__all__ = [
    "AugmentationSpec",
    "build_augmentations",
    "check_dataset",
    "CocoReader",
    "collate_detection",
    "DataReport",
    "DatasetIssues",
    "DetectionDataModule",
    "DetectionRecords",
    "EvalTransform",
    "FolderReader",
    "IMAGE_EXTENSIONS",
    "image_size",
    "ImageReadError",
    "LABEL_FIELDS",
    "mosaic",
    "MosaicDataset",
    "MosaicSwitch",
    "MixUpDataset",
    "CopyPasteDataset",
    "mixup",
    "copy_paste",
    "MultiScaleCollate",
    "plot_reports",
    "PRESETS",
    "read_coco_categories",
    "read_image",
    "read_split_file",
    "read_yolo_class_names",
    "Reader",
    "Records",
    "resolve_transform",
    "SHAPES_CLASS_NAMES",
    "ShapesReader",
    "TrainTransform",
    "TransformedDataset",
    "VocReader",
    "YoloReader",
]
