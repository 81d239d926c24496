"""Tests for detkit.data.datamodule.DetectionDataModule: readers per split produce contract batches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from jsonargparse import ArgumentParser
from PIL import Image
from torch.utils.data import SequentialSampler

from detkit.data import CocoReader, DetectionDataModule, FolderReader, ShapesReader, YoloReader
from detkit.data.readers.base import Reader
from detkit.data.sampler import EpochShuffle
from detkit.ops.letterbox import Letterbox

REPO = Path(__file__).resolve().parents[2]


def _check_batch(batch, batch_size: int, input_size: int, pad_multiple: int = 32) -> None:
    images, targets = batch
    assert images.dtype == torch.float32 and images.ndim == 4
    assert images.shape[0] == len(targets) <= batch_size
    assert images.shape[1] == 3 and images.shape[2] % pad_multiple == 0 and images.shape[3] % pad_multiple == 0
    assert images.shape[2] >= input_size and images.shape[3] >= input_size
    assert 0 <= images.min() and images.max() <= 1
    for target in targets:
        n = target["boxes"].shape[0]
        assert target["boxes"].shape == (n, 4) and target["boxes"].dtype == torch.float32
        assert target["labels"].shape == (n,) and target["labels"].dtype == torch.int64
        assert target["iscrowd"].shape == (n,) and target["iscrowd"].dtype == torch.int64
        assert target["area"].shape == (n,) and target["area"].dtype == torch.float32
        assert target["orig_size"].shape == (2,) and target["orig_size"].dtype == torch.int64
        assert target["scale"].shape == (2,) and target["scale"].dtype == torch.float32
        assert isinstance(target["image_id"], int) and isinstance(target["file_name"], str)
        h, w = target["orig_size"].tolist()
        assert target["scale"].tolist() == pytest.approx([input_size / max(h, w)] * 2, abs=0.5 / min(h, w))


def _shapes(num_train: int = 10, num_val: int = 6, num_test: int | None = 4, **kwargs) -> DetectionDataModule:
    test = ShapesReader(num_test, seed=2) if num_test is not None else None
    return DetectionDataModule(train=ShapesReader(num_train, seed=0), val=ShapesReader(num_val, seed=1), test=test, **kwargs)


def test_shapes_batches_classes_and_eval_targets() -> None:
    dm = _shapes(input_size=96, batch_size=4, num_workers=0)
    assert dm.num_classes == 3 and dm.class_names == ["circle", "square", "triangle"]  # before setup
    assert dm.category_ids is None and dm.input_size == 96 and dm.pad_multiple == 32
    dm.setup("fit")
    assert dm.test_dataset is None  # only what the stage needs
    train = list(dm.train_dataloader())
    assert [len(t) for _, t in train] == [4, 4, 2]  # drop_last=False
    for batch in train:
        _check_batch(batch, 4, 96)
        assert (batch[0].shape[2], batch[0].shape[3]) == (96, 96)
        assert all("orig_boxes" not in t for t in batch[1])
    val = list(dm.val_dataloader())
    assert sum(len(t) for _, t in val) == 6
    _check_batch(val[0], 4, 96)
    # eval targets carry the reader's boxes row for row; input boxes divided by the per-axis scale give them back
    raw = dm.val_dataset.dataset
    for target in val[0][1]:
        original = torch.from_numpy(raw[target["image_id"]][1]["boxes"])
        torch.testing.assert_close(target["orig_boxes"], original, rtol=0, atol=0)
        recovered = Letterbox.to_original(target["boxes"], target["scale"], target["orig_size"])
        torch.testing.assert_close(recovered, original, atol=1e-3, rtol=0)
    dm.setup("test")
    assert sum(len(t) for _, t in dm.test_dataloader()) == 4


def test_pad_multiple_comes_from_the_argument() -> None:
    dm = _shapes(input_size=100, pad_multiple=64, batch_size=2, num_workers=0, scale_range=(1.0, 1.0))
    dm.setup(None)
    images, targets = next(iter(dm.val_dataloader()))
    assert images.shape[-2:] == (128, 128)
    _check_batch((images, targets), 2, 100, pad_multiple=64)
    assert next(iter(dm.train_dataloader()))[0].shape[-2:] == (128, 128)  # 100 x 100 crops, padded


def test_readers_per_split_and_defaults() -> None:
    train, val = ShapesReader(4, seed=0), ShapesReader(3, seed=1)
    dm = DetectionDataModule(train=train, val=val, num_workers=0)
    assert dm.reader("train") is train and dm.reader("val") is val
    assert dm.reader("test") is val and dm.reader("predict") is val  # test defaults to val, predict to test
    test = ShapesReader(2, seed=2)
    dm = DetectionDataModule(train=train, val=val, test=test, num_workers=0)
    assert dm.reader("test") is test and dm.reader("predict") is test
    dm = DetectionDataModule(train=train, num_workers=0)
    with pytest.raises(ValueError, match="no val reader"):
        dm.reader("val")
    with pytest.raises(ValueError, match="no val reader"):
        dm.setup("fit")
    with pytest.raises(ValueError, match="at least one reader"):
        DetectionDataModule()
    with pytest.raises(ValueError, match="unknown split"):
        dm.reader("dev")


def test_shapes_splits_never_overlap() -> None:
    dm = DetectionDataModule(train=ShapesReader(20, seed=0), val=ShapesReader(20, seed=1), test=ShapesReader(20, seed=2))
    splits = {s: dm.reader(s) for s in ("train", "val", "test")}
    assert len({ds.seed for ds in splits.values()}) == 3
    keys = {s: {ds[i][0].tobytes() for i in range(len(ds))} for s, ds in splits.items()}
    assert not keys["train"] & keys["val"] and not keys["train"] & keys["test"] and not keys["val"] & keys["test"]


def test_predict_on_folder_and_on_test_split(tmp_path: Path) -> None:
    Image.new("RGB", (50, 30)).save(tmp_path / "one.png")
    dm = _shapes(input_size=64, batch_size=2, num_workers=0, num_test=3, predict=FolderReader(tmp_path))
    assert dm.class_names == ["circle", "square", "triangle"]  # the unlabelled folder is not compared
    dm.setup("predict")
    images, targets = next(iter(dm.predict_dataloader()))
    assert images.shape == (1, 3, 64, 64) and targets[0]["file_name"] == "one.png"
    assert targets[0]["orig_size"].tolist() == [30, 50] and targets[0]["boxes"].shape == (0, 4)
    dm = _shapes(input_size=64, batch_size=2, num_workers=0, num_test=3)
    dm.setup("predict")
    assert sum(len(t) for _, t in dm.predict_dataloader()) == 3
    only_folder = DetectionDataModule(predict=FolderReader(tmp_path), input_size=64, num_workers=0)
    only_folder.setup("predict")  # prediction needs no class names
    with pytest.raises(ValueError, match="no reader has class names"):
        only_folder.class_names


def test_loader_with_worker_processes() -> None:
    dm = _shapes(num_train=6, num_val=2, num_test=2, input_size=64, batch_size=3, num_workers=1)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert loader.persistent_workers and isinstance(loader.sampler, EpochShuffle) and not loader.drop_last
    assert isinstance(dm.val_dataloader().sampler, SequentialSampler)
    batches = list(loader)
    assert sum(len(t) for _, t in batches) == 6
    _check_batch(batches[0], 3, 64)


@pytest.mark.parametrize(
    "kwargs",
    [{"input_size": 0}, {"pad_multiple": 0}, {"batch_size": 0}, {"num_workers": -1}, {"mosaic_prob": 1.5},
     {"mosaic_off_last_epochs": -1}, {"mosaic_off_share": 1.5}, {"mosaic_off_share": 0.1, "mosaic_off_last_epochs": 2},
     {"scale_range": (2.0, 1.0)}, {"hflip_prob": 2.0},
     {"augmentations": [{"name": "Nope"}]}, {"multiscale_sizes": [0]}],
)  # fmt: skip
def test_bad_options_fail_at_construction(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        DetectionDataModule(val=ShapesReader(1), **kwargs)


def _write_coco(root: Path, name: str, categories: list[dict], n_images: int = 3) -> tuple[str, str]:
    images_dir = root / name
    images_dir.mkdir()
    images, annotations = [], []
    rng = np.random.default_rng(0)
    for i in range(n_images):
        w, h = 40 + 10 * i, 30
        Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)).save(images_dir / f"{i}.png")
        images.append({"id": 100 + i, "file_name": f"{i}.png", "width": w, "height": h})
        if i:  # image 0 is a background image
            category = categories[i % len(categories)]["id"]
            bbox = [2, 3, 10, 12] if i == 1 else [35, 3, 20, 40]  # image 2's box crosses the border: clipped
            annotations.append({"id": i, "image_id": 100 + i, "category_id": category, "bbox": bbox, "area": 120.0})
    ann_file = root / f"{name}.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return str(images_dir), str(ann_file)


CATEGORIES = [{"id": 5, "name": "bird"}, {"id": 2, "name": "bike"}]


@pytest.mark.filterwarnings("ignore:1 boxes extending outside their image clipped")
def test_coco_classes_before_setup_and_batches(tmp_path: Path) -> None:
    train = CocoReader(*_write_coco(tmp_path, "train", CATEGORIES))
    val = CocoReader(*_write_coco(tmp_path, "val", CATEGORIES, n_images=3))
    dm = DetectionDataModule(train=train, val=val, input_size=64, batch_size=2, num_workers=0)
    assert train._records is None and val._records is None  # nothing read yet
    assert dm.num_classes == 2 and dm.class_names == ["bike", "bird"] and dm.category_ids == [2, 5]
    assert train._records is None  # the classes come from the val reader alone
    assert dm.train_dataset is None  # nothing heavy happened yet
    dm.setup(None)
    for loader, count in ((dm.train_dataloader(), 3), (dm.val_dataloader(), 3), (dm.test_dataloader(), 3)):
        batches = list(loader)
        assert sum(len(t) for _, t in batches) == count
        _check_batch(batches[0], 2, 64)
    assert dm.test_dataset.dataset is val  # test defaults to val
    targets = [t for _, batch in dm.val_dataloader() for t in batch]
    assert [t["image_id"] for t in targets] == [100, 101, 102]
    assert targets[1]["labels"].tolist() == [0]  # image 1 has category 2 "bike" -> label 0
    # orig_boxes: the reader's sanitised boxes (clipped to the 60 x 30 image), row for row
    torch.testing.assert_close(targets[2]["orig_boxes"], torch.tensor([[35.0, 3, 55, 30]]))
    torch.testing.assert_close(Letterbox.to_original(targets[2]["boxes"], targets[2]["scale"], (30, 60)),
                               targets[2]["orig_boxes"], rtol=0, atol=1e-4)  # fmt: skip


@pytest.mark.filterwarnings("ignore:1 boxes extending outside their image clipped")
def test_mismatched_class_names_or_category_ids_are_errors(tmp_path: Path) -> None:
    train = CocoReader(*_write_coco(tmp_path, "train", [{"id": 1, "name": "cat"}]))
    val = CocoReader(*_write_coco(tmp_path, "val", CATEGORIES))
    dm = DetectionDataModule(train=train, val=val, num_workers=0)
    with pytest.raises(ValueError, match=r"class names differ between splits: train \(CocoReader.*train\.json.*\['cat'\]"):
        dm.setup("fit")
    renumbered = [{"id": 7, "name": "bike"}, {"id": 9, "name": "bird"}]
    test = CocoReader(*_write_coco(tmp_path, "test", renumbered))
    dm = DetectionDataModule(val=val, test=test, num_workers=0)
    with pytest.raises(ValueError, match=r"category ids differ between splits: test .* \[7, 9\]"):
        dm.setup("test")
    yolo_root = tmp_path / "yolo"
    (yolo_root / "images").mkdir(parents=True)
    Image.new("RGB", (20, 20)).save(yolo_root / "images" / "a.png")
    dm = DetectionDataModule(train=YoloReader(yolo_root / "images", ["dog"]), val=ShapesReader(2), num_workers=0)
    with pytest.raises(ValueError, match=r"train \(YoloReader.*\['dog'\], val \(ShapesReader"):
        dm.setup("fit")


def _parse_data(*blocks: dict) -> DetectionDataModule:
    """Parse ``data:`` blocks (later ones override) as the CLI does, and build the data module."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(DetectionDataModule, "data")
    cfg = None
    for block in blocks:
        cfg = parser.parse_object({"data": block}, namespace=cfg)
    return parser.instantiate(cfg).data


