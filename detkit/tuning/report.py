"""What a study found: the trial table (csv + markdown), the accuracy-cost front (pareto.png) and a config per front point."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import TrialState

from detkit.machine import cpu_description

__all__ = ["front_trials", "trial_rows", "write_study_outputs"]

_MEASURED = ("map", "latency_ms", "gflops", "params_m", "peak_rss_mb", "train_images_per_s", "epochs", "wall_s")


def trial_rows(study: optuna.Study, keys: list[str]) -> list[dict[str, Any]]:
    """One row per trial: number, state, baseline flag, the measurements and the searched values."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        row: dict[str, Any] = {"trial": trial.number, "state": trial.state.name, "baseline": bool(attrs.get("baseline"))}
        row.update({name: attrs.get(name) for name in _MEASURED})
        row.update({key: trial.params.get(key) for key in keys})
        rows.append(row)
    return rows


def front_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The finished trials no other finished trial beats on both objectives, by increasing cost."""
    return sorted(study.best_trials, key=lambda t: t.values[1])


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _write_tables(rows: list[dict[str, Any]], root: Path, front: set[int]) -> None:
    columns = list(rows[0]) if rows else ["trial"]
    with open(root / "study.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    short = [c.rsplit(".", 1)[-1] if "." in c else c for c in columns]
    lines = ["| " + " | ".join(["front", *short]) + " |", "|" + "---|" * (len(columns) + 1)]
    for row in rows:
        mark = "*" if row["trial"] in front else ""
        lines.append("| " + " | ".join([mark, *(_cell(row[c]) for c in columns)]) + " |")
    (root / "study.md").write_text("\n".join(lines) + "\n")


def _plot(study: optuna.Study, root: Path, objective: str, front: list[optuna.trial.FrozenTrial]) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.scatter([t.values[1] for t in done], [t.values[0] for t in done], c="#9aa5b1", s=28, label="trial")
    if front:
        xs, ys = [t.values[1] for t in front], [t.values[0] for t in front]
        ax.step(xs, ys, where="post", color="#d1495b", lw=1.2)
        ax.scatter(xs, ys, c="#d1495b", s=46, zorder=3, label="Pareto front")
        for t in front:
            ax.annotate(f"#{t.number}", (t.values[1], t.values[0]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    for t in done:
        if t.user_attrs.get("baseline"):
            ax.scatter([t.values[1]], [t.values[0]], marker="*", s=180, c="#2e86ab", zorder=4, label=f"base config (#{t.number})")
    unit = "batch-1 latency of the ONNX export (ms)" if objective == "latency_ms" else "GFLOPs per image"
    ax.set_xlabel(f"{unit}: lower is better")
    ax.set_ylabel("val/map: higher is better")
    pruned = len(study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)))
    ax.set_title(f"study {study.study_name}: {len(done)} finished trials (+{pruned} pruned)\n{cpu_description()}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(root / "pareto.png")
    plt.close(fig)


def write_study_outputs(
    study: optuna.Study, root: Path, keys: list[str], objective: str, config_of: Callable[[list[str]], str]
) -> list[Path]:
    """Write ``study.csv``, ``study.md``, ``pareto.png`` and ``front/trial_NNN.yaml`` under ``root``.

    Args:
        study: The study.
        root: The study folder.
        keys: The searched config keys (table columns).
        objective: The second objective's measurement (``latency_ms`` or ``gflops``).
        config_of: Turns a trial's ``detkit fit`` arguments into a whole config YAML
            (:func:`~detkit.training.cli.dump_config`).

    Returns:
        The front configs written, each one that ``detkit fit --config`` takes as it is.
    """
    import json

    front = front_trials(study)
    _write_tables(trial_rows(study, keys), root, {t.number for t in front})
    _plot(study, root, objective, front)
    written = []
    (root / "front").mkdir(exist_ok=True)
    for trial in front:
        args_file = root / "trials" / f"{trial.number:03d}" / "fit_args.json"
        if not args_file.is_file():  # ran on another machine: its folder is there
            continue
        args = [a for a in json.loads(args_file.read_text()) if not a.startswith("--trainer.default_root_dir")]
        path = root / "front" / f"trial_{trial.number:03d}.yaml"
        header = f"# Study {study.study_name}, trial {trial.number}: val/map {trial.values[0]:.4f}, {objective} {trial.values[1]:.4g}\n"
        path.write_text(header + config_of(args))
        written.append(path)
    return written
