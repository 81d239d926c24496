"""Callbacks that SIGKILL their own process at a given training step or prediction batch: interrupted runs for tests."""

import os
import signal

from lightning.pytorch import Callback


class KillAtStep(Callback):
    """Kill the process (SIGKILL: no handler, no clean-up, as a crash or an out-of-memory kill) once
    ``trainer.global_step`` reaches ``step`` at the end of a training batch."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class KillAtPredictBatch(Callback):
    """Kill the process (SIGKILL) as prediction batch ``batch`` starts: batches before it are done."""

    def __init__(self, batch: int) -> None:
        self.batch = batch

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:  # noqa: ANN001
        if batch_idx >= self.batch:
            os.kill(os.getpid(), signal.SIGKILL)