def _data_block(name: str) -> dict:
    return yaml.safe_load((REPO / "configs" / name).read_text())["data"]


def test_shipped_config_data_blocks_build_without_reading_files() -> None:
    shapes = _parse_data(_data_block("shapes.yaml"))
    assert [(r.num_images, r.seed) for r in (shapes.reader(s) for s in ("train", "val", "test"))] == [(2000, 0), (200, 1), (200, 2)]
    assert (shapes.input_size, shapes.pad_multiple, shapes.batch_size, shapes.num_workers) == (160, 32, 16, 2)
    coco = _parse_data(_data_block("fcos_r50_fpn_coco.yaml"))  # no COCO here: nothing is read yet
    assert isinstance(coco.reader("train"), CocoReader) and coco.reader("test") is coco.reader("val")
    assert (coco.input_size, coco.pad_multiple) == (800, 128)
    raccoon = _parse_data(_data_block("raccoon.yaml"), _data_block("augmentations.yaml"))
    assert raccoon.multiscale.sizes == [384, 448, 512] and raccoon.train_size == 512 and raccoon.mosaic_prob == 0.5
    assert raccoon.reader("train").split.endswith("train_labels.csv") and raccoon.pad_multiple == 32


class _ListReader(Reader):
    """Images of 32x32 with the given boxes per image (``iscrowd`` per box optional)."""

    def __init__(self, boxes_per_image: list[list[list[float]]], crowd: bool = False) -> None:
        self.boxes_per_image = boxes_per_image
        self.crowd = crowd

    @property
    def class_names(self) -> list[str]:
        return ["thing"]

    def __len__(self) -> int:
        return len(self.boxes_per_image)

    def __repr__(self) -> str:
        return f"_ListReader({len(self)} images)"

    def __getitem__(self, index: int):
        boxes = np.asarray(self.boxes_per_image[index], dtype=np.float32).reshape(-1, 4)
        n = len(boxes)
        target = {"boxes": boxes, "labels": np.zeros(n, np.int64), "iscrowd": np.full(n, int(self.crowd), np.int64),
                  "area": np.ones(n, np.float32), "image_id": index, "file_name": f"{index}.png"}  # fmt: skip
        return np.zeros((32, 32, 3), np.uint8), target


