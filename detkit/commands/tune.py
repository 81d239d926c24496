"""``detkit tune``: search configs with Optuna for the best val/map at the lowest inference cost."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import sys
import warnings
from pathlib import Path
from typing import Any

USAGE = """detkit tune --config BASE.yaml [--config ...] --space SPACE.yaml --trials N [--trial-time 10m]
            [--storage URL] [--study-name NAME] [--trainer.default_root_dir DIR] [detkit fit overrides ...]"""

DESCRIPTION = """Run a study of `detkit fit` trials (Optuna, two objectives: val/map up, and the batch-1 latency
of the trial's ONNX export on this machine down, or GFLOPs with --latency flops). SPACE.yaml maps dotted
config keys to parameters ({type: float, low: 1e-4, high: 1e-2, log: true}, {choices: [3, 5, 7]},
{type: int, low: 96, high: 192, step: 32}). The base config is run first as trial 0 when its values lie
in the space. Every trial runs in its own process under DIR/trials/NNN (checkpoints, curves, log);
DIR (default runs/tune) gets study.csv, study.md, pareto.png and front/trial_NNN.yaml (a config
`detkit fit --config` takes as it is, for each point of the accuracy-cost front). The study lives in
DIR/study.db (SQLite); give --storage postgresql://... (or mysql://...) to run `detkit tune` on several
machines against one study. Re-running the same command resumes the study; a trial whose worker died
is marked failed (after --grace seconds without a heartbeat) and run again."""


def parse_duration(text: str) -> int:
    """``"90s"``, ``"10m"``, ``"1.5h"`` or Lightning's ``"DD:HH:MM:SS"`` -> seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smh])", text.strip())
    if match:
        return round(float(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)])
    parts = text.strip().split(":")
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        days, hours, minutes, seconds = map(int, parts)
        return ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    raise ValueError(f"--trial-time {text!r}: use 90s, 10m, 1.5h or DD:HH:MM:SS")


def lightning_time(seconds: int) -> str:
    """Seconds as Lightning's ``max_time`` string ``DD:HH:MM:SS``."""
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days:02d}:{hours:02d}:{minutes:02d}:{secs:02d}"


