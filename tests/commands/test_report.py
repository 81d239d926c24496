"""Tests for ``detkit report``: a run folder with a checkpoint, an evaluation folder, and the folders that hold too little."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from report_data import read_page, write_evaluation
from tiny import SHAPE_NAMES, tiny_module, write_checkpoint

from detkit.commands import main as detkit_main
from detkit.commands.report import main

INPUT = 64
DATA = {
    "train": {"class_path": "detkit.data.ShapesReader", "init_args": {"num_images": 2, "seed": 0}},
    "test": {"class_path": "detkit.data.ShapesReader", "init_args": {"num_images": 6, "seed": 2, "max_shapes": 3}},
    "input_size": INPUT, "batch_size": 3, "num_workers": 0,
}  # fmt: skip


def _run_folder(root: Path, checkpoint: bool = True, config: bool = True) -> Path:
    """A run as ``detkit fit`` leaves it: checkpoints/best.ckpt, the saved config, a CSV log and an export."""
    version = root / "csv" / "version_0"
    version.mkdir(parents=True)
    if config:  # as LightningCLI saves it: with the subcommand's own keys
        saved = {"seed_everything": 0, "model": {"detector": tiny_module().hparams["detector"]}, "data": DATA, "ckpt_path": None}
        (version / "config.yaml").write_text(yaml.safe_dump(saved))
    rows = ["epoch,step,train/loss,val/map,val/map_50", "0,9,1.5,,", "0,9,,0.1,0.3", "1,19,1.2,,", "1,19,,0.2,0.4"]
    (version / "metrics.csv").write_text("\n".join(rows) + "\n")
    if checkpoint:
        module = tiny_module()
        with torch.no_grad():  # untrained, but confident: boxes everywhere, every error type
            for name, p in module.detector.named_parameters():
                if "cls" in name and name.endswith("bias"):
                    p.fill_(2.0)
        (root / "checkpoints").mkdir()
        write_checkpoint(module, root / "checkpoints" / "best.ckpt", input_size=INPUT)
        from detkit.deploy import export_model
        from detkit.inference import load_detector

        export_model(load_detector(root / "checkpoints" / "best.ckpt"), root / "export" / "model.torchscript", "torchscript")
        (root / "export" / "broken.onnx").write_bytes(b"not really onnx")
        (root / "export" / "broken.onnx.json").write_text(json.dumps({"input_size": INPUT, "score_threshold": 0.05}))
    return root


def test_a_training_run_gives_every_section(tmp_path, capsys):
    run = _run_folder(tmp_path / "run")
    assert detkit_main(["report", str(run), "--top", "2", "--measure_exports"]) == 0, capsys.readouterr().err
    html = run / "report" / "report.html"
    assert capsys.readouterr().out.strip() == str(html)
    page = read_page(html)
    assert page.rows["per-class-table"] == 1 + len(SHAPE_NAMES)
    text = html.read_text()
    for expected in ("figures/curves.png", "figures/errors.png", "confusion_matrix.png", "figures/geometry.png",
                     "ShapesReader(num_images=6, seed=2)", "version_0/config.yaml", "torchvision"):  # fmt: skip
        assert expected in text, expected
    deployment = text[text.index('<section id="deployment">') :]
    pytorch, onnx, torchscript = (deployment[deployment.index(f) :] for f in ("best.ckpt", "broken.onnx", "model.torchscript"))
    assert "not measured" in onnx[: onnx.index("</tr>")]  # a corrupt export is named, not fatal
    assert "not measured" not in torchscript[: torchscript.index("</tr>")]
    map_of = lambda row: float(row.split('data-v="')[1].split('"')[0])  # noqa: E731 - the first number: mAP
    assert map_of(torchscript) == pytest.approx(map_of(pytorch), abs=0.02)  # the export scores as the checkpoint
    assert any("gallery_" in src for src in page.images)
    pytest.importorskip("pytorch_grad_cam")
    assert "figures/gradcam_false_positives.png" in page.images, "Grad-CAM of the top false positives"
    gt = json.loads((run / "report" / "ground_truth.json").read_text())
    assert len(gt["images"]) == 6 and {"file_name", "height", "width"} <= set(gt["images"][0])


def test_an_evaluation_folder_embedded_with_its_images(tmp_path, capsys):
    folder = write_evaluation(tmp_path / "eval", num_classes=3)
    assert main([str(folder), "--images", str(folder / "images"), "--embed", "--out", str(tmp_path / "out")]) == 0
    page = read_page(tmp_path / "out" / "report.html")
    assert page.images and all(src.startswith("data:image/png;base64,") for src in page.images)
    assert "boxes are drawn on grey" not in (tmp_path / "out" / "report.html").read_text()


@pytest.mark.parametrize("num_classes", [1, 80])
def test_one_and_eighty_classes(tmp_path, num_classes):
    folder = write_evaluation(tmp_path / "eval", num_classes=num_classes, num_images={1: 8, 80: 60}[num_classes])
    assert main([str(folder), "--images", str(folder / "images")]) == 0
    html = folder / "report" / "report.html"
    page = read_page(html)
    assert page.rows["per-class-table"] == 1 + num_classes
    assert ("20 of 80 classes" in html.read_text()) == (num_classes == 80)  # the legible confusion subset


def test_a_run_without_a_checkpoint_reports_its_training(tmp_path, capsys):
    run = _run_folder(tmp_path / "run", checkpoint=False)
    assert main([str(run)]) == 0
    assert "no checkpoint" in capsys.readouterr().err
    text = (run / "report" / "report.html").read_text()
    read_page(run / "report" / "report.html")
    assert "figures/curves.png" in text and "No test results" in text


def test_an_evaluation_of_no_images_says_so(tmp_path, capsys):
    (tmp_path / "ground_truth.json").write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]}))
    (tmp_path / "detections.json").write_text("[]")
    assert main([str(tmp_path)]) == 0, capsys.readouterr().err
    assert "has no images" in (tmp_path / "report" / "report.html").read_text()
    read_page(tmp_path / "report" / "report.html")


@pytest.mark.parametrize(
    "case, message",
    [("empty", "nothing to report"), ("missing", "no folder"), ("empty test split", "test split has no images"),
     ("no config", "no saved config"), ("bad json", "detections.json is not valid json")],
)  # fmt: skip
def test_too_little_is_a_clear_message(tmp_path, capsys, case, message):
    argv = [str(tmp_path / "run")]
    if case == "empty":
        (tmp_path / "run").mkdir()
    elif case == "empty test split":
        _run_folder(tmp_path / "run")
        argv += ["--data.test.init_args.num_images", "0"]
    elif case == "no config":
        _run_folder(tmp_path / "run", config=False)
    elif case == "bad json":
        write_evaluation(tmp_path / "run", num_classes=2, images=False)
        (tmp_path / "run" / "detections.json").write_text("[{")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err


def test_evaluate_out_writes_the_report(tmp_path, capsys):
    folder = write_evaluation(tmp_path / "eval", num_classes=2)
    out = tmp_path / "out"
    argv = ["evaluate", "--gt", str(folder / "ground_truth.json"), "--dt", str(folder / "detections.json"),
            "--out", str(out), "--images", str(folder / "images")]  # fmt: skip
    assert detkit_main(argv) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["map"] >= 0  # stdout stays the stats json
    assert f"report: {out / 'report.html'}" in captured.err
    read_page(out / "report.html")
