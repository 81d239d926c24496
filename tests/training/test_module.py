"""Tests for detkit.training.module: overfitting to near-perfect COCO mAP, optimiser wiring, checkpoint block."""

import warnings

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from torch.utils.data import DataLoader

from tiny import TINY_DETECTOR
from detkit.data import EvalTransform, ShapesReader, TransformedDataset, collate_detection
from detkit.ops.letterbox import to_original_pixels
from detkit.training.module import CHECKPOINT_FORMAT_VERSION, DetectionModule



def _module(**overrides) -> DetectionModule:
    config = {
        "detector": TINY_DETECTOR,
        "num_classes": 3,
        "class_names": ["circle", "square", "triangle"],
        "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.003}},
        "warmup_steps": 20,
        **overrides,
    }
    return DetectionModule.from_config(config)


def _trainer(tmp_path, **kwargs) -> Trainer:
    return Trainer(
        accelerator="cpu",
        default_root_dir=tmp_path,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


def test_overfits_a_few_synthetic_images_to_high_map(tmp_path):
    torch.manual_seed(0)
    data = TransformedDataset(ShapesReader(4, seed=7), EvalTransform(128))
    loader = DataLoader(data, batch_size=4, collate_fn=collate_detection)
    module = _module()
    _trainer(tmp_path, max_steps=300, num_sanity_val_steps=0, limit_val_batches=0).fit(module, loader)
    [metrics] = _trainer(tmp_path).validate(module, dataloaders=loader, verbose=False)
    assert metrics["val/map"] >= 0.9, metrics
    assert metrics["val/map_50"] >= 0.99, metrics


def test_warmup_then_injected_scheduler():
    module = _module(
        warmup_steps=10,
        warmup_start_factor=0.1,
        lr_scheduler={"class_path": "torch.optim.lr_scheduler.StepLR", "init_args": {"step_size": 1, "gamma": 0.5}},
    )
    [optimizer], schedulers = module.configure_optimizers()
    assert [s["interval"] for s in schedulers] == ["step", "epoch"]
    assert abs(optimizer.param_groups[0]["lr"] - 0.0003) < 1e-9
    for _ in range(10):
        optimizer.step()
        schedulers[0]["scheduler"].step()
    assert abs(optimizer.param_groups[0]["lr"] - 0.003) < 1e-9
    schedulers[1]["scheduler"].step()
    assert abs(optimizer.param_groups[0]["lr"] - 0.0015) < 1e-9


def test_checkpoint_block_is_plain_and_versioned():
    module = _module()
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    block = checkpoint["detkit"]
    assert block["format_version"] == CHECKPOINT_FORMAT_VERSION
    assert block["class_names"] == ["circle", "square", "triangle"] and block["num_classes"] == 3
    assert block["detector"]["class_path"] == "detkit.models.Detector"
    assert block["detector"]["init_args"]["backbone"]["class_path"] == "detkit.models.PlainConvBackbone"
    assert block["detector"]["init_args"]["backbone"]["init_args"]["widths"] == [16, 32, 64, 96, 128]
    assert block["detector"]["init_args"]["neck"]["init_args"]["out_channels"] == 64
    assert block["input_size"] == 640  # the default; the CLI links it from the data


def test_to_original_pixels_undoes_the_letterbox_and_scores_the_readers_boxes():
    detections = [{"boxes": torch.tensor([[10.0, 20.0, 30.0, 40.0]]), "scores": torch.ones(1), "labels": torch.zeros(1, dtype=torch.long)}]
    targets = [
        {
            "boxes": torch.tensor([[0.0, 0.0, 50.0, 25.0]]),
            "orig_boxes": torch.tensor([[0.0, 0.0, 99.5, 50.0]]),  # the reader's own box, not the mapped-back one
            "labels": torch.zeros(1, dtype=torch.long),
            "scale": torch.tensor([0.5, 0.5]),
            "orig_size": torch.tensor([50, 100]),
        }
    ]
    dets, tgts = to_original_pixels(detections, targets)
    torch.testing.assert_close(dets[0]["boxes"], torch.tensor([[20.0, 40.0, 60.0, 50.0]]))  # y clipped to h=50
    torch.testing.assert_close(tgts[0]["boxes"], torch.tensor([[0.0, 0.0, 99.5, 50.0]]))


def test_bf16_mixed_training_steps_stay_finite(tmp_path):
    torch.manual_seed(0)
    data = TransformedDataset(ShapesReader(4, seed=3), EvalTransform(96))
    loader = DataLoader(data, batch_size=2, collate_fn=collate_detection)
    module = _module()
    before = {k: v.clone() for k, v in module.detector.state_dict().items()}
    trainer = _trainer(tmp_path, max_steps=4, precision="bf16-mixed", limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(module, loader)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    after = module.detector.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    assert any(not torch.equal(before[k], after[k]) for k in before), "bf16 steps did not update the weights"


def test_init_weights_fine_tunes_from_a_checkpoint_of_other_classes_and_resuming_ignores_it(tmp_path):
    torch.manual_seed(0)
    loader = DataLoader(TransformedDataset(ShapesReader(2, seed=3), EvalTransform(96)), batch_size=2,
                        collate_fn=collate_detection)  # fmt: skip
    source = _module()
    trainer = _trainer(tmp_path / "source", max_steps=2, num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(source, loader)
    source_ckpt = tmp_path / "source.ckpt"
    trainer.save_checkpoint(source_ckpt)
    frozen = {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.0}}  # the step leaves the weights as loaded
    names = ["ring", "star", "moon", "kite"]
    target = _module(num_classes=4, class_names=names, init_weights=str(source_ckpt), optimizer=frozen)
    fresh_classifier = target.detector.head.cls_logits.weight.detach().clone()
    trainer = _trainer(tmp_path / "target", max_steps=1, num_sanity_val_steps=0, limit_val_batches=0)
    with pytest.warns(UserWarning, match=r"not loaded, shapes differ.*\n.*head\.cls_logits\.weight"):
        trainer.fit(target, loader)
    want = dict(source.detector.named_parameters())  # (BatchNorm statistics move in the training step)
    for name, value in target.detector.named_parameters():
        if name.startswith("head.cls_logits."):
            assert value.shape[0] == 4 and want[name].shape[0] == 3, name
        else:
            assert torch.equal(value, want[name]), name
    assert torch.equal(target.detector.head.cls_logits.weight, fresh_classifier)  # re-initialised, not copied
    assert target.class_names == names
    target_ckpt = tmp_path / "target.ckpt"
    trainer.save_checkpoint(target_ckpt)
    assert torch.load(target_ckpt, weights_only=True)["detkit"]["class_names"] == names

    # Resuming restores the run's own weights; the init_weights file is not read again (gone here).
    source_ckpt.unlink()
    resumed = _module(num_classes=4, class_names=names, init_weights=str(source_ckpt), optimizer=frozen)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*not loaded.*")
        _trainer(tmp_path / "target", max_steps=2, num_sanity_val_steps=0, limit_val_batches=0).fit(
            resumed, loader, ckpt_path=target_ckpt
        )
    for name, value in resumed.detector.named_parameters():
        assert torch.equal(value, dict(target.detector.named_parameters())[name]), name

def test_init_weights_from_a_missing_file_names_it(tmp_path):
    loader = DataLoader(TransformedDataset(ShapesReader(2, seed=3), EvalTransform(96)), batch_size=2,
                        collate_fn=collate_detection)  # fmt: skip
    module = _module(init_weights=str(tmp_path / "nowhere.ckpt"))
    with pytest.raises(FileNotFoundError, match="nowhere.ckpt"):
        _trainer(tmp_path, max_steps=1, num_sanity_val_steps=0, limit_val_batches=0).fit(module, loader)


def _nan_at(module: DetectionModule, bad_steps: set[int]) -> None:
    """Make the detector's training loss NaN at the given global steps (the data stays valid)."""
    loss = module.detector.loss

    def patched(images, targets):
        losses = loss(images, targets)
        if module.global_step in bad_steps:
            losses = {**losses, "loss": losses["loss"] * float("nan")}
        return losses

    module.detector.loss = patched


def test_a_nonfinite_step_changes_no_weight_is_counted_and_training_goes_on(tmp_path):
    from tiny import cpu_trainer, shapes_loader, tiny_module

    module = tiny_module(lr=0.01)  # AdamW: momentum and weight decay would move every weight
    _nan_at(module, {2})
    snapshots = {}

    class Snapshot(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            snapshots[trainer.global_step] = {k: v.detach().clone() for k, v in pl_module.detector.named_parameters()}

    with pytest.warns(UserWarning, match=r"step 2 \(epoch 1\): the loss or its gradients are not finite \(last loss: loss=nan.*1 skipped so far, 1 in a row"):
        cpu_trainer(tmp_path, callbacks=(Snapshot(),), max_epochs=3, limit_val_batches=0).fit(module, shapes_loader())
    assert module.skipped_steps == 1 and module.global_step == 6
    for name, before in snapshots[2].items():
        assert torch.equal(snapshots[3][name], before), name  # the NaN step changed nothing
    assert any(not torch.equal(snapshots[4][k], v) for k, v in snapshots[3].items())  # the next one trains
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_a_diverging_run_stops_with_an_error_and_writes_no_nonfinite_checkpoint(tmp_path):
    from tiny import cpu_trainer, shapes_loader, tiny_module

    from detkit.training.callbacks import Checkpoint

    module = tiny_module(lr=1e30, optimizer="torch.optim.SGD", max_nonfinite_steps=1)
    checkpoint = Checkpoint(monitor="val/map", mode="max", filename="best", save_last=True)
    trainer = cpu_trainer(tmp_path, callbacks=(checkpoint,), max_epochs=3, enable_checkpointing=True)
    loader = shapes_loader(num_images=8, batch_size=2)
    with pytest.raises(FloatingPointError, match="not finite for 2 steps in a row|non-finite weights"):
        trainer.fit(module, loader, loader)
    for path in (tmp_path / "checkpoints").glob("*.ckpt") if (tmp_path / "checkpoints").exists() else ():
        state = torch.load(path, weights_only=True)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()), path


def test_max_nonfinite_steps_must_not_be_negative():
    with pytest.raises(ValueError, match="max_nonfinite_steps"):
        _module(max_nonfinite_steps=-1)


def test_training_boxes_dropped_under_a_pixel_are_reported_per_epoch():
    module = _module()
    targets = [{"boxes": torch.zeros(2, 4), "small_boxes_dropped": 3}, {"boxes": torch.zeros(1, 4), "small_boxes_dropped": 1}]
    module.on_train_batch_end(None, (torch.zeros(2, 3, 8, 8), targets), 0)
    module.on_train_batch_end(None, (torch.zeros(2, 3, 8, 8), targets), 1)
    with pytest.warns(UserWarning, match=r"epoch 0: 8 training boxes shrank under 1 px .*\(6 trained on"):
        module.on_train_epoch_end()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module.on_train_epoch_end()  # counts start again each epoch: nothing dropped, no warning


def test_a_nan_micro_batch_under_gradient_accumulation_changes_no_weight(tmp_path):
    from tiny import cpu_trainer, shapes_loader, tiny_module

    module = tiny_module(lr=0.01)
    loss, calls = module.detector.loss, []

    def nan_in_third_micro_batch(images, targets):  # the first half of optimizer step 1
        calls.append(1)
        losses = loss(images, targets)
        return {**losses, "loss": losses["loss"] * float("nan")} if len(calls) == 3 else losses

    module.detector.loss = nan_in_third_micro_batch
    snapshots = {}

    class Snapshot(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            snapshots.setdefault(trainer.global_step, {k: v.detach().clone() for k, v in pl_module.detector.named_parameters()})

    trainer = cpu_trainer(tmp_path, callbacks=(Snapshot(),), max_epochs=1, limit_val_batches=0, accumulate_grad_batches=2)
    with pytest.warns(UserWarning, match=r"step 1 \(epoch 0\): the loss or its gradients are not finite"):
        trainer.fit(module, shapes_loader(num_images=8, batch_size=1))  # 8 micro-batches, 4 optimizer steps
    assert module.skipped_steps == 1 and module.global_step == 4
    for name, before in snapshots[1].items():
        assert torch.equal(snapshots[2][name], before), name  # the finite second half did not carry the NaN in
    assert all(torch.isfinite(p).all() for p in module.parameters())
