"""The shared BCCD dataset (VOC devkit layout) through configs/raccoon.yaml + configs/bccd.yaml; skipped when absent."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from detkit.training.cli import build_data

REPO = Path(__file__).resolve().parents[3]
BCCD = REPO / ".." / "shared" / "data" / "bccd" / "BCCD"
pytestmark = pytest.mark.skipif(not (BCCD / "Annotations").is_dir(), reason="../shared/data/bccd is absent")


def test_bccd_config_reads_the_train_and_val_splits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # the configs' paths are relative to the repository root
    configs = ["--config", "configs/raccoon.yaml", "--config", "configs/bccd.yaml", "--data.num_workers=0"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        datamodule = build_data(configs)
        datamodule.setup("fit")
    assert datamodule.class_names == ["Platelets", "RBC", "WBC"]
    train, val = datamodule.reader("train"), datamodule.reader("val")
    assert (len(train), len(val)) == (205, 87)
    # PROVENANCE.txt: 2,805 train boxes, one of them zero-size (BloodImage_00343.xml object 4), dropped and counted.
    assert sum(len(train.target(i)["boxes"]) for i in range(len(train))) == 2804
    assert any("BloodImage_00343.xml" in str(w.message) for w in caught)
    images, targets = next(iter(datamodule.val_dataloader()))
    assert images.shape == (16, 3, 416, 416)
