"""A callback that SIGKILLs its own process at a given training step: an interrupted run for resume tests."""

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
