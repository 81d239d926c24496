"""Resuming a killed ``detkit fit`` with ``--ckpt_path last``: the run continues exactly where its last checkpoint was.

Bit-exact after a resume (tested): global step, epoch, learning-rate schedule, optimizer state, the
EMA average and its update count, and the order of the training images (:class:`EpochShuffle`).
Not restored: the augmentation's random stream (albumentations and mosaic draws come from the
process's random state), so with random augmentation a resumed run draws other augmentations than
the uninterrupted one; with deterministic augmentation (this test) the final weights are equal.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "shapes.yaml"
EMA = {"class_path": "detkit.training.ema.EMA", "init_args": {"decay": 0.9}}


def _fit(root: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [
        "--config", str(CONFIG),
        "--trainer.default_root_dir", str(root),
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.max_epochs", "3",
        "--trainer.num_sanity_val_steps", "0",
        "--checkpoint.save_top_k", "-1",
        "--checkpoint.filename", "epoch{epoch}",
        "--data.train.init_args.num_images", "8",
        "--data.train.init_args.min_image_size", "64",  # square images at the input size, no scale
        "--data.train.init_args.max_image_size", "64",  # jitter, flip or colour: deterministic pixels
        "--data.val.init_args.num_images", "2",
        "--data.batch_size", "2",
        "--data.num_workers", "0",
        "--data.input_size", "64",
        "--data.scale_range", "[1.0, 1.0]",
        "--data.hflip_prob", "0",
        "--data.color_jitter", "0",
        "--data.augmentations", "[]",
        "--data.mosaic_prob", "0",
        "--model.warmup_steps", "3",
        "--model.lr_scheduler", json.dumps({"class_path": "torch.optim.lr_scheduler.StepLR", "init_args": {"step_size": 1, "gamma": 0.5}}),
        *extra,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests" / "support"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "detkit", "fit", *args], cwd=root.parent, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _assert_same_state(got: dict, want: dict) -> None:
    assert (got["global_step"], got["epoch"]) == (want["global_step"], want["epoch"])
    for section in ("state_dict", "current_model_state"):  # EMA average, and the raw weights beside it
        assert got[section].keys() == want[section].keys()
        for name, value in want[section].items():
            assert torch.equal(got[section][name], value), f"{section}: {name}"
    assert torch.equal(got["averaging_state"]["n_averaged"], want["averaging_state"]["n_averaged"])
    assert got["lr_schedulers"] == want["lr_schedulers"]
    assert [g["lr"] for g in got["optimizer_states"][0]["param_groups"]] == [
        g["lr"] for g in want["optimizer_states"][0]["param_groups"]
    ]
    for key, state in want["optimizer_states"][0]["state"].items():
        for field, value in state.items():
            assert torch.equal(got["optimizer_states"][0]["state"][key][field], value), f"optimizer {key}.{field}"


def test_a_run_killed_mid_epoch_resumes_from_last_and_ends_as_the_uninterrupted_one(tmp_path):
    callbacks = json.dumps([EMA])
    done = _fit(tmp_path / "straight", "--trainer.callbacks", callbacks)
    assert done.returncode == 0, done.stderr[-3000:]

    killer = json.dumps([EMA, {"class_path": "kill_at.KillAtStep", "init_args": {"step": 6}}])  # epoch 2 of 3, step 2 of 4
    killed = _fit(tmp_path / "killed", "--trainer.callbacks", killer)
    assert killed.returncode == -9, killed.stderr[-3000:]
    checkpoints = tmp_path / "killed" / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("*.ckpt")) == ["epoch0.ckpt", "last.ckpt"]
    _assert_same_state(_load(checkpoints / "last.ckpt"), _load(tmp_path / "straight" / "checkpoints" / "epoch0.ckpt"))

    resumed = _fit(tmp_path / "killed", "--trainer.callbacks", callbacks, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final, want = _load(checkpoints / "last.ckpt"), _load(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    assert final["global_step"] == 12 and final["epoch"] == 2
    _assert_same_state(final, want)
