"""The tuning loop: an Optuna study of ``detkit fit`` trials, two objectives, many workers on one storage.

Each worker (a ``detkit tune`` process) asks the study for a trial, runs it in a process of its own
(:mod:`detkit.tuning.trial`) with a heartbeat, and tells the study what it measured; it stops when
the study holds the asked number of finished or running trials. A trial whose worker died (killed,
machine lost) stops beating and is marked failed by the next worker that looks
(:func:`optuna.storages.fail_stale_trials`); its place is run again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import signal
import subprocess
import sys
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import optuna
from optuna.trial import TrialState

from detkit.tuning.space import SearchSpace

__all__ = ["StudySettings", "open_storage", "run_worker", "sqlite_url", "study_lock"]

#: Trial states that take one of the study's ``trials`` places (a failed trial's place is run again).
_COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


@dataclass
class StudySettings:
    """What one ``detkit tune`` worker runs.

    Attributes:
        root: The study folder (``--trainer.default_root_dir``): trials, storage and outputs.
        name: The study's name in the storage.
        storage: Optuna storage URL (SQLite under ``root`` by default).
        space: The searched parameters.
        fit_args: ``detkit fit`` arguments every trial shares (configs and overrides).
        trials: Finished trials the study should hold.
        latency: Second objective: ``"onnx"`` (batch-1 ms of the export) or ``"flops"`` (GFLOPs).
        sampler: ``"tpe"`` or ``"nsga2"`` (both multi-objective).
        seed: Sampler seed (``None``: each worker differs, as concurrent workers should).
        heartbeat_s: Seconds between a running trial's heartbeats.
        grace_s: A running trial without a heartbeat for this long is failed.
        baseline: Params of the base config, run first as trial 0 when all are in the space.
    """

    root: Path
    name: str
    storage: str
    space: SearchSpace
    fit_args: list[str]
    trials: int
    latency: str = "onnx"
    sampler: str = "tpe"
    seed: int | None = None
    heartbeat_s: int = 30
    grace_s: int = 120
    baseline: dict[str, Any] | None = field(default=None)

    @property
    def objective(self) -> str:
        """Name of the second objective's measurement."""
        return "latency_ms" if self.latency == "onnx" else "gflops"


def sqlite_url(root: Path) -> str:
    """The default storage: ``sqlite:///<root>/study.db`` (embedded, nothing to start)."""
    return f"sqlite:///{(root / 'study.db').resolve()}"


