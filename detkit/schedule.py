"""Run progress (steps or wall time, whichever ends the run first) and the learning-rate schedule over it."""

from __future__ import annotations

import math
from typing import Any, Literal

from lightning.pytorch.callbacks import Timer

__all__ = ["RunSchedule", "run_has_end", "run_progress", "time_progress", "step_progress"]


def time_progress(trainer: Any) -> float | None:
    """Share of ``trainer.max_time`` used so far, from Lightning's own :class:`~lightning.pytorch.callbacks.Timer`
    (which the Trainer adds when ``max_time`` is set, and which restores its elapsed time when a run
    resumes); ``None`` without a time limit. With several processes, rank 0's clock decides (a
    broadcast), so every process sets the same learning rate, as the Timer itself decides when to stop."""
    for callback in getattr(trainer, "callbacks", None) or []:
        if isinstance(callback, Timer):
            elapsed = callback.time_elapsed("train")
            remaining = callback.time_remaining("train")
            if remaining is None:
                return None
            total = elapsed + remaining
            share = elapsed / total if total > 0 else 1.0
            if getattr(trainer, "world_size", 1) > 1:
                share = float(trainer.strategy.broadcast(share, src=0))
            return share
    return None


def step_progress(trainer: Any) -> float | None:
    """Share of the run's optimizer steps done (``trainer.estimated_stepping_batches``, which follows
    ``max_steps`` / ``max_epochs``); ``None`` when the run has no step or epoch limit."""
    total = trainer.estimated_stepping_batches
    if not math.isfinite(total) or total <= 0:
        return None
    return trainer.global_step / total


def run_has_end(trainer: Any) -> bool:
    """Whether the run has a step, epoch or time limit to measure progress against."""
    return step_progress(trainer) is not None or time_progress(trainer) is not None


def run_progress(trainer: Any) -> float:
    """How far the run is, in ``[0, 1]``: the larger of the step share and the time share, since the
    run ends at whichever limit comes first (``max_epochs``/``max_steps`` or ``max_time``). A run
    with neither (``max_epochs=-1``, no ``max_time``) has no end to plan for: 0 (a warning is the
    caller's to give)."""
    if trainer is None:
        return 0.0
    shares = [s for s in (step_progress(trainer), time_progress(trainer)) if s is not None]
    return min(1.0, max(shares)) if shares else 0.0


class RunSchedule:
    """Learning-rate multiplier over the run's progress: a linear warm-up for a share of the run, then
    cosine (or linear) decay to a floor at its end.

    Progress is :func:`run_progress`: optimizer steps over the run's length, or the share of
    ``trainer.max_time`` used when the time limit ends the run first. So a run given a time budget
    anneals to the floor when its time is up, whatever its step time turns out to be, and a short
    or long run warms up for the same share of itself (never a fixed step count that outlasts it).
    """

    def __init__(
        self,
        warmup_share: float = 0.05,
        final_factor: float = 0.05,
        warmup_start_factor: float = 0.001,
        decay: Literal["cosine", "linear"] = "cosine",
    ) -> None:
        """Build the schedule.

        Args:
            warmup_share: Share of the run (0..1) spent warming up linearly from
                ``warmup_start_factor`` to 1 (0 turns the warm-up off).
            final_factor: Multiplier of the optimizer's learning rate at the end of the run (the floor).
            warmup_start_factor: Multiplier at the start of the warm-up.
            decay: ``cosine`` (half a cosine from 1 to ``final_factor``) or ``linear``.
        """
        if not 0 <= warmup_share < 1:
            raise ValueError(f"warmup_share must be in [0, 1), got {warmup_share}")
        if not 0 <= final_factor <= 1:
            raise ValueError(f"final_factor must be in [0, 1], got {final_factor}")
        if not 0 < warmup_start_factor <= 1:
            raise ValueError(f"warmup_start_factor must be in (0, 1], got {warmup_start_factor}")
        if decay not in ("cosine", "linear"):
            raise ValueError(f"decay must be 'cosine' or 'linear', got {decay!r}")
        self.warmup_share = float(warmup_share)
        self.final_factor = float(final_factor)
        self.warmup_start_factor = float(warmup_start_factor)
        self.decay = decay

    def factor(self, progress: float) -> float:
        """The learning-rate multiplier at ``progress`` (clamped to ``[0, 1]``)."""
        progress = min(max(float(progress), 0.0), 1.0)
        if progress < self.warmup_share:
            return self.warmup_start_factor + (1 - self.warmup_start_factor) * progress / self.warmup_share
        t = (progress - self.warmup_share) / (1 - self.warmup_share)
        shape = 0.5 * (1 + math.cos(math.pi * t)) if self.decay == "cosine" else 1 - t
        return self.final_factor + (1 - self.final_factor) * shape

    def __repr__(self) -> str:
        return (
            f"RunSchedule(warmup_share={self.warmup_share}, final_factor={self.final_factor}, "
            f"warmup_start_factor={self.warmup_start_factor}, decay={self.decay!r})"
        )
