"""Detection data: image reading, datasets (Shapes, COCO, YOLO, VOC, image folders), checks, transforms, DataModules."""

from detkit.data.check import DataReport, check_dataset, plot_reports
from detkit.data.coco import CocoDetection, read_coco_categories
from detkit.data.augment import PRESETS, AugmentationSpec, build_augmentations, resolve_transform
from detkit.data.collate import PAD_MULTIPLE, MultiScaleCollate, collate_detection
from detkit.data.datamodules import CocoDataModule, DetectionDataModule, ShapesDataModule
from detkit.data.folder import ImageFolder
from detkit.data.formats import VocDataModule, YoloDataModule
from detkit.data.images import IMAGE_EXTENSIONS, ImageReadError, image_size, read_image
from detkit.data.mosaic import MosaicDataset, MosaicSchedule, mosaic
from detkit.data.records import DatasetIssues, DetectionRecords
from detkit.data.shapes import SHAPES_CLASS_NAMES, ShapesDataset
from detkit.data.transforms import LABEL_FIELDS, TransformedDataset, eval_transforms, train_transforms
from detkit.data.voc import VocDetection, read_split_file
from detkit.data.yolo import YoloDetection, read_yolo_class_names

__all__ = [
    "AugmentationSpec",
    "build_augmentations",
    "check_dataset",
    "CocoDataModule",
    "CocoDetection",
    "collate_detection",
    "DataReport",
    "DatasetIssues",
    "DetectionDataModule",
    "DetectionRecords",
    "eval_transforms",
    "IMAGE_EXTENSIONS",
    "image_size",
    "ImageFolder",
    "ImageReadError",
    "LABEL_FIELDS",
    "mosaic",
    "MosaicDataset",
    "MosaicSchedule",
    "MultiScaleCollate",
    "PAD_MULTIPLE",
    "plot_reports",
    "PRESETS",
    "read_coco_categories",
    "read_image",
    "read_split_file",
    "read_yolo_class_names",
    "resolve_transform",
    "SHAPES_CLASS_NAMES",
    "ShapesDataModule",
    "ShapesDataset",
    "train_transforms",
    "TransformedDataset",
    "VocDataModule",
    "VocDetection",
    "YoloDataModule",
    "YoloDetection",
]
