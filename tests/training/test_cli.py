"""Tests for detkit.training.cli: parsing and linking, --help, and a tiny fit/validate/test/predict run."""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from detkit.checkpoints import CHECKPOINT_FORMAT_VERSION
from detkit.training.cli import build_cli
from detkit.models import Detector

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "shapes.yaml"


def _tiny(root: Path) -> list[str]:
    """Overrides turning the shapes demo into a seconds-long run under ``root``."""
    return [
        "--config", str(CONFIG),
        "--trainer.default_root_dir", str(root),
        "--trainer.logger", "false",
        "--trainer.callbacks", "[]",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--predictions.max_drawn", "2",
        *_small_shapes(),
    ]  # fmt: skip


def _small_shapes(train: int = 8, val: int = 4, test: int = 4) -> list[str]:
    """Overrides shrinking the shapes config's data (readers keep their seeds)."""
    return [
        "--data.train.init_args.num_images", str(train),
        "--data.val.init_args.num_images", str(val),
        "--data.test.init_args.num_images", str(test),
        "--data.batch_size", "4",
        "--data.num_workers", "0",
        "--data.input_size", "96",
    ]  # fmt: skip


def test_config_parses_and_links_classes_from_data(tmp_path):
    cli = build_cli(args=_tiny(tmp_path), run=False)
    assert isinstance(cli.model.detector, Detector)
    assert cli.model.num_classes == cli.datamodule.num_classes == 3
    assert cli.model.class_names == ["circle", "square", "triangle"]
    assert cli.model.detector.head.num_classes == 3
    assert cli.model.input_size == cli.datamodule.input_size == 96  # linked from the data


def test_building_the_cli_leaves_the_process_warning_filters_as_they_were(tmp_path):
    from detkit.training.cli import parse_config

    before = list(warnings.filters)
    build_cli(args=_tiny(tmp_path), run=False)
    parse_config(["--config", str(CONFIG), *_small_shapes()])
    assert warnings.filters == before


def test_build_data_parses_like_fit_and_builds_only_the_data(tmp_path, monkeypatch):
    from detkit.training.cli import build_data
    from detkit.models import backbones

    def no_model(*args, **kwargs):
        raise AssertionError("build_data must not build a model")

    monkeypatch.setattr(backbones.PlainConvBackbone, "__init__", no_model)
    data = build_data(["--config", str(CONFIG), *_small_shapes(test=5), "--data.input_size", "64"])
    data.setup("test")
    assert data.input_size == 64 and len(data.test_dataset) == 5 and data.class_names == ["circle", "square", "triangle"]