@pytest.mark.parametrize(
    ("train", "message"),
    [
        (_ListReader([[], [], []]), r"the train split has 3 images but not one box .*_ListReader\(3 images\)"),
        (_ListReader([[[1, 1, 9, 9]], []], crowd=True), r"the train split has 2 images but not one box"),
        (_ListReader([]), r"the train split has no images: _ListReader\(0 images\)"),
    ],
    ids=["background-only", "crowd-only", "no-images"],
)
def test_fit_refuses_a_training_split_with_nothing_to_learn(train: Reader, message: str) -> None:
    data = DetectionDataModule(train=train, val=_ListReader([[[1, 1, 9, 9]]]), input_size=32, batch_size=2)
    with pytest.raises(ValueError, match=message):
        data.setup("fit")


def test_empty_validation_split_is_an_error_and_one_box_is_enough_to_train() -> None:
    data = DetectionDataModule(train=_ListReader([[], [], [[2, 2, 20, 20]]]), val=_ListReader([]), input_size=32)
    with pytest.raises(ValueError, match=r"the val split has no images"):
        data.setup("fit")
    data = DetectionDataModule(train=_ListReader([[], [], [[2, 2, 20, 20]]]), val=_ListReader([[]]), input_size=32)
    data.setup("fit")
    assert len(data.train_dataset) == 3
