"""Tests for ``detkit check-data`` (detkit.commands.check_data.main)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PIL import Image

from detkit.commands.check_data import main

REPO = Path(__file__).resolve().parents[2]
SHAPES = REPO / "configs" / "shapes.yaml"


def test_shapes_config_with_overrides_and_plot(tmp_path: Path, capsys) -> None:
    plot = tmp_path / "data.png"
    args = ["--config", str(SHAPES), "--data.train.init_args.num_images", "6",
            "--data.val.init_args.num_images", "3", "--data.test.init_args.num_images", "2", "--plot", str(plot)]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "DetectionDataModule: 3 classes ['circle', 'square', 'triangle']" in out
    assert "[train] ShapesReader" in out and "OK: no errors" in out
    lines = [line.split() for line in out.splitlines() if line.strip().startswith("images")]
    assert [int(parts[1]) for parts in lines] == [6, 3, 2]
    assert Image.open(plot).size[1] > 200  # three rows of plots


def _yolo_config(tmp_path: Path, labels: str) -> Path:
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (20, 10)).save(images / "a.png")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text(labels)
    config = tmp_path / "data.yaml"  # a data block given after a full fit config (test defaults to val)
    reader = f"{{class_path: detkit.data.YoloReader, init_args: {{images: {images}, class_names: [cat]}}}}"
    config.write_text(f"data:\n  train: {reader}\n  val: {reader}\n  test: null\n")
    return config


def test_repairs_are_reported_and_errors_exit_non_zero(tmp_path: Path, capsys) -> None:
    config = _yolo_config(tmp_path, "0 0.9 0.5 0.4 0.2\n0 0.5 0.5 0 0.1\n")
    assert main(["--config", str(SHAPES), "--config", str(config), "--splits", "train"]) == 0
    out = capsys.readouterr().out
    assert "1  e.g. a.txt:1" in out and "WARNING: 1 boxes clipped" in out and "WARNING: 1 zero/negative" in out

    (tmp_path / "labels" / "a.txt").write_text("3 0.5 0.5 0.1 0.1\n")
    assert main(["--config", str(SHAPES), "--config", str(config), "--splits", "train"]) == 1
    out = capsys.readouterr().out
    assert "ERROR: 1 labels with unknown class ids" in out and "a.txt:1 class 3" in out and "FAILED" in out

    (tmp_path / "images" / "a.png").write_bytes(b"garbage")
    code = main(["--config", str(SHAPES), "--config", str(config), "--splits", "train",
                 "--data.train.init_args.skip_unreadable", "true"])  # fmt: skip
    assert code == 1 and "no readable images" in capsys.readouterr().out


def test_bad_usage_exits_2(tmp_path: Path, capsys) -> None:
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().out


def test_console_script_dispatches(tmp_path: Path) -> None:
    config = _yolo_config(tmp_path, "0 0.5 0.5 0.5 0.5\n")
    script = "import sys; from detkit.commands import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", script, "check-data", "--config", str(SHAPES), "--config", str(config)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[val] same data as [train]" in done.stdout and "[test] same data as [train]" in done.stdout