def open_storage(url: str, heartbeat_s: int, grace_s: int) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage with heartbeats; ``ValueError`` naming the URL when it cannot be opened."""
    if "://" not in url:
        raise ValueError(f"storage {url!r} is not a database URL (sqlite:///path/study.db, postgresql://user@host/db, ...)")
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=heartbeat_s, grace_period=grace_s)
    except Exception as error:  # sqlalchemy: unknown dialect, missing driver, unreachable server, bad path
        raise ValueError(f"cannot open the study storage {url!r}: {type(error).__name__}: {error}") from None


def _sampler(settings: StudySettings) -> optuna.samplers.BaseSampler:
    startup = max(3, settings.trials // 3)
    if settings.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=max(4, startup), seed=settings.seed)
    return optuna.samplers.TPESampler(n_startup_trials=startup, seed=settings.seed, multivariate=True)


@contextlib.contextmanager
def study_lock(root: Path, storage: str) -> Iterator[None]:
    """Serialise creating the tables and "count, then ask" between the workers of one machine (a file
    lock beside a SQLite study; with a server storage, workers on several machines may overshoot by
    one trial each)."""
    if not storage.startswith("sqlite"):
        yield
        return
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "study.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _die_with_parent() -> None:
    """In the trial process (Linux): be killed when the worker dies, so no orphan keeps training."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _run_trial(settings: StudySettings, storage: optuna.storages.RDBStorage, trial: optuna.trial.Trial,
               params: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:  # fmt: skip
    """Run one trial process, beating its heartbeat; ``(measurements or None, log tail)``."""
    folder = settings.root / "trials" / f"{trial.number:03d}"
    folder.mkdir(parents=True, exist_ok=True)
    args = [*settings.fit_args, *settings.space.overrides(params), f"--trainer.default_root_dir={folder}"]
    (folder / "fit_args.json").write_text(json.dumps(args, indent=1))
    result_path = folder / "result.json"
    command = [sys.executable, "-m", "detkit.tuning.trial", str(result_path), "--latency", settings.latency,
               "--prune", settings.name, settings.storage, "--", *args]  # fmt: skip
    study_id = storage.get_study_id_from_name(settings.name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
    storage.record_heartbeat(trial_id)  # a trial without any heartbeat is never found stale
    with open(folder / "trial.log", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(settings.heartbeat_s):
                storage.record_heartbeat(trial_id)

        beating = threading.Thread(target=beat, daemon=True)
        beating.start()
        try:
            code = process.wait()
        finally:
            stop.set()
            beating.join()
    tail = "\n".join((folder / "trial.log").read_text(errors="replace").splitlines()[-15:])
    if code != 0 or not result_path.is_file():
        return None, f"exit code {code}: {tail}"
    return json.loads(result_path.read_text()), tail


def _tell(study: optuna.Study, trial: optuna.trial.Trial, objective: str, result: dict[str, Any] | None, log: str) -> str:
    """Record a trial's measurements and finish it; returns its state's name."""
    if result is None:
        trial.set_user_attr("error", log[-1500:])
        study.tell(trial, state=TrialState.FAIL)
        return "FAIL"
    for key, value in result.items():
        trial.set_user_attr(key, value)
    if result.get("pruned"):
        study.tell(trial, state=TrialState.PRUNED)
        return "PRUNED"
    second = result.get(objective)
    if result.get("map") is None or second is None:
        trial.set_user_attr("error", f"no val/map or {objective} measured: {log[-1000:]}")
        study.tell(trial, state=TrialState.FAIL)
        return "FAIL"
    study.tell(trial, [float(result["map"]), float(second)])
    return "COMPLETE"


def run_worker(settings: StudySettings, echo=print) -> optuna.Study:
    """Run trials until the study holds ``settings.trials`` finished or running ones; returns the study."""
    with warnings.catch_warnings():
        # Heartbeats, stale-trial failing and metric names are Optuna features marked experimental,
        # and Optuna expects heartbeats only under Study.optimize; this ask-and-tell loop beats them itself.
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
        return _run_worker(settings, echo)


def _run_worker(settings: StudySettings, echo) -> optuna.Study:
    settings.root.mkdir(parents=True, exist_ok=True)
    with study_lock(settings.root, settings.storage):
        storage = open_storage(settings.storage, settings.heartbeat_s, settings.grace_s)
        study = optuna.create_study(
            study_name=settings.name, storage=storage, directions=["maximize", "minimize"],
            sampler=_sampler(settings), load_if_exists=True,
        )  # fmt: skip
        study.set_metric_names(["map", settings.objective])
        if settings.baseline is not None and not study.get_trials(deepcopy=False):
            study.enqueue_trial(settings.baseline, user_attrs={"baseline": True})
    while True:
        with study_lock(settings.root, settings.storage):
            optuna.storages.fail_stale_trials(study)
            taken = len(study.get_trials(deepcopy=False, states=_COUNTED))
            if taken >= settings.trials:
                break
            trial = study.ask()
            params = settings.space.suggest(trial)
        echo(f"trial {trial.number}: {' '.join(settings.space.overrides(params))}")
        result, log = _run_trial(settings, storage, trial, params)
        state = _tell(study, trial, settings.objective, result, log)
        measured = f"map {result.get('map')}, {settings.objective} {result.get(settings.objective)}" if result else log.splitlines()[-1:]
        echo(f"trial {trial.number}: {state} ({measured})")
    return study