def _root_and_rest(extra: list[str]) -> tuple[Path, list[str]]:
    """Take ``--trainer.default_root_dir`` out of the fit overrides: it is the study folder."""
    root, rest, skip = Path("runs/tune"), [], False
    for i, arg in enumerate(extra):
        if skip:
            skip = False
        elif arg == "--trainer.default_root_dir" and i + 1 < len(extra):
            root, skip = Path(extra[i + 1]), True
        elif arg.startswith("--trainer.default_root_dir="):
            root = Path(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    return root, rest


def _parse(args: list[str]):
    """``parse_config(args)``, with the parser's usage error turned into ``ValueError``."""
    from detkit.training.cli import parse_config

    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return parse_config(args)
    except SystemExit:
        lines = [line for line in captured.getvalue().splitlines() if "error" in line.lower()]
        raise ValueError(lines[-1] if lines else captured.getvalue()[-500:]) from None


def check_space(space, fit_args: list[str]) -> dict[str, Any] | None:
    """Every key of ``space`` must be a config key its values parse for (error naming the entry);
    returns the base config's values of the keys when all lie in the space (the baseline trial)."""
    from detkit.tuning.space import SpaceError

    base = _parse(fit_args)
    values = {}
    for parameter in space.parameters:
        sample = parameter.choices if parameter.type == "categorical" else [parameter.low, parameter.high]
        for value in sample:
            try:
                _parse([*fit_args, *space.overrides({parameter.key: value})])
            except ValueError as error:
                raise SpaceError(f"search space entry {parameter.key} = {value!r} is not a valid config value: {error}") from None
        try:
            values[parameter.key] = base[parameter.key]
        except KeyError:
            values[parameter.key] = None
    if all(p.contains(values[p.key]) for p in space.parameters):
        return {p.key: (int(values[p.key]) if p.type == "int" else values[p.key]) for p in space.parameters}
    return None


def main(argv: list[str]) -> int:
    """Entry point of ``detkit tune`` (``argv`` without the subcommand); 0: done, 2: bad input."""
    parser = argparse.ArgumentParser(prog="detkit tune", usage=USAGE, description=DESCRIPTION, allow_abbrev=False)
    parser.add_argument("--config", action="append", required=True, help="base config(s), as for detkit fit")
    parser.add_argument("--space", required=True, type=Path, help="the search space YAML")
    parser.add_argument("--trials", type=int, required=True, help="finished trials the study should hold")
    parser.add_argument("--trial-time", help="wall-clock budget of each trial's training (90s, 10m, DD:HH:MM:SS)")
    parser.add_argument("--study-name", help="default: the space file's name")
    parser.add_argument("--storage", help="Optuna storage URL (default: sqlite:///DIR/study.db)")
    parser.add_argument("--sampler", choices=["tpe", "nsga2"], default="tpe")
    parser.add_argument("--latency", choices=["onnx", "flops"], default="onnx",
                        help="second objective: batch-1 ms of the ONNX export (onnxruntime) or GFLOPs")  # fmt: skip
    parser.add_argument("--seed", type=int, help="sampler seed (leave unset when several workers share a study)")
    parser.add_argument("--heartbeat", type=int, default=30, help="seconds between a running trial's heartbeats")
    parser.add_argument("--grace", type=int, default=120, help="a trial silent this long (s) is failed and re-run")
    options, extra = parser.parse_known_args(argv)
    try:
        import optuna  # noqa: F401
    except ImportError:
        print("detkit tune: error: needs Optuna: pip install 'detkit[tune]'", file=sys.stderr)
        return 2
    from detkit.tuning.space import SearchSpace

    try:
        if options.trials < 1:
            raise ValueError(f"--trials must be >= 1, got {options.trials}")
        if options.heartbeat < 1 or options.grace <= options.heartbeat:
            raise ValueError(f"need --heartbeat >= 1 and --grace > --heartbeat, got {options.heartbeat}, {options.grace}")
        root, extra = _root_and_rest(extra)
        space = SearchSpace.from_yaml(options.space)
        fit_args = [arg for path in options.config for arg in ("--config", path)]
        if options.trial_time:
            fit_args += ["--trainer.max_epochs=-1", f"--trainer.max_time={lightning_time(parse_duration(options.trial_time))}"]
        fit_args += extra
        baseline = check_space(space, fit_args)
        from detkit.tuning.study import StudySettings, open_storage, sqlite_url, study_lock

        root.mkdir(parents=True, exist_ok=True)
        storage = options.storage or sqlite_url(root)
        with warnings.catch_warnings(), study_lock(root, storage):  # Optuna marks heartbeats experimental
            warnings.simplefilter("ignore")
            open_storage(storage, options.heartbeat, options.grace)  # a bad URL fails here, before any trial
    except (ValueError, FileNotFoundError) as error:
        print(f"detkit tune: error: {error}", file=sys.stderr)
        return 2
    from detkit.training.cli import dump_config
    from detkit.tuning.report import write_study_outputs
    from detkit.tuning.study import run_worker

    settings = StudySettings(
        root=root, name=options.study_name or options.space.stem, storage=storage, space=space, fit_args=fit_args,
        trials=options.trials, latency=options.latency, sampler=options.sampler, seed=options.seed,
        heartbeat_s=options.heartbeat, grace_s=options.grace, baseline=baseline,
    )  # fmt: skip
    study = run_worker(settings, echo=lambda line: print(line, flush=True))
    front = write_study_outputs(study, root, space.keys, settings.objective, dump_config)
    print(f"study {settings.name}: {root / 'study.md'}, {root / 'pareto.png'}; front configs: {', '.join(map(str, front)) or 'none'}")
    return 0
