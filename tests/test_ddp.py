"""Multi-process training and prediction through Lightning's DDP on CPU (gloo): identical ranks, each val image once, a loss
normaliser that makes N processes of batch b train like one process of batch N * b, and predict across 2 nodes."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from detkit.training.cli import build_cli

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "shapes.yaml"


def _args(root: Path) -> list[str]:
    return [
        "--config", str(CONFIG),
        "--trainer.default_root_dir", str(root),
        "--trainer.logger", "false",
        "--trainer.callbacks", "[]",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.max_epochs", "1",
        "--trainer.num_sanity_val_steps", "0",
        "--checkpoint.dirpath", str(root / "checkpoints"),
        "--data.train.init_args.num_images", "8",
        "--data.val.init_args.num_images", "5",
        "--data.test.init_args.num_images", "5",
        "--data.batch_size", "2",
        "--data.num_workers", "0",
        "--data.input_size", "96",
        "--model.warmup_steps", "0",
    ]  # fmt: skip


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")
def test_two_process_ddp_fit_keeps_ranks_identical_and_counts_val_images_once(tmp_path):
    probe = tmp_path / "probe"
    cmd = [
        sys.executable, "-m", "detkit", "fit", *_args(tmp_path),
        "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp", "--trainer.devices", "2",
        "--trainer.callbacks", json.dumps([{"class_path": "ddp_probe.RankProbe", "init_args": {"out_dir": str(probe)}}]),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests" / "support"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]

    rank0, rank1 = (torch.load(probe / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), f"{name} differs between ranks"
    initial = build_cli(args=_args(tmp_path / "single"), run=False).model.state_dict()
    assert any(not torch.equal(initial[k], rank0[k]) for k in rank0 if k in initial), "training changed nothing"

    # 5 val images over 2 ranks: the sampler repeats one, the metric still counts 5.
    metrics = [json.loads((probe / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert metrics[0]["val/num_images"] == metrics[1]["val/num_images"] == 5
    assert metrics[0]["val/map"] == metrics[1]["val/map"]

    # The same checkpoint validated by one process gives the same mAP.
    single = build_cli(args=["validate", *_args(tmp_path / "single"), "--ckpt_path", str(tmp_path / "checkpoints" / "last.ckpt")])
    assert single.trainer.callback_metrics["val/num_images"] == 5
    assert float(single.trainer.callback_metrics["val/map"]) == pytest.approx(metrics[0]["val/map"], abs=1e-6)

    # detkit predict on 2 nodes of 1 process each, launched as the README's multi-node command does (torchrun
    # on every node): each process streams its share to a part, rank 0 merges one predictions.json in dataset
    # order with every test image once, and it equals what one process writes.
    port = _free_port()
    predict = [
        "-m", "detkit", "predict", *_args(tmp_path), "--predictions.max_drawn", "0",
        "--ckpt_path", str(tmp_path / "checkpoints" / "last.ckpt"),
        "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp", "--trainer.devices", "1", "--trainer.num_nodes", "2",
    ]  # fmt: skip
    def run_nodes(port: int) -> tuple[list[subprocess.Popen], list[tuple[str, str]]]:
        nodes = [
            subprocess.Popen(
                [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1", "--node_rank",
                 str(rank), "--master_addr", "127.0.0.1", "--master_port", str(port), *predict],
                cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            for rank in (0, 1)
        ]
        return nodes, [node.communicate(timeout=300) for node in nodes]

    nodes, outputs = run_nodes(port)
    if any(node.returncode != 0 and "terminate called without an active exception" in err for node, (_, err) in zip(nodes, outputs)):
        # Seen once in a full-suite run (not in 5 runs of this test alone): a process of the pair aborted in
        # native code (std::terminate) before predicting. Run the pair once more; a second abort fails.
        nodes, outputs = run_nodes(_free_port())
    for node, (_, stderr) in zip(nodes, outputs):
        assert node.returncode == 0, stderr[-4000:]
    merged = json.loads((tmp_path / "predictions" / "predictions.json").read_text())
    assert sorted(p.name for p in (tmp_path / "predictions").iterdir()) == ["predictions.json"]  # parts removed
    single = build_cli(args=["predict", *_args(tmp_path / "single"), "--ckpt_path", str(tmp_path / "checkpoints" / "last.ckpt")])
    expected = json.loads((tmp_path / "single" / "predictions" / "predictions.json").read_text())
    assert [r["file_name"] for r in merged] == [r["file_name"] for r in expected] and len(merged) == 5
    for got, want in zip(merged, expected):
        assert got["labels"] == want["labels"] and got["names"] == want["names"]
        assert got["scores"] == pytest.approx(want["scores"], abs=1e-5)
        assert len(got["boxes"]) == len(want["boxes"])
        for box, other in zip(got["boxes"], want["boxes"]):
            assert box == pytest.approx(other, abs=1e-3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")
def test_two_process_loss_normaliser_matches_one_process_of_the_total_batch(tmp_path):
    """2 gloo processes of batch 2 (gradients averaged, as DDP does) give one process's batch-4
    gradient because FCOSLoss averages its positives count across processes; with per-process
    counts they do not (the two halves of the batch have different numbers of positives)."""
    import ddp_normaliser

    out = tmp_path / "grads.pt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests" / "support"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, str(REPO / "tests" / "support" / "ddp_normaliser.py"), str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    ddp = torch.load(out, weights_only=True)

    loss, grads = ddp_normaliser.gradients(*ddp_normaliser.fixed_batch())

    def relative_error(got: dict[str, torch.Tensor]) -> dict[str, float]:  # per tensor, float32 sums differ in order
        return {n: float((got[n] - g).norm() / g.norm().clamp(min=1e-12)) for n, g in grads.items()}

    torch.testing.assert_close(ddp["averaged"]["loss"], loss, rtol=1e-5, atol=1e-6)
    errors = relative_error(ddp["averaged"]["grads"])
    assert max(errors.values()) < 1e-4, sorted(errors.items(), key=lambda item: -item[1])[:3]

    errors = relative_error(ddp["per_process"]["grads"])  # about 4 % here (median over the tensors)
    assert sorted(errors.values())[len(errors) // 2] > 5e-3, "without the cross-process average the gradient must change"