def test_fit_help_shows_documented_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_cli(args=["fit", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--model.warmup_steps" in out and "linear learning-rate warm-up" in out
    assert "--data" in out and "--model.detector" in out and "--checkpoint.monitor" in out


def test_class_help_shows_detector_and_data_docstrings(capsys):
    for args, option, doc in [
        (["--model.detector.help", "detkit.models.Detector"], "image_mean", "mean"),
        (["--model.detector.init_args.head.help", "detkit.models.FCOSHead"], "num_convs", "tower"),
        (["--data.train.help", "detkit.data.ShapesReader"], "num_images", "Shapes"),
    ]:
        with pytest.raises(SystemExit):
            build_cli(args=["fit", *args])
        out = capsys.readouterr().out
        assert option in out and doc in out, out[:2000]


def test_fit_validate_test_predict_and_load_in_fresh_process(tmp_path):
    build_cli(args=["fit", *_tiny(tmp_path), "--trainer.max_steps", "2"])
    best = tmp_path / "checkpoints" / "best.ckpt"  # under default_root_dir
    assert best.is_file() and (tmp_path / "checkpoints" / "last.ckpt").is_file()

    checkpoint = torch.load(best, map_location="cpu", weights_only=True)  # safe loading works
    meta = checkpoint["detkit"]
    assert meta["format_version"] == CHECKPOINT_FORMAT_VERSION == 2 and meta["class_names"] == ["circle", "square", "triangle"]
    assert meta["detector"]["class_path"] == "detkit.models.Detector" and meta["input_size"] == 96
    assert meta["pad_multiple"] == 32

    # Evaluating a checkpoint letterboxes as it was trained, whatever the config says (with a warning).
    with pytest.warns(UserWarning, match="trained with data input_size 96; using it instead of the config's 64"):
        cli = build_cli(args=["validate", *_tiny(tmp_path), "--data.input_size", "64", "--ckpt_path", str(best)])
    assert cli.datamodule.input_size == 96

    for sub in ("validate", "test"):
        cli = build_cli(args=[sub, *_tiny(tmp_path), "--ckpt_path", str(best)])
        logged = cli.trainer.logged_metrics
        prefix = "val" if sub == "validate" else "test"
        assert {f"{prefix}/map", f"{prefix}/map_50", f"{prefix}/mar_100", f"{prefix}/map_small"} <= set(logged)

    build_cli(args=["predict", *_tiny(tmp_path), "--ckpt_path", str(best)])
    records = json.loads((tmp_path / "predictions" / "predictions.json").read_text())
    assert len(records) == 4 and all(set(r) >= {"boxes", "scores", "labels", "names", "file_name"} for r in records)
    assert len(list((tmp_path / "predictions").glob("*.png"))) == 2

    # A fresh interpreter: no Trainer, no config file, only the checkpoint.
    script = f"""
import numpy as np, detkit
model = detkit.load_detector({str(best)!r})
assert not model.training and model.class_names == ["circle", "square", "triangle"]
image = np.full((70, 130, 3), 200, dtype=np.uint8)
[result] = model.predict(image, score_threshold=0.0)
boxes = result["boxes"]
assert boxes.shape[1] == 4 and len(result["names"]) == len(boxes) == len(result["scores"])
assert (boxes[:, 2] <= 130).all() and (boxes[:, 3] <= 70).all() and (boxes >= 0).all()
print("OK", len(boxes))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("OK")


@pytest.mark.parametrize(
    "configs",
    [["shapes.yaml"], ["fcos_r50_fpn_coco.yaml"], ["fcos_r50_fpn_coco.yaml", "lite_head.yaml"], ["raccoon.yaml", "augmentations.yaml"],
     ["raccoon.yaml", "raccoon_fcos.yaml"], ["raccoon.yaml", "raccoon_imagenet.yaml"], ["raccoon.yaml", "bccd.yaml"],
     ["raccoon.yaml", "bccd.yaml", "raccoon_imagenet.yaml"], ["raccoon.yaml", "coco_fcos.yaml"],
     ["raccoon.yaml", "coco_fcos.yaml", "coco_retinanet.yaml"]],
)
def test_shipped_configs_parse(configs, capsys):
    """Every shipped config is valid for `detkit fit` (parsed and printed, nothing built or downloaded)."""
    args = ["fit"]
    for name in configs:
        args += ["--config", str(CONFIG.parent / name)]
    with pytest.raises(SystemExit) as exit_info:
        build_cli(args=[*args, "--print_config"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "class_path: detkit.models.Detector" in printed and "class_path: detkit.data." in printed


def test_default_root_dir_moves_every_output(tmp_path, monkeypatch):
    """With only --trainer.default_root_dir given, checkpoints, logs and predictions all land there."""
    monkeypatch.chdir(tmp_path)  # a run that wrote to ./runs or ./lightning_logs would show up here
    root = tmp_path / "elsewhere"
    small = [
        "--config", str(CONFIG), "--trainer.default_root_dir", str(root), "--trainer.max_steps", "2",
        "--trainer.enable_progress_bar", "false", "--trainer.callbacks", "[]", *_small_shapes(),
    ]  # fmt: skip
    build_cli(args=["fit", *small])
    build_cli(args=["predict", *small, "--ckpt_path", str(root / "checkpoints" / "last.ckpt")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere"], list(tmp_path.iterdir())
    assert (root / "checkpoints" / "best.ckpt").is_file() and (root / "checkpoints" / "last.ckpt").is_file()
    assert list((root / "csv").glob("version_*/metrics.csv")), "CSV metrics missing"
    assert list((root / "csv").glob("version_*/config.yaml")), "saved config missing"
    assert list((root / "tensorboard").glob("version_*/events.out.tfevents.*")), "TensorBoard events missing"
    assert len(json.loads((root / "predictions" / "predictions.json").read_text())) == 4


@pytest.mark.parametrize("option", ["--trainer.max_epoch", "--trainer.max_step", "--data.batch_siz"])
def test_abbreviated_options_are_rejected_naming_them(option, capsys):
    """argparse prefix matching would take ``--trainer.max_epoch 3`` silently as ``--trainer.max_epochs``."""
    from detkit.training.cli import parse_config
    from detkit.commands import main

    with pytest.raises(SystemExit) as exit_info:  # the `detkit fit` entry, parse only
        main(["fit", "--config", str(CONFIG), option, "3", "--print_config"])
    assert exit_info.value.code == 2
    assert f"unrecognized arguments: {option} 3" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # and the parse-only helper tools use
        parse_config(["--config", str(CONFIG), option, "3"])
    assert f"unrecognized arguments: {option} 3" in capsys.readouterr().err
    full = option + ("s" if option.startswith("--trainer") else "e")
    assert parse_config(["--config", str(CONFIG), full, "3"]).get(full[2:]) == 3


@pytest.mark.parametrize("content", [b"not a checkpoint\n", b"PK\x03\x04truncated"], ids=["text", "truncated-zip"])
def test_evaluating_with_an_unreadable_checkpoint_names_it(tmp_path, content):
    from detkit.training.cli import match_checkpoint_input, parse_config

    path = tmp_path / "broken.ckpt"
    path.write_bytes(content)
    data = parse_config(["--config", str(CONFIG)]).data
    with pytest.raises(ValueError, match=r"broken\.ckpt is not a detkit checkpoint / cannot be read"):
        match_checkpoint_input(data, path)
