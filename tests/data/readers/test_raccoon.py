"""The shared raccoon dataset (Pascal VOC, 200 images) through VocReader and configs/raccoon.yaml; skipped when absent."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from detkit.data import VocReader
from detkit.data.check import check_dataset

REPO = Path(__file__).resolve().parents[3]
RACCOON = REPO / ".." / "shared" / "data" / "raccoon"
pytestmark = pytest.mark.skipif(not (RACCOON / "annotations").is_dir(), reason="../shared/data/raccoon is absent")


def test_all_200_images_and_217_boxes() -> None:
    ds = VocReader(RACCOON / "images", RACCOON / "annotations")
    assert len(ds) == 200 and ds.class_names == ["raccoon"]
    assert sum(len(t["boxes"]) for t in ds.targets) == 217
    report = check_dataset(ds, read_images=False)
    assert report.boxes == 217 and not report.errors and not report.issues.clipped and not report.issues.dropped


def test_csv_split_and_config(monkeypatch: pytest.MonkeyPatch) -> None:
    counts = {}
    for name in ("train_labels", "test_labels"):
        ds = VocReader(RACCOON / "images", RACCOON / "annotations", RACCOON / "data" / f"{name}.csv")
        counts[name] = (len(ds), sum(len(t["boxes"]) for t in ds.targets))
    assert counts == {"train_labels": (160, 173), "test_labels": (40, 44)}

    from jsonargparse import ArgumentParser

    from detkit.data import DetectionDataModule

    monkeypatch.chdir(REPO)  # the config's paths are relative to the repository root
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(DetectionDataModule, "data")
    block = yaml.safe_load((REPO / "configs" / "raccoon.yaml").read_text())["data"]
    datamodule = parser.instantiate(parser.parse_object({"data": {**block, "num_workers": 0}})).data
    assert datamodule.class_names == ["raccoon"] and datamodule.num_classes == 1
    datamodule.setup("validate")
    assert len(datamodule.val_dataset) == 40 and datamodule.reader("test") is datamodule.reader("val")
    images, targets = next(iter(datamodule.val_dataloader()))
    assert images.shape == (16, 3, 416, 416) and len(targets) == 16  # 416 px: a multiple of the largest stride, 32
    assert all(len(t["orig_boxes"]) == len(t["boxes"]) for t in targets)
