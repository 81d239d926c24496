"""Tests for detkit.training.test_report: ``detkit test`` writes the report of what it evaluated."""

import json
import re
from pathlib import Path

import pytest

from detkit.evaluation.cocojson import load_ground_truth, load_results
from detkit.evaluation.metric import CocoEvaluator
from detkit.pictures.report_page import SECTIONS
from detkit.training.cli import build_cli

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "shapes.yaml"


def _tiny(root: Path) -> list[str]:
    """The shapes demo as a seconds-long run under ``root`` (as tests/training/test_cli.py's)."""
    return [
        "--config", str(CONFIG),
        "--trainer.default_root_dir", str(root),
        "--trainer.logger", "false",
        "--trainer.callbacks", "[]",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--data.train.init_args.num_images", "8",
        "--data.val.init_args.num_images", "4",
        "--data.test.init_args.num_images", "4",
        "--data.batch_size", "4",
        "--data.num_workers", "0",
        "--data.input_size", "96",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A two-step shapes run (4 test images) and its best checkpoint."""
    root = tmp_path_factory.mktemp("run")
    build_cli(args=["fit", *_tiny(root), "--trainer.max_steps", "2", "--test_report.enabled", "false"])
    return root, root / "checkpoints" / "best.ckpt"


def test_detkit_test_writes_the_report_of_what_it_evaluated(trained, monkeypatch):
    root, best = trained
    computed = []
    compute = CocoEvaluator.compute

    def counting(self):  # the test's own evaluation, and no second one for the report
        computed.append(1)
        return compute(self)

    monkeypatch.setattr(CocoEvaluator, "compute", counting)
    cli = build_cli(args=["test", *_tiny(root), "--ckpt_path", str(best), "--test_report.gradcam_top", "2"])
    assert len(computed) == 1

    out = root / "test"
    page = (out / "report.html").read_text()
    for section in SECTIONS:
        assert f'id="{section}"' in page, section
    assert str(best) in page  # the checkpoint tested, named in the run summary
    assert "Needs a checkpoint" not in page  # Grad-CAM had the tested detector, and could differentiate it
    assert (out / "figures" / "gradcam_false_positives.png").is_file()

    gt_json = json.loads((out / "ground_truth.json").read_text())
    assert len(gt_json["images"]) == 4 and all({"file_name", "height", "width"} <= set(im) for im in gt_json["images"])
    gt = load_ground_truth(gt_json)
    dt = load_results(json.loads((out / "detections.json").read_text()), gt)
    assert gt.category_names == ["circle", "square", "triangle"] and len(dt.scores) > 0

    # The page's mAP is the one the test logged.
    logged = float(cli.trainer.logged_metrics["test/map"])
    shown = float(re.search(r"mAP (\d\.\d{3})", page).group(1))
    assert shown == pytest.approx(logged, abs=5e-4)


def test_report_is_not_written_when_disabled(trained):
    root, best = trained
    build_cli(args=["test", *_tiny(root), "--ckpt_path", str(best), "--test_report.enabled", "false",
                    "--test_report.output_dir", str(root / "off")])  # fmt: skip
    assert not (root / "off").exists()


def test_a_failing_report_warns_and_the_test_still_ends(trained, monkeypatch):
    root, best = trained
    from detkit.pictures import report_page

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(report_page, "write_html_report", broken)
    with pytest.warns(UserWarning, match="test report not written: OSError: disk full"):
        cli = build_cli(args=["test", *_tiny(root), "--ckpt_path", str(best), "--test_report.output_dir", str(root / "broken")])
    assert "test/map" in cli.trainer.logged_metrics
    assert not (root / "broken" / "report.html").exists()
