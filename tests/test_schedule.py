"""Tests for detkit.schedule: the run-progress learning-rate schedule, by steps and under a time budget."""

import math
import time

import pytest
from lightning.pytorch import Callback

from tiny import cpu_trainer, shapes_loader, tiny_module
from detkit.schedule import RunSchedule, run_progress

SCHEDULE = {"class_path": "detkit.schedule.RunSchedule", "init_args": {"warmup_share": 0.1, "final_factor": 0.05}}


class _Record(Callback):
    """Learning rate, run progress and wall time at the start of every training step."""

    def __init__(self) -> None:
        self.lrs: list[float] = []
        self.progress: list[float] = []
        self.times: list[float] = []
        self.end = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])
        self.progress.append(run_progress(trainer))
        self.times.append(time.monotonic())

    def on_train_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        self.end = time.monotonic()


def test_factor_warms_up_then_decays_to_the_floor():
    schedule = RunSchedule(warmup_share=0.2, final_factor=0.1, warmup_start_factor=0.01)
    assert schedule.factor(0.0) == pytest.approx(0.01)
    assert schedule.factor(0.1) == pytest.approx(0.01 + 0.99 * 0.5)
    assert schedule.factor(0.2) == pytest.approx(1.0)
    assert schedule.factor(0.6) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the cosine
    assert schedule.factor(1.0) == pytest.approx(0.1)
    assert schedule.factor(7.0) == pytest.approx(0.1)
    values = [schedule.factor(p / 100) for p in range(20, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    linear = RunSchedule(warmup_share=0.0, final_factor=0.0, decay="linear")
    assert linear.factor(0.25) == pytest.approx(0.75)


@pytest.mark.parametrize(
    "kwargs", [{"warmup_share": 1.0}, {"warmup_share": -0.1}, {"final_factor": 1.5}, {"warmup_start_factor": 0}, {"decay": "step"}]
)
def test_bad_settings_are_errors(kwargs):
    with pytest.raises(ValueError):
        RunSchedule(**kwargs)


def test_time_share_comes_from_rank_0_under_several_processes():
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import Timer

    timer = Timer(duration={"seconds": 100})
    timer.load_state_dict({"time_elapsed": {"train": 40.0}})
    sent = []
    strategy = SimpleNamespace(broadcast=lambda value, src: sent.append((value, src)) or 0.25)
    trainer = SimpleNamespace(callbacks=[timer], world_size=2, strategy=strategy, global_step=0,
                              estimated_stepping_batches=float("inf"))  # fmt: skip
    assert run_progress(trainer) == 0.25 and sent == [(0.4, 0)]
    trainer.world_size = 1
    assert run_progress(trainer) == pytest.approx(0.4) and len(sent) == 1


def test_schedule_with_another_scheduler_is_an_error():
    step_lr = {"class_path": "torch.optim.lr_scheduler.StepLR", "init_args": {"step_size": 1}}
    with pytest.raises(ValueError, match="without lr_scheduler"):
        tiny_module(schedule=SCHEDULE, lr_scheduler=step_lr, warmup_steps=None)


def test_step_run_warms_up_for_its_share_and_ends_at_the_floor(tmp_path):
    record = _Record()
    module = tiny_module(lr=0.01, schedule=SCHEDULE, warmup_steps=None)
    trainer = cpu_trainer(tmp_path, callbacks=(record,), max_epochs=5, limit_val_batches=0, enable_checkpointing=False)
    trainer.fit(module, shapes_loader(num_images=8, batch_size=2))  # 4 steps an epoch, 20 in all
    assert len(record.lrs) == 20
    assert record.progress == pytest.approx([k / 20 for k in range(20)])
    assert record.lrs[0] == pytest.approx(0.01 * 0.001)
    assert record.lrs[2] == pytest.approx(0.01)  # warm-up = 10 % of 20 steps
    assert record.lrs[-1] == pytest.approx(0.01 * RunSchedule(0.1, 0.05).factor(19 / 20))
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.01 * 0.05)  # after the last step


def test_time_budget_run_uses_its_time_and_ends_annealed(tmp_path):
    """max_epochs far beyond the budget: the time limit ends the run, and the schedule follows the
    clock, so the learning rate is at its floor when the time is up."""
    record = _Record()
    budget = 6.0
    module = tiny_module(lr=0.01, schedule=SCHEDULE, warmup_steps=None)
    trainer = cpu_trainer(
        tmp_path, callbacks=(record,), max_epochs=100_000, max_time={"seconds": budget},
        limit_val_batches=0, enable_checkpointing=False,
    )  # fmt: skip
    trainer.fit(module, shapes_loader(num_images=8, batch_size=2))
    used = record.end - record.times[0]
    assert used >= 0.9 * budget, used
    assert trainer.current_epoch < 100_000 - 1
    steps = len(record.lrs)
    assert steps >= 3, steps
    # Progress follows the clock (not the epoch count): the last step starts within one step's
    # time of the end, and progress grew with the time spent.
    longest_step = max(b - a for a, b in zip(record.times, [*record.times[1:], record.end]))
    assert record.progress[-1] >= 1 - longest_step / budget - 0.05
    elapsed = [(t - record.times[0]) / budget for t in record.times]
    assert all(abs(p - e) < 0.05 for p, e in zip(record.progress, elapsed)), (record.progress, elapsed)
    assert math.isclose(record.lrs[0], 0.01 * 0.001, rel_tol=1e-6)
    assert max(record.lrs) > 0.9 * 0.01  # warmed up fully
    # Ends annealed: within 5 % of the base rate above the floor (0.05 x base).
    final = trainer.optimizers[0].param_groups[0]["lr"]
    assert 0.01 * 0.05 <= final <= 0.01 * 0.10, final
