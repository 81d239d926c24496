"""The training recipe: EMA weights (detkit.training.ema.EMA, Lightning's WeightAveraging), weight-decay groups, warm-up in epochs."""

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, WeightAveraging
from torch import nn
from torch.utils.data import DataLoader

from tiny import TINY_DETECTOR
from detkit import load_detector
from detkit.training.ema import EMA, ramped_ema
from detkit.data import EvalTransform, ShapesReader, TransformedDataset, collate_detection
from detkit.training.module import DetectionModule, weight_decay_groups

DECAY = 0.3  # below the ramp's (1 + n) / (10 + n) from the 3rd update on: both rules are exercised


def _module(seed: int = 0, **overrides) -> DetectionModule:
    torch.manual_seed(seed)
    config = {
        "detector": TINY_DETECTOR,
        "num_classes": 3,
        "class_names": ["circle", "square", "triangle"],
        "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.003, "weight_decay": 0.05}},
        "warmup_steps": 0,
        **overrides,
    }
    return DetectionModule.from_config(config)


def _loader(num_images: int = 4, batch_size: int = 2) -> DataLoader:
    data = TransformedDataset(ShapesReader(num_images, seed=7), EvalTransform(64))
    return DataLoader(data, batch_size=batch_size, collate_fn=collate_detection)


def _trainer(tmp_path, callbacks=(), **kwargs) -> Trainer:
    return Trainer(
        accelerator="cpu",
        default_root_dir=tmp_path,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=list(callbacks),
        **kwargs,
    )


def _floats(state: dict[str, torch.Tensor], prefix: str = "detector.") -> dict[str, torch.Tensor]:
    """The floating-point detector entries of a module state dict, without the prefix, cloned."""
    return {k[len(prefix) :]: v.detach().clone() for k, v in state.items() if k.startswith(prefix) and v.is_floating_point()}


class WeightProbe(Callback):
    """Snapshots the detector's weights after every optimizer step and as each evaluation begins."""

    def __init__(self) -> None:
        self.steps: list[dict[str, torch.Tensor]] = []
        self.validated: list[dict[str, torch.Tensor]] = []
        self.tested: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps.append(_floats(pl_module.state_dict()))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == 0:
            self.validated.append(_floats(pl_module.state_dict()))

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == 0:
            self.tested.append(_floats(pl_module.state_dict()))


def _ema(snapshots: list[dict[str, torch.Tensor]], decay: float) -> dict[str, torch.Tensor]:
    """The average EMA keeps: the first update copies, update n + 1 uses min(decay, (1 + n) / (10 + n))."""
    average = {k: v.clone() for k, v in snapshots[0].items()}
    for n, snapshot in enumerate(snapshots[1:], start=1):
        rate = min(decay, (1 + n) / (10 + n))
        average = {k: rate * average[k] + (1 - rate) * snapshot[k] for k in average}
    return average


def _assert_same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], **tol) -> None:
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], msg=lambda m: f"{name}: {m}", **tol)


def _differs(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return any(not torch.allclose(a[k], b[k], atol=1e-6) for k in a)


# ---- EMA ------------------------------------------------------------------------------------------
def _fit_with_ema(tmp_path, max_epochs: int, ckpt_path=None, seed: int = 0) -> tuple[DetectionModule, WeightProbe, Trainer]:
    probe = WeightProbe()
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="{epoch}", save_top_k=-1)
    module = _module(seed)
    trainer = _trainer(tmp_path, [EMA(decay=DECAY), probe, checkpoints], max_epochs=max_epochs, limit_val_batches=1)
    trainer.fit(module, _loader(), _loader(), ckpt_path=ckpt_path)
    return module, probe, trainer


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory):
    """A 2-epoch run of 2 optimizer steps each, checkpointed after each epoch: root, module, probe, trainer."""
    root = tmp_path_factory.mktemp("ema")
    return (root, *_fit_with_ema(root, max_epochs=2))


