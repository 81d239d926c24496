"""Tests for detkit.tuning.space and the checks `detkit tune` makes before any trial runs."""

from pathlib import Path

import optuna
import pytest

from detkit.commands.tune import check_space, lightning_time, parse_duration
from detkit.tuning.space import SearchSpace, SpaceError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SHAPES = ["--config", str(CONFIGS / "shapes.yaml")]


def _space(tmp_path, text: str) -> SearchSpace:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return SearchSpace.from_yaml(path)


@pytest.mark.parametrize(
    "text, match",
    [
        ("a.b: {choices: []}", "a.b: a categorical parameter needs a non-empty list"),
        ("a.b: {type: float, low: 2, high: 1}", r"a.b: low \(2\) > high \(1\)"),
        ("a.b: {type: float, low: 0, high: 1, log: true}", "a.b: a log-scale parameter needs low > 0"),
        ("a.b: {type: int, low: 1.5, high: 4}", "a.b: an int parameter needs whole"),
        ("a.b: {type: normal, low: 1, high: 2}", "a.b: type must be one of"),
        ("a.b: {choices: [1, 2], low: 0}", r"a.b: \['low'\] do not apply"),
        ("a.b: {type: float, low: 1, high: 2, mean: 3}", r"a.b: unknown fields \['mean'\]"),
        ("a.b: [1, 2]", "a.b: expected a mapping"),
        ("a.b: {choices: [1, 1]}", "repeated choices"),
        ("- a\n- b", "expected a mapping of dotted config keys"),
        ("", "expected a mapping of dotted config keys"),
    ],
)
def test_bad_spaces_name_the_file_and_entry(tmp_path, text, match):
    with pytest.raises(SpaceError, match=match) as info:
        _space(tmp_path, text)
    assert "space.yaml" in str(info.value)


def test_suggest_overrides_and_membership(tmp_path):
    space = _space(tmp_path, "m.lr: {type: float, low: 0.001, high: 0.01, log: true}\n"
                             "d.size: {type: int, low: 96, high: 160, step: 32}\nm.act: {choices: [relu, null]}\n")  # fmt: skip
    trial = optuna.trial.FixedTrial({"m.lr": 0.002, "d.size": 128, "m.act": None})
    params = space.suggest(trial)
    assert params == {"m.lr": 0.002, "d.size": 128, "m.act": None}
    assert space.overrides(params) == ["--m.lr=0.002", "--d.size=128", "--m.act=null"]
    lr, size, act = space.parameters
    assert lr.contains(0.003) and not lr.contains(0.02) and not lr.contains("0.003")
    assert size.contains(160) and not size.contains(100) and not size.contains(True)
    assert act.contains(None) and not act.contains("silu")


def test_unknown_key_or_value_is_named_before_any_trial(tmp_path):
    space = _space(tmp_path, "model.detector.init_args.backbone.init_args.kernel_sise: {choices: [3, 5]}")
    with pytest.raises(SpaceError, match="kernel_sise"):
        check_space(space, SHAPES)
    space = _space(tmp_path, "model.detector.init_args.backbone.init_args.activation: {choices: [relu, swishy]}")
    with pytest.raises(SpaceError, match=r"activation = 'swishy' is not a valid config value"):
        check_space(space, SHAPES)


def test_shipped_spaces_hold_their_base_configs():
    """Each shipped space is valid for its config, and that config's values lie in it (the baseline trial)."""
    for config, space in (("shapes.yaml", "shapes_space.yaml"), ("raccoon.yaml", "raccoon_space.yaml")):
        loaded = SearchSpace.from_yaml(CONFIGS / space)
        baseline = check_space(loaded, ["--config", str(CONFIGS / config)])
        assert baseline is not None and set(baseline) == set(loaded.keys)
    baseline = check_space(SearchSpace.from_yaml(CONFIGS / "shapes_space.yaml"), SHAPES)
    assert baseline["model.detector.init_args.backbone.init_args.kernel_size"] == 3
    assert baseline["model.optimizer.init_args.lr"] == 0.003 and baseline["data.input_size"] == 160


def test_durations():
    assert parse_duration("90s") == 90 and parse_duration("10m") == 600 and parse_duration("1.5h") == 5400
    assert parse_duration("00:01:02:03") == 3723 and lightning_time(3723) == "00:01:02:03"
    with pytest.raises(ValueError, match="--trial-time '10 minutes'"):
        parse_duration("10 minutes")
