"""Tests for `detkit tune`: concurrent workers on one SQLite study, a killed worker, bad storages, pruning."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from detkit.commands import main as detkit_main

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# Seconds-long trials: 3 steps on 8 shapes images at 64 px; GFLOPs as the second objective (no export).
TINY = [
    "--trainer.max_steps", "3", "--trainer.logger", "false", "--trainer.callbacks", "[]",
    "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
    "--data.train.init_args.num_images", "8", "--data.val.init_args.num_images", "4",
    "--data.test.init_args.num_images", "4", "--data.batch_size", "4", "--data.num_workers", "0",
    "--data.input_size", "64", "--latency", "flops",
]  # fmt: skip


def _space(tmp_path: Path) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(
        "model.detector.init_args.backbone.init_args.kernel_size: {choices: [3, 5]}\n"
        "model.optimizer.init_args.lr: {type: float, low: 0.001, high: 0.01, log: true}\n"
    )
    return path


def _command(tmp_path: Path, root: Path, trials: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "detkit", "tune", "--config", str(CONFIGS / "shapes.yaml"), "--space", str(_space(tmp_path)),
            "--trials", str(trials), "--study-name", "s", "--trainer.default_root_dir", str(root), *TINY, *extra]  # fmt: skip


def _trials(root: Path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="s", storage=f"sqlite:///{root / 'study.db'}").get_trials()


def test_two_workers_share_one_study_without_losing_or_repeating_a_trial(tmp_path):
    root = tmp_path / "study"
    workers = [subprocess.Popen(_command(tmp_path, root, 4), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(2)]  # fmt: skip
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    trials = _trials(root)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4, outputs
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    # Both workers ran trials, and each trial ran once: one folder, one trial process, one result.
    ran = [line.split(":")[0] for out in outputs for line in out.splitlines() if line.startswith("trial ") and "COMPLETE" in line]
    assert sorted(ran) == [f"trial {n}" for n in range(4)] and all("COMPLETE" in out for out in outputs)
    pids = {json.loads((root / "trials" / f"{n:03d}" / "result.json").read_text())["pid"] for n in range(4)}
    assert len(pids) == 4
    assert trials[0].user_attrs["baseline"] and trials[0].params["model.optimizer.init_args.lr"] == 0.003
    assert {"study.csv", "study.md", "pareto.png"} <= {p.name for p in root.iterdir()}
    front = sorted((root / "front").glob("trial_*.yaml"))
    assert front and "class_path: detkit.models.Detector" in front[0].read_text()


def test_a_study_killed_mid_trial_resumes_and_completes(tmp_path):
    root = tmp_path / "study"
    command = _command(tmp_path, root, 2, "--heartbeat", "1", "--grace", "3")
    worker = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = root / "trials" / "000" / "trial.log"
    deadline = time.time() + 120
    while not (log.is_file() and log.stat().st_size > 0) and time.time() < deadline:
        time.sleep(0.5)
    assert log.is_file(), "the first trial never started"
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    time.sleep(4)  # past the grace period: the trial's heartbeat is stale
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    states = [t.state.name for t in _trials(root)]
    assert states[0] == "FAIL" and states.count("COMPLETE") == 2, states
    # The killed worker's trial process died with it: no second result for trial 0.
    assert not (root / "trials" / "000" / "result.json").exists()


@pytest.mark.parametrize("storage, match", [("nonsense", "is not a database URL"),
                                            ("nosuchdb://user@host/db", "cannot open the study storage 'nosuchdb://")])
def test_bad_storage_is_an_error_before_any_trial(tmp_path, capsys, storage, match):
    root = tmp_path / "study"
    argv = _command(tmp_path, root, 1, "--storage", storage)[3:]
    assert detkit_main(argv) == 2
    assert match in capsys.readouterr().err
    assert not (root / "trials").exists()


def test_bad_space_is_an_error_naming_the_entry(tmp_path, capsys):
    space = tmp_path / "bad.yaml"
    space.write_text("model.optimizer.init_args.lr: {type: float, low: 0.01, high: 0.001}\n")
    argv = ["tune", "--config", str(CONFIGS / "shapes.yaml"), "--space", str(space), "--trials", "1",
            "--trainer.default_root_dir", str(tmp_path / "s")]  # fmt: skip
    assert detkit_main(argv) == 2
    assert "model.optimizer.init_args.lr: low (0.01) > high (0.001)" in capsys.readouterr().err
    assert not (tmp_path / "s" / "trials").exists()


def test_pruning_stops_a_trial_that_trails_the_finished_ones(tmp_path):
    from detkit.training.cli import build_cli
    from detkit.tuning.pruning import MapPruning, companion_study_name

    storage = f"sqlite:///{tmp_path / 'p.db'}"
    finished = optuna.create_study(study_name=companion_study_name("s"), storage=storage, direction="maximize")
    for _ in range(2):  # two finished trials that scored 0.9 at every validation
        trial = finished.ask()
        for step in range(3):
            trial.report(0.9, step)
        finished.tell(trial, 0.9)
    callback = {"class_path": "detkit.tuning.pruning.MapPruning",
                "init_args": {"study_name": "s", "storage": storage, "n_startup_trials": 1, "n_warmup_steps": 0}}  # fmt: skip
    args = ["fit", "--config", str(CONFIGS / "shapes.yaml"), *TINY[:-2], "--trainer.max_steps", "-1",
            "--trainer.max_epochs", "3", "--trainer.limit_train_batches", "1", f"--trainer.callbacks=[{json.dumps(callback)}]",
            "--trainer.default_root_dir", str(tmp_path / "run")]  # fmt: skip
    cli = build_cli(args)
    pruning = next(c for c in cli.trainer.callbacks if isinstance(c, MapPruning))
    assert pruning.pruned and pruning.epochs_reported == 1 and cli.trainer.current_epoch == 1
    states = [t.state.name for t in optuna.load_study(study_name=companion_study_name("s"), storage=storage).get_trials()]
    assert states == ["COMPLETE", "COMPLETE", "PRUNED"]
