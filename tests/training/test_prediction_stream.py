"""Streaming ``detkit predict``: the merged file equals what predictions.json always held, part files merge in
dataset order, and a killed run leaves the detections of its finished batches readable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from detkit.training.callbacks import PredictionWriter
from detkit.training.cli import build_cli
from detkit.training.prediction_files import PartWriter, merge_parts, part_path, read_predictions

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "shapes.yaml"
# An untrained detector finds nothing above the default 0.05: keep every candidate, up to 20 an image.
DECODER = {"class_path": "detkit.models.DenseDecoder", "init_args": {"score_threshold": 0.0, "max_detections": 20}}


def _args(root: Path, num_images: int = 5) -> list[str]:
    return [
        "--config", str(CONFIG),
        "--trainer.default_root_dir", str(root),
        "--trainer.logger", "false",
        "--trainer.callbacks", "[]",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--model.detector.init_args.head.init_args.decoder", json.dumps(DECODER),
        "--data.test.init_args.num_images", str(num_images),
        "--data.batch_size", "2",
        "--data.num_workers", "0",
        "--data.input_size", "64",
        "--predictions.max_drawn", "1",
    ]  # fmt: skip


def _today(predictions: list[list[dict]]) -> list[dict]:
    """predictions.json as PredictionWriter wrote it at the end of the run, from Lightning's returned predictions."""
    return [
        {"file_name": d.get("file_name"), "boxes": d["boxes"].tolist(), "scores": d["scores"].tolist(),
         "labels": d["labels"].tolist(), "names": d["names"]}
        for batch in predictions for d in batch
    ]  # fmt: skip


@pytest.mark.parametrize("output_format", ["json", "jsonl"])
def test_streamed_predictions_equal_what_predictions_json_held(tmp_path: Path, output_format: str) -> None:
    cli = build_cli(args=[*_args(tmp_path), "--predictions.output_format", output_format], run=False)
    returned = cli.trainer.predict(cli.model, datamodule=cli.datamodule, return_predictions=True)
    expected = json.loads(json.dumps(_today(returned)))  # the floats json.dumps wrote
    assert len(expected) == 5 and sum(len(r["boxes"]) for r in expected) > 0
    folder = tmp_path / "predictions"
    path = folder / f"predictions.{output_format}"
    if output_format == "json":
        assert json.loads(path.read_text()) == expected
    else:
        assert [json.loads(line) for line in path.read_text().splitlines()] == expected
    assert list(read_predictions(path)) == expected
    assert sorted(p.name for p in folder.iterdir()) == sorted([path.name, f"{Path(expected[0]['file_name']).stem}.png"])


def test_predict_subcommand_returns_nothing_unless_asked(tmp_path: Path) -> None:
    cli = build_cli(args=["predict", *_args(tmp_path, num_images=3)])
    assert cli.trainer.predict_loop.return_predictions is False
    assert len(json.loads((tmp_path / "predictions" / "predictions.json").read_text())) == 3
    cli = build_cli(args=["predict", *_args(tmp_path, num_images=3), "--return_predictions", "true"])
    assert cli.trainer.predict_loop.return_predictions is True


def test_a_killed_predict_leaves_the_finished_batches_readable(tmp_path: Path) -> None:
    """SIGKILL as the third batch starts: the part holds the two finished batches (4 images), as a full run has them."""
    full = tmp_path / "full"
    build_cli(args=["predict", *_args(full, num_images=8), "--predictions.output_format", "jsonl"])
    expected = list(read_predictions(full / "predictions" / "predictions.jsonl"))

    killed = tmp_path / "killed"
    callbacks = [{"class_path": "kill_at.KillAtPredictBatch", "init_args": {"batch": 2}}]
    cmd = [sys.executable, "-m", "detkit", "predict", *_args(killed, num_images=8), "--trainer.callbacks", json.dumps(callbacks)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests" / "support"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == -9, done.stderr[-3000:]  # killed, not finished
    part = part_path(killed / "predictions", 0)
    assert not (killed / "predictions" / "predictions.json").exists()
    records = list(read_predictions(part))
    assert [r.pop("index") for r in records] == [0, 1, 2, 3]
    assert records == expected[:4]
    merged = tmp_path / "merged.json"  # what was written can still be merged into one file
    assert merge_parts([part], merged) == 4 and json.loads(merged.read_text()) == expected[:4]


def _record(k: int) -> dict:
    return {"file_name": f"{k}.jpg", "boxes": [[0.1 * k, 1.0, 2.5, 3.0]], "scores": [1 / (k + 3)], "labels": [k % 2],
            "names": ["a" if k % 2 == 0 else "b"]}  # fmt: skip


def _write_part(path: Path, indices: list[int]) -> None:
    writer = PartWriter(path)
    for k in indices:
        writer.write(k, _record(k))
    writer.close()


@pytest.mark.parametrize("json_lines", [False, True])
def test_parts_merge_in_dataset_order_each_image_once(tmp_path: Path, json_lines: bool) -> None:
    # rank 1 ends with image 0 again (a sampler evening out the shares); rank 2 saw nothing
    parts = [tmp_path / "p0.jsonl", tmp_path / "p1.jsonl", tmp_path / "p2.jsonl"]
    _write_part(parts[0], [0, 2, 4, 6])
    _write_part(parts[1], [1, 3, 5, 0])
    _write_part(parts[2], [])
    out = tmp_path / ("out.jsonl" if json_lines else "out.json")
    assert merge_parts(parts, out, json_lines=json_lines) == 7
    expected = [_record(k) for k in range(7)]
    text = out.read_text()
    got = [json.loads(line) for line in text.splitlines()] if json_lines else json.loads(text)
    assert got == expected and list(read_predictions(out)) == expected
    assert all(p.is_file() for p in parts) and not list(tmp_path.glob("*.partial"))


def test_a_line_cut_by_a_kill_is_skipped_and_an_empty_run_merges_to_an_empty_list(tmp_path: Path) -> None:
    part = tmp_path / "p0.jsonl"
    _write_part(part, [0, 1])
    with open(part, "ab") as file:
        file.write(b'{"index":2,"file_name":"2.jpg","boxes":[[0.0,1')  # the process died mid-line
    assert [r["index"] for r in read_predictions(part)] == [0, 1]
    assert merge_parts([part], tmp_path / "out.json") == 2
    _write_part(tmp_path / "empty.jsonl", [])
    assert merge_parts([tmp_path / "empty.jsonl"], tmp_path / "none.json") == 0
    assert json.loads((tmp_path / "none.json").read_text()) == []


def test_a_foreign_line_is_an_error_naming_the_part(tmp_path: Path) -> None:
    part = tmp_path / "p0.jsonl"
    part.write_text('{"file_name": "a.jpg"}\n')
    with pytest.raises(ValueError, match="p0.jsonl"):
        merge_parts([part], tmp_path / "out.json")


def test_output_format_is_checked() -> None:
    with pytest.raises(ValueError, match="output_format"):
        PredictionWriter(output_format="csv")  # type: ignore[arg-type]


def test_a_part_rank_0_cannot_see_stops_every_process_naming_it(tmp_path: Path) -> None:
    """Across nodes without a shared folder rank 0 lacks the others' parts: an error, and the parts stay."""
    from types import SimpleNamespace

    class Strategy:
        def barrier(self, name: str) -> None:
            pass

        def broadcast(self, obj, src: int = 0):  # noqa: ANN001, ANN201 - rank 0's message to all
            return obj

    _write_part(part_path(tmp_path, 0), [0, 2])  # rank 1 wrote its part on another machine
    writer = PredictionWriter(output_dir=str(tmp_path))
    trainer = SimpleNamespace(world_size=2, global_rank=0, strategy=Strategy(), default_root_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"predictions\.rank1\.jsonl.*shares"):
        writer.on_predict_epoch_end(trainer, None)
    assert part_path(tmp_path, 0).is_file() and not (tmp_path / "predictions.json").exists()