def test_ema_weights_are_validated_checkpointed_loaded_and_tested(ema_run):
    assert issubclass(EMA, WeightAveraging)
    tmp_path, module, probe, trainer = ema_run
    assert len(probe.steps) == 4 and len(probe.validated) == 2
    ema_2, ema_4 = _ema(probe.steps[:2], DECAY), _ema(probe.steps, DECAY)
    raw_4 = probe.steps[-1]
    assert _differs(ema_4, raw_4), "the average must differ from the raw weights for this test to mean anything"

    # Validation during fit runs on the average of the steps so far.
    _assert_same(probe.validated[0], ema_2)
    _assert_same(probe.validated[1], ema_4)

    # The checkpoint's state_dict is the average; the raw weights sit beside it for resuming.
    checkpoint = torch.load(tmp_path / "ckpt" / "epoch=1.ckpt", map_location="cpu", weights_only=True)
    _assert_same(_floats(checkpoint["state_dict"]), ema_4)
    _assert_same(_floats(checkpoint["current_model_state"]), raw_4)

    # load_detector returns the averaged detector.
    predictor = load_detector(tmp_path / "ckpt" / "epoch=1.ckpt")
    _assert_same(_floats(predictor.detector.state_dict(), prefix=""), ema_4)

    # After fit the module holds the average; testing a checkpoint in a new Trainer (EMA callback
    # still configured, as in a YAML shared by fit and test) runs on the average too.
    _assert_same(_floats(module.state_dict()), ema_4)
    tester = WeightProbe()
    _trainer(tmp_path, [EMA(decay=DECAY), tester]).test(
        _module(seed=1), _loader(), ckpt_path=tmp_path / "ckpt" / "epoch=1.ckpt", verbose=False
    )
    _assert_same(tester.tested[0], ema_4)

    # So does the Trainer that ran fit, given an earlier checkpoint (Lightning's own callback would
    # test epoch 0's raw weights, and validate on the last average).
    trainer.test(module, _loader(), ckpt_path=tmp_path / "ckpt" / "epoch=0.ckpt", verbose=False)
    _assert_same(probe.tested[0], ema_2)
    trainer.validate(module, _loader(), ckpt_path=tmp_path / "ckpt" / "epoch=0.ckpt", verbose=False)
    _assert_same(probe.validated[-1], ema_2)


def test_resuming_restores_both_the_raw_and_the_averaged_weights(ema_run, tmp_path):
    straight_root = ema_run[0]
    # Resume the straight run's epoch-0 checkpoint into a differently initialised module for epoch 1.
    _fit_with_ema(tmp_path, max_epochs=2, ckpt_path=straight_root / "ckpt" / "epoch=0.ckpt", seed=1)
    straight, resumed = (
        torch.load(root / "ckpt" / "epoch=1.ckpt", map_location="cpu", weights_only=True)
        for root in (straight_root, tmp_path)
    )
    _assert_same(_floats(resumed["state_dict"]), _floats(straight["state_dict"]), atol=1e-6, rtol=1e-5)
    _assert_same(_floats(resumed["current_model_state"]), _floats(straight["current_model_state"]), atol=1e-6, rtol=1e-5)
    assert resumed["averaging_state"]["n_averaged"] == straight["averaging_state"]["n_averaged"] == 4


def test_ramped_ema_decay_follows_training_early_and_caps_at_decay():
    update = ramped_ema(0.99)
    for updates, rate in [(1, 2 / 11), (100, 101 / 110), (5000, 0.99)]:  # the ramp, then the cap
        averaged, steps = [torch.zeros(3), torch.zeros(2, 2, dtype=torch.float64)], [torch.ones(3), torch.ones(2, 2, dtype=torch.float64)]
        update(averaged, steps, torch.tensor(updates))
        for tensor in averaged:
            torch.testing.assert_close(tensor, torch.full_like(tensor, 1 - rate))
    counts = [torch.tensor(10)]  # integer buffers: the same average, truncated
    update(counts, [torch.tensor(21)], torch.tensor(1))
    assert int(counts[0]) == int(2 / 11 * 10 + 9 / 11 * 21)
    with pytest.raises(ValueError, match="decay"):
        ramped_ema(1.5)


