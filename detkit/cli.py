"""DetkitCLI: the LightningCLI behind ``detkit fit``, ``validate``, ``test`` and ``predict``."""

from __future__ import annotations

import warnings

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from detkit.callbacks import PredictionWriter
from detkit.data.datamodules import DetectionDataModule
from detkit.module import DetectionModule


class DetkitCLI(LightningCLI):
    """LightningCLI with detkit's wiring.

    - ``num_classes`` and ``class_names`` are declared once, by the data, and linked into the model;
    - a :class:`~lightning.pytorch.callbacks.ModelCheckpoint` (group ``checkpoint``) keeps the best
      ``val/map`` and the last epoch;
    - a :class:`~detkit.callbacks.PredictionWriter` (group ``predictions``) writes what
      ``detkit predict`` finds.
    """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/map",
                "checkpoint.mode": "max",
                "checkpoint.filename": "best",
                "checkpoint.save_last": True,
                "checkpoint.enable_version_counter": False,
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_lightning_class_args(PredictionWriter, "predictions")


def build_cli(args: list[str] | dict | None = None, run: bool = True) -> DetkitCLI:
    """Parse ``args`` (default: ``sys.argv``), build model, data and trainer, and run the subcommand."""
    # Frozen backbone stages stay in eval mode on purpose (their BatchNorm statistics are fixed).
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")
    # Lightning 2.6's own use of a deprecated torch pytree API; nothing a detkit user can act on.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    return DetkitCLI(
        DetectionModule,
        DetectionDataModule,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )
