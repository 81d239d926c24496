"""Issue 8's extension points, end to end: a head or a dataset format written outside detkit.

Each is one module in ``tests/support`` (on the path through ``tests/conftest.py``) plus a config
naming it by ``class_path``; nothing in ``detkit/`` knows about either. The head goes through
``detkit fit`` into a checkpoint and back out through ``load_detector``; the format goes through
``detkit fit`` and ``detkit check-data``.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from csv_reader import CsvReader
from extra_head import PointHead
from PIL import Image

from detkit import load_detector
from detkit.training.cli import build_cli
from detkit.commands.check_data import main as check_data

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "shapes.yaml"


def _quick(root: Path) -> list[str]:
    """Overrides turning ``configs/shapes.yaml`` into a 2-step run writing under ``root``."""
    return [
        "--trainer.default_root_dir", str(root),
        "--trainer.max_steps", "2",
        "--trainer.logger", "false",
        "--trainer.callbacks", "[]",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--data.batch_size", "4",
        "--data.num_workers", "0",
        "--data.input_size", "64",
    ]  # fmt: skip


def test_extra_head_from_config_fits_and_loads_from_its_checkpoint(tmp_path):
    head_config = tmp_path / "point_head.yaml"  # replaces the shapes config's FCOSHead
    head_config.write_text(
        "model:\n  detector:\n    init_args:\n      head:\n"
        "        class_path: extra_head.PointHead\n        init_args: {top_k: 7}\n"
    )
    small = ["--data.train.init_args.num_images", "8", "--data.val.init_args.num_images", "4"]
    root = tmp_path / "run"
    cli = build_cli(["fit", "--config", str(CONFIG), "--config", str(head_config), *_quick(root), *small])
    head = cli.model.detector.head
    assert isinstance(head, PointHead) and head.top_k == 7 and head.num_classes == 3
    assert cli.trainer.global_step == 2

    last = root / "checkpoints" / "last.ckpt"
    meta = torch.load(last, map_location="cpu", weights_only=True)["detkit"]
    assert meta["detector"]["init_args"]["head"]["class_path"] == "extra_head.PointHead"
    assert meta["detector"]["init_args"]["head"]["init_args"]["top_k"] == 7

    with pytest.raises(ValueError, match="outside detkit: extra_head.PointHead"):
        load_detector(last)  # a checkpoint may not make the loader import any module it names
    model = load_detector(last, trusted=["extra_head"])
    assert isinstance(model.detector.head, PointHead) and model.class_names == ["circle", "square", "triangle"]
    trained = cli.model.detector.state_dict()
    loaded = model.detector.state_dict()
    assert trained.keys() == loaded.keys() and all(torch.equal(trained[k], loaded[k]) for k in trained)

    image = np.full((70, 130, 3), 200, dtype=np.uint8)
    image[10:50, 20:70] = (30, 90, 200)
    [result] = model.predict(image, score_threshold=0.0)
    boxes, labels = result["boxes"], result["labels"]
    assert boxes.shape == (len(labels), 4) and 0 < len(labels) <= 7
    assert (boxes >= 0).all() and (boxes[:, 2] <= 130).all() and (boxes[:, 3] <= 70).all()
    assert (boxes[:, :2] <= boxes[:, 2:]).all()
    assert ((labels >= 0) & (labels < 3)).all() and labels.dtype == torch.int64
    assert result["names"] == [model.class_names[k] for k in labels.tolist()]
    assert (result["scores"][:-1] >= result["scores"][1:]).all()


def _write_csv_dataset(root: Path) -> Path:
    """Six 64x48 PNGs with one or two rectangles, ``train.csv`` (4 images) and ``val.csv`` (2)."""
    images = root / "images"
    images.mkdir(parents=True)
    header = "file,x1,y1,x2,y2,class\n"
    rows = {"train": header, "val": header}
    for k in range(6):
        name = f"{k:02d}.png"
        array = np.full((48, 64, 3), 230, dtype=np.uint8)
        array[8:30, 6 + k : 30 + k] = (200, 40, 40)
        array[20:44, 36:60] = (40, 40, 200)
        Image.fromarray(array).save(images / name)
        split = "train" if k < 4 else "val"
        rows[split] += f"{name},{6 + k},8,{30 + k},30,cat\n"
        if k != 1:
            rows[split] += f"{name},36,20,{60 if k else 70},44,dog\n"  # 00.png: crosses the right border
    for split, text in rows.items():
        (root / f"{split}.csv").write_text(text)
    data = root / "data.yaml"  # a data block given after the full shapes config (test defaults to val)
    reader = "{{class_path: csv_reader.CsvReader, init_args: {{images: {}, annotations: {}}}}}"
    data.write_text(
        f"data:\n  train: {reader.format(images, root / 'train.csv')}\n"
        f"  val: {reader.format(images, root / 'val.csv')}\n  test: null\n"
    )
    return data


def test_new_dataset_format_from_config_fits_and_is_checked(tmp_path, capsys):
    data = _write_csv_dataset(tmp_path / "csv")
    root = tmp_path / "run"
    with pytest.warns(UserWarning, match=r"1 boxes extending outside their image clipped .*train\.csv:3"):
        cli = build_cli(["fit", "--config", str(CONFIG), "--config", str(data), *_quick(root)])
    assert isinstance(cli.datamodule.reader("train"), CsvReader)
    assert cli.datamodule.class_names == ["cat", "dog"]
    assert cli.model.num_classes == cli.model.detector.head.num_classes == 2  # linked from the readers
    assert cli.model.class_names == ["cat", "dog"] and cli.trainer.global_step == 2
    assert (root / "checkpoints" / "last.ckpt").is_file()
    capsys.readouterr()

    assert check_data(["--config", str(CONFIG), "--config", str(data)]) == 0
    out = capsys.readouterr().out
    assert "DetectionDataModule: 2 classes ['cat', 'dog']" in out and "OK: no errors" in out
    assert f"[train] {tmp_path / 'csv' / 'train.csv'}" in out and "[test] same data as [val]" in out
    train = " ".join(out.split("[train]")[1].split("[val]")[0].split())  # the train report, one line
    assert "images 4 boxes 7 " in train and "per class cat: 4, dog: 3 background images 0" in train
    assert "out-of-bounds (clipped) 1 e.g. train.csv:3" in train
    assert "images 2 boxes 4 " in " ".join(out.split("[val]")[1].split())
