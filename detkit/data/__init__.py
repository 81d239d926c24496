"""Detection data: image reading, datasets (Shapes, COCO, image folders), transforms, collation, DataModules."""

from detkit.data.coco import CocoDetection, read_coco_categories
from detkit.data.collate import PAD_MULTIPLE, collate_detection
from detkit.data.datamodules import CocoDataModule, DetectionDataModule, ShapesDataModule
from detkit.data.folder import ImageFolder
from detkit.data.images import IMAGE_EXTENSIONS, ImageReadError, read_image
from detkit.data.shapes import SHAPES_CLASS_NAMES, ShapesDataset
from detkit.data.transforms import LABEL_FIELDS, TransformedDataset, eval_transforms, train_transforms

__all__ = [
    "CocoDataModule",
    "CocoDetection",
    "DetectionDataModule",
    "IMAGE_EXTENSIONS",
    "ImageFolder",
    "ImageReadError",
    "LABEL_FIELDS",
    "PAD_MULTIPLE",
    "SHAPES_CLASS_NAMES",
    "ShapesDataModule",
    "ShapesDataset",
    "TransformedDataset",
    "collate_detection",
    "eval_transforms",
    "read_coco_categories",
    "read_image",
    "train_transforms",
]
