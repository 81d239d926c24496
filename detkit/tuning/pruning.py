"""Stop a trial whose validation mAP trails the study's: a Lightning callback over an Optuna pruner.

Optuna's pruners judge one objective, and a tuning study has two (mAP and latency). Each trial's
``val/map`` curve therefore also goes to a companion single-objective study, ``<study>.map`` in the
same storage, whose :class:`optuna.pruners.MedianPruner` compares it with the finished trials'
curves at the same epoch; a pruned trial stops at the end of that epoch.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import optuna
from lightning.pytorch.callbacks import Callback

__all__ = ["MapPruning", "companion_study_name"]


def companion_study_name(study_name: str) -> str:
    """Name of the single-objective study that holds the trials' ``val/map`` curves."""
    return f"{study_name}.map"


class MapPruning(Callback):
    """Report ``val/map`` after each validation to the companion study and stop the run when its
    pruner says so (rank 0 decides; under DDP the decision is broadcast, so all processes stop).

    Attributes:
        pruned: Whether this run was stopped by the pruner.
        epochs_reported: Validations reported.
    """

    def __init__(
        self,
        study_name: str,
        storage: str,
        monitor: str = "val/map",
        n_startup_trials: int = 3,
        n_warmup_steps: int = 2,
    ) -> None:
        """Set up the reporting.

        Args:
            study_name: The tuning study's name (the companion study is ``<study_name>.map``).
            storage: The Optuna storage URL of the study.
            monitor: The logged metric to report (higher is better).
            n_startup_trials: No pruning until this many trials finished.
            n_warmup_steps: No pruning in a trial's first this many validations.
        """
        super().__init__()
        self.study_name = study_name
        self.storage = storage
        self.monitor = monitor
        self.n_startup_trials = n_startup_trials
        self.n_warmup_steps = n_warmup_steps
        self.pruned = False
        self.epochs_reported = 0
        self._trial: optuna.trial.Trial | None = None
        self._study: optuna.Study | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            pruner = optuna.pruners.MedianPruner(n_startup_trials=self.n_startup_trials, n_warmup_steps=self.n_warmup_steps)
            self._study = optuna.create_study(
                study_name=companion_study_name(self.study_name), storage=self.storage, direction="maximize",
                pruner=pruner, load_if_exists=True,
            )  # fmt: skip
            self._trial = self._study.ask()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        prune = False
        value = trainer.callback_metrics.get(self.monitor)
        if self._trial is not None and value is not None:
            self._trial.report(float(value), self.epochs_reported)
            prune = self._trial.should_prune()
        self.epochs_reported += 1
        prune = trainer.strategy.broadcast(prune, src=0)
        if prune:
            self.pruned = True
            trainer.should_stop = True

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._study is None or self._trial is None:
            return
        if self.pruned:
            self._study.tell(self._trial, state=optuna.trial.TrialState.PRUNED)
            return
        value = trainer.callback_metrics.get(self.monitor)
        state = optuna.trial.TrialState.COMPLETE if value is not None else optuna.trial.TrialState.FAIL
        self._study.tell(self._trial, float(value) if value is not None else None, state=state)

    def state_dict(self) -> dict[str, Any]:
        return {"pruned": self.pruned, "epochs_reported": self.epochs_reported}
