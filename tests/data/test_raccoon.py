"""The shared raccoon dataset (Pascal VOC, 200 images) through VocDetection and configs/raccoon.yaml; skipped when absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from detkit.data import VocDetection
from detkit.data.check import check_dataset

REPO = Path(__file__).resolve().parents[2]
RACCOON = REPO / ".." / "shared" / "data" / "raccoon"
pytestmark = pytest.mark.skipif(not (RACCOON / "annotations").is_dir(), reason="../shared/data/raccoon is absent")


def test_all_200_images_and_217_boxes() -> None:
    ds = VocDetection(RACCOON / "images", RACCOON / "annotations")
    assert len(ds) == 200 and ds.class_names == ["raccoon"]
    assert sum(len(t["boxes"]) for t in ds.targets) == 217
    report = check_dataset(ds, read_images=False)
    assert report.boxes == 217 and not report.errors and not report.issues.clipped and not report.issues.dropped


def test_csv_split_and_config(monkeypatch: pytest.MonkeyPatch) -> None:
    counts = {}
    for name in ("train_labels", "test_labels"):
        ds = VocDetection(RACCOON / "images", RACCOON / "annotations", RACCOON / "data" / f"{name}.csv")
        counts[name] = (len(ds), sum(len(t["boxes"]) for t in ds.targets))
    assert counts == {"train_labels": (160, 173), "test_labels": (40, 44)}

    from detkit.cli import build_cli

    monkeypatch.chdir(REPO)  # the config's paths are relative to the repository root
    cli = build_cli(args=["--config", "configs/raccoon.yaml", "--data.init_args.num_workers", "0",
                          "--trainer.logger", "false", "--trainer.callbacks", "[]"], run=False)  # fmt: skip
    assert cli.datamodule.class_names == ["raccoon"] and cli.model.num_classes == 1
    cli.datamodule.setup("validate")
    images, targets = next(iter(cli.datamodule.val_dataloader()))
    assert images.shape == (8, 3, 512, 512) and len(targets) == 8
