"""Tests for detkit.deploy.prune and detkit prune: channels physically removed, checkpoint loads, exports and fine-tunes."""

import pytest
import torch
import yaml
from tiny import SHAPE_NAMES, assert_same_detections, cpu_trainer, shapes_loader, tiny_module, write_checkpoint

from detkit.commands import main as detkit_main
from detkit.inference import load_detector
from detkit.models.reshape import layer_shapes

pytest.importorskip("torch_pruning")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("head", ["detkit.models.FCOSHead", "detkit.models.TaskAlignedHead"])
def test_prune_removes_channels_and_the_checkpoint_loads_exports_and_fine_tunes(tmp_path, capsys, head):
    detector = {"class_path": "detkit.models.Detector", "init_args": {
        "backbone": {"class_path": "detkit.models.PlainConvBackbone", "init_args": {"widths": [16, 32, 64, 96, 128]}},
        "neck": {"class_path": "detkit.models.FPN", "init_args": {"out_channels": 64, "extra_levels": 1}},
        "head": {"class_path": head, "init_args": {"num_convs": 2}}}}  # fmt: skip
    module = tiny_module(detector=detector)
    for norm in (m for m in module.modules() if isinstance(m, torch.nn.GroupNorm)):  # distinct groups, as after training
        torch.nn.init.uniform_(norm.weight, 0.5, 1.5)
    ckpt = write_checkpoint(module, tmp_path / "best.ckpt", input_size=96, pad_multiple=64)
    assert detkit_main(["prune", "--ckpt_path", str(ckpt), "--ratio", "0.5"]) == 0
    pruned_ckpt, recipe = tmp_path / "pruned_0.5.ckpt", tmp_path / "pruned_0.5.yaml"
    assert "fine-tune with: detkit fit" in capsys.readouterr().out
    original, pruned = load_detector(ckpt), load_detector(pruned_ckpt)
    assert pruned.class_names == SHAPE_NAMES and pruned.input_size == 96 and pruned.pad_multiple == 64
    assert _params(pruned.detector) < 0.4 * _params(original.detector)  # widths halved: ~1/4 of the weights
    shapes = layer_shapes(pruned.detector)
    assert shapes["backbone.stages.3.1.conv"] == [64, 64, 1]  # 128 -> 64 out channels
    assert all(f.channels == 32 for f in pruned.detector.feature_info)  # FPN 64 -> 32, every level alike
    towers = {n: s for n, s in layer_shapes(original.detector).items() if n.startswith("head.") and len(s) == 2}
    assert towers and all(shapes[n] == [groups // 2, channels // 2] for n, (groups, channels) in towers.items())  # GroupNorm towers halved
    for name in towers:  # by whole GroupNorm groups: each kept group's affine weights are one original group's, in order
        weight = dict(pruned.detector.named_modules())[name].weight.detach()
        groups = dict(original.detector.named_modules())[name].weight.detach().view(towers[name][0], -1)
        matches = [next(g for g in range(len(groups)) if torch.equal(groups[g], block)) for block in weight.view(len(groups) // 2, -1)]
        assert matches == sorted(set(matches))
    for layer in pruned.detector.head.prediction_layers():  # classes and box outputs kept
        assert layer.out_channels == next(m for n, m in original.detector.named_modules() if m is not None
                                          and n == _name(pruned.detector, layer)).out_channels  # fmt: skip
    # The saved pruned checkpoint computes what the in-memory pruned detector computed, and exports.
    from detkit.deploy import export_model, prune_detector

    in_memory = load_detector(ckpt).detector
    prune_detector(in_memory, 0.5, 128)
    images = torch.rand(2, 3, 128, 128)
    assert torch.equal(in_memory.eval()(images)["cls_logits"], pruned.detector(images)["cls_logits"])
    pictures = [(torch.rand(80 + 16 * i, 120, 3) * 255).to(torch.uint8).numpy() for i in range(3)]
    exported = load_detector(export_model(pruned, tmp_path / "pruned.onnx", dynamic_batch=True, score_threshold=0.0))
    expected = pruned.predict(pictures, score_threshold=0.0)
    assert sum(len(e["scores"]) for e in expected) > 0
    assert_same_detections(exported.predict(pictures), expected)
    # The yaml rebuilds the pruned detector; fitting from init_weights starts from the pruned weights.
    config = yaml.safe_load(recipe.read_text())["model"]
    assert config["init_weights"] == str(pruned_ckpt)
    fine = tiny_module(detector=config["detector"], init_weights=config["init_weights"], optimizer="torch.optim.SGD", lr=0.0)
    cpu_trainer(tmp_path, max_steps=1, limit_val_batches=0, enable_checkpointing=False).fit(fine, shapes_loader(2, size=96))
    for key, value in pruned.detector.state_dict().items():
        if value.is_floating_point() and "running" not in key:
            assert torch.equal(fine.detector.state_dict()[key], value), key


def _name(model, layer) -> str:
    return next(n for n, m in model.named_modules() if m is layer)


def test_prune_refuses_bad_input(tmp_path, capsys):
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    assert detkit_main(["prune", "--ckpt_path", str(foreign), "--ratio", "0.5"]) == 2
    assert "foreign.ckpt" in capsys.readouterr().err
    ckpt = write_checkpoint(tiny_module(), tmp_path / "ok.ckpt")
    assert detkit_main(["prune", "--ckpt_path", str(ckpt), "--ratio", "1.5"]) == 2
    assert "ratio must be in (0, 1)" in capsys.readouterr().err


def test_pruned_shapes_rebuild_a_frozen_batchnorm_mobilenet_exactly():
    """FrozenBatchNorm2d (ImageNet fine-tuning) is pruned with its convolution, and ``pruned=`` rebuilds the model."""
    from functools import partial

    from detkit.deploy import prune_detector
    from detkit.models import FPN, Detector, MobileNetV2Backbone, TaskAlignedHead

    def build(pruned=None):
        torch.manual_seed(0)
        return Detector(1, MobileNetV2Backbone(weights=None, freeze_norm=True, frozen_stages=2),
                        neck=partial(FPN, out_channels=64, extra_levels=1),
                        head=partial(TaskAlignedHead, num_convs=2, norm="group"), pruned=pruned).eval()  # fmt: skip

    detector = build()
    before = _params(detector)
    pruned = prune_detector(detector, 0.5, 128)
    assert _params(detector) < 0.4 * before
    frozen = [name for name, m in detector.named_modules() if type(m).__name__ == "FrozenBatchNorm2d"]
    assert frozen and any(name in pruned for name in frozen)  # FrozenBatchNorm2d narrowed with its conv
    rebuilt = build(pruned)
    rebuilt.load_state_dict(detector.state_dict())  # strict: every shape matches
    frozen_flags = [p.requires_grad for p in rebuilt.parameters()]
    assert frozen_flags == [p.requires_grad for p in build().parameters()] and not all(frozen_flags)  # frozen stages stay frozen
    images = torch.rand(2, 3, 128, 128)
    assert torch.allclose(rebuilt(images)["cls_logits"], detector(images)["cls_logits"], atol=1e-5)


@pytest.mark.parametrize("conv_groups", [1, 2])
def test_whole_group_norm_groups_go_and_the_rest_computes_as_before(conv_groups):
    """Pruning removes whole GroupNorm groups (the weakest; with a grouped convolution the same ones in
    each of its blocks), and the pruned network computes what the original computes with those
    groups' channels switched off."""
    import copy

    import torch_pruning as tp

    from detkit.deploy.prune import _remove_group_norm_groups

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(4, 16, 3, padding=1), torch.nn.GroupNorm(8, 16), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 3, padding=1, groups=conv_groups), torch.nn.GroupNorm(8, 16), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 3, 1),
    ).eval()  # fmt: skip
    weak = [0, 1, 2, 6]  # GroupNorm groups of 2 channels; 3 of them in the first half (block) of the channels
    with torch.no_grad():
        for norm in (net[1], net[4]):
            torch.nn.init.uniform_(norm.weight, 0.5, 1.5)
        for conv, norm in ((net[0], net[1]), (net[3], net[4])):
            channels = torch.tensor([2 * g + i for g in weak for i in range(2)])
            conv.weight[channels] *= 0.01
            norm.weight[channels] *= 0.01
    original = copy.deepcopy(net)
    images = torch.rand(2, 4, 8, 8)
    assert _remove_group_norm_groups(tp, net, images[:1], 0.5, [net[6]], {}, round_to=None) == []
    assert [net[1].num_groups, net[1].num_channels, net[4].num_groups, net[3].out_channels] == [4, 8, 4, 8]
    assert net[3].groups == conv_groups and net[6].in_channels == 8
    reference = copy.deepcopy(original)
    for i, (conv, norm) in enumerate(((reference[0], reference[1]), (reference[3], reference[4]))):
        kept = [next(g for g in range(8) if torch.equal(original[3 * i + 1].weight[2 * g : 2 * g + 2], block))
                for block in (net[1], net[4])[i].weight.detach().view(4, 2)]  # fmt: skip
        removed = sorted(set(range(8)) - set(kept))
        if conv_groups == 1:
            assert removed == weak
        else:
            assert sum(g < 4 for g in removed) == 2 and {g % 4 for g in removed} == {g % 4 for g in removed if g < 4}
        with torch.no_grad():  # switch the removed groups' channels off
            for g in removed:
                conv.weight[2 * g : 2 * g + 2] = 0.0
                conv.bias[2 * g : 2 * g + 2] = 0.0
                norm.weight[2 * g : 2 * g + 2] = 0.0
                norm.bias[2 * g : 2 * g + 2] = 0.0
    assert torch.allclose(net(images), reference(images), atol=1e-5)
