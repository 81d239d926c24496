"""Readers: one dataset format each, as a lazy torch Dataset of ``(image, target)`` in original pixels."""

from detkit.data.readers.base import AnnotationError, DatasetIssues, Reader
from detkit.data.readers.coco import CocoReader, read_coco_categories
from detkit.data.readers.folder import FolderReader
from detkit.data.readers.records import DetectionRecords, Records
from detkit.data.readers.shapes import SHAPES_CLASS_NAMES, ShapesReader
from detkit.data.readers.voc import VocReader, read_split_file
from detkit.data.readers.yolo import YoloReader, read_yolo_class_names

__all__ = [
    "AnnotationError",
    "CocoReader",
    "DatasetIssues",
    "DetectionRecords",
    "FolderReader",
    "Reader",
    "Records",
    "read_coco_categories",
    "read_split_file",
    "read_yolo_class_names",
    "SHAPES_CLASS_NAMES",
    "ShapesReader",
    "VocReader",
    "YoloReader",
]
