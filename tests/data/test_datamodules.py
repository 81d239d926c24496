"""Tests for detkit.data.datamodules: Shapes and COCO DataModules produce contract batches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import RandomSampler, SequentialSampler

from detkit.data.datamodules import CocoDataModule, ShapesDataModule


def _check_batch(batch, batch_size: int, input_size: int) -> None:
    images, targets = batch
    assert images.dtype == torch.float32 and images.ndim == 4
    assert images.shape[0] == len(targets) <= batch_size
    assert images.shape[1] == 3 and images.shape[2] % 32 == 0 and images.shape[3] % 32 == 0
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


def test_shapes_datamodule_batches_and_classes() -> None:
    dm = ShapesDataModule(num_train=10, num_val=6, num_test=4, input_size=96, batch_size=4, num_workers=0)
    assert dm.num_classes == 3 and dm.class_names == ["circle", "square", "triangle"]  # before setup
    dm.setup("fit")
    train = list(dm.train_dataloader())
    assert [len(t) for _, t in train] == [4, 4, 2]  # drop_last=False
    for batch in train:
        _check_batch(batch, 4, 96)
        assert (batch[0].shape[2], batch[0].shape[3]) == (96, 96)
    val = list(dm.val_dataloader())
    assert sum(len(t) for _, t in val) == 6
    _check_batch(val[0], 4, 96)
    # eval batch boxes divided by the per-axis scale give the raw dataset's boxes (float32 rounding only)
    raw = dm.val_dataset.dataset
    for target in val[0][1]:
        original = raw[target["image_id"]][1]["boxes"]
        recovered = target["boxes"] / target["scale"].repeat(2)
        torch.testing.assert_close(recovered, torch.from_numpy(original), atol=1e-3, rtol=0)
    dm.setup("test")
    assert sum(len(t) for _, t in dm.test_dataloader()) == 4


def test_shapes_splits_never_overlap() -> None:
    dm = ShapesDataModule(num_train=20, num_val=20, num_test=20, seed=1)
    splits = {s: dm.make_dataset(s) for s in ("train", "val", "test")}
    assert len({ds.seed for ds in splits.values()}) == 3
    keys = {s: {ds[i][0].tobytes() for i in range(len(ds))} for s, ds in splits.items()}
    assert not keys["train"] & keys["val"] and not keys["train"] & keys["test"] and not keys["val"] & keys["test"]


def test_shapes_predict_on_folder_and_on_test_split(tmp_path: Path) -> None:
    Image.new("RGB", (50, 30)).save(tmp_path / "one.png")
    dm = ShapesDataModule(num_test=3, input_size=64, batch_size=2, num_workers=0, predict_images=str(tmp_path))
    dm.setup("predict")
    images, targets = next(iter(dm.predict_dataloader()))
    assert images.shape == (1, 3, 64, 64) and targets[0]["file_name"] == "one.png"
    assert targets[0]["orig_size"].tolist() == [30, 50] and targets[0]["boxes"].shape == (0, 4)
    dm = ShapesDataModule(num_test=3, input_size=64, batch_size=2, num_workers=0)
    dm.setup("predict")
    assert sum(len(t) for _, t in dm.predict_dataloader()) == 3


def test_shapes_loader_with_worker_processes() -> None:
    dm = ShapesDataModule(num_train=6, num_val=2, num_test=2, input_size=64, batch_size=3, num_workers=1)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert loader.persistent_workers and isinstance(loader.sampler, RandomSampler) and not loader.drop_last
    assert isinstance(dm.val_dataloader().sampler, SequentialSampler)
    batches = list(loader)
    assert sum(len(t) for _, t in batches) == 6
    _check_batch(batches[0], 3, 64)


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
            bbox = [2, 3, 10, 12]
            annotations.append({"id": i, "image_id": 100 + i, "category_id": category, "bbox": bbox, "area": 120.0})
    ann_file = root / f"{name}.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return str(images_dir), str(ann_file)


CATEGORIES = [{"id": 5, "name": "bird"}, {"id": 2, "name": "bike"}]


def test_coco_datamodule_classes_before_setup_and_batches(tmp_path: Path) -> None:
    train_images, train_ann = _write_coco(tmp_path, "train", CATEGORIES)
    val_images, val_ann = _write_coco(tmp_path, "val", CATEGORIES, n_images=2)
    dm = CocoDataModule(train_images, train_ann, val_images, val_ann, input_size=64, batch_size=2, num_workers=0)
    assert dm.num_classes == 2 and dm.class_names == ["bike", "bird"]
    assert dm.train_dataset is None  # nothing heavy happened yet
    dm.setup(None)
    for loader, count in ((dm.train_dataloader(), 3), (dm.val_dataloader(), 2), (dm.test_dataloader(), 2)):
        batches = list(loader)
        assert sum(len(t) for _, t in batches) == count
        _check_batch(batches[0], 2, 64)
    assert dm.test_dataset.dataset.ann_file == Path(val_ann)  # test defaults to val
    _, targets = next(iter(dm.val_dataloader()))
    assert [t["image_id"] for t in targets] == [100, 101]
    assert targets[1]["labels"].tolist() == [0]  # image 1 has category 2 "bike" -> label 0


def test_coco_datamodule_rejects_mismatched_categories_and_half_test(tmp_path: Path) -> None:
    train_images, train_ann = _write_coco(tmp_path, "train", [{"id": 1, "name": "cat"}])
    val_images, val_ann = _write_coco(tmp_path, "val", CATEGORIES)
    dm = CocoDataModule(train_images, train_ann, val_images, val_ann, num_workers=0)
    with pytest.raises(ValueError, match="categories of .*train.json"):
        dm.setup("fit")
    with pytest.raises(ValueError, match="test_images and test_annotations"):
        CocoDataModule(train_images, train_ann, val_images, val_ann, test_images=val_images)