# ---- weight decay -------------------------------------------------------------------------------
def test_weight_decay_groups_put_only_conv_and_linear_weights_in_the_decayed_group():
    module = _module()
    module.detector.backbone.stem.conv.weight.requires_grad_(False)  # frozen: in no group
    module.extra = nn.Linear(4, 2)  # a linear layer decays like a convolution
    groups = {g["name"]: g for g in weight_decay_groups(module)}
    assert set(groups) == {"decay", "no_decay"} and groups["no_decay"]["weight_decay"] == 0.0
    placed = {id(p): name for name, g in groups.items() for p in g["params"]}
    assert len(placed) == sum(len(g["params"]) for g in groups.values())  # each parameter once

    expected = {}
    for module_name, sub in module.named_modules():
        for param_name, param in sub.named_parameters(recurse=False):
            if not param.requires_grad:
                expected[id(param)] = None
            elif isinstance(sub, (nn.Conv2d, nn.Linear)) and param_name == "weight":
                expected[id(param)] = "decay"
            else:  # norm weights and biases, conv and linear biases, FCOS's per-level scales
                expected[id(param)] = "no_decay"
    names = {id(p): n for n, p in module.named_parameters()}
    for pid, group in expected.items():
        assert placed.get(pid) == group, f"{names[pid]} in {placed.get(pid)}, expected {group}"
    scales = module.detector.head.scales
    assert placed[id(scales)] == "no_decay"
    assert any(isinstance(m, nn.GroupNorm) for m in module.modules()) and any(isinstance(m, nn.BatchNorm2d) for m in module.modules())


def test_adamw_from_the_config_decays_only_conv_and_linear_weights():
    module = _module()
    [optimizer], _ = module.configure_optimizers()
    assert isinstance(optimizer, torch.optim.AdamW)
    assert [(g["name"], g["weight_decay"]) for g in optimizer.param_groups] == [("decay", 0.05), ("no_decay", 0.0)]

    # With zero gradients an AdamW step is its decoupled decay alone: p <- p * (1 - lr * wd).
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    for p in module.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for name, param in module.named_parameters():
        if param.ndim >= 2:
            torch.testing.assert_close(param.detach(), before[name] * (1 - 0.003 * 0.05), msg=name)
        else:
            assert torch.equal(param.detach(), before[name]), f"{name} was decayed"
    assert not torch.equal(module.detector.head.cls_logits.weight, before["detector.head.cls_logits.weight"])


# ---- warm-up --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options, accumulate, expected",
    [
        ({"warmup_epochs": 1.0, "warmup_min_steps": 0}, 1, 6),  # one epoch: 6 batches
        ({"warmup_epochs": 0.5, "warmup_min_steps": 0}, 1, 3),  # a fraction of an epoch
        ({"warmup_epochs": 1.0, "warmup_min_steps": 0}, 2, 3),  # 6 batches are 3 optimizer steps
        ({"warmup_epochs": 0.5, "warmup_min_steps": 5}, 1, 5),  # the floor
        ({"warmup_epochs": 2.0, "warmup_min_steps": 5, "warmup_steps": 4}, 1, 4),  # explicit steps win
    ],
)
def test_warmup_in_epochs_becomes_optimizer_steps_of_the_training_data(tmp_path, options, accumulate, expected):
    class Schedulers(Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            self.configs = list(trainer.lr_scheduler_configs)

    module, schedulers = _module(**{"warmup_steps": None, **options}), Schedulers()
    trainer = _trainer(tmp_path, [schedulers], max_steps=1, limit_val_batches=0, accumulate_grad_batches=accumulate)
    trainer.fit(module, _loader(num_images=6, batch_size=1))
    [config] = schedulers.configs
    assert config.interval == "step" and config.scheduler.total_iters == expected


def test_warmup_off_and_outside_a_trainer():
    assert _module(warmup_steps=0).configure_optimizers()[1] == []
    assert _module(warmup_steps=None, warmup_epochs=0.0, warmup_min_steps=0).configure_optimizers()[1] == []
    # Without a Trainer the epoch length is unknown: the floor applies.
    [warmup] = _module(warmup_steps=None, warmup_epochs=3.0, warmup_min_steps=7).configure_optimizers()[1]
    assert warmup["scheduler"].total_iters == 7
    with pytest.raises(ValueError, match="warm-up"):
        _module(warmup_steps=None, warmup_epochs=-1.0)
