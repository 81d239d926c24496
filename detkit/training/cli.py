"""DetkitCLI: the LightningCLI behind ``detkit fit``, ``validate``, ``test`` and ``predict``, and the one config path."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from detkit.training.callbacks import Checkpoint, Curves, PredictionWriter
from detkit.checkpoints import read_checkpoint
from detkit.config import instantiate
from detkit.data import DetectionDataModule
from detkit.training.module import DetectionModule
from detkit.training.test_report import TestReport

__all__ = ["DetkitCLI", "build_cli", "build_data", "dump_config", "match_checkpoint_input", "match_model_input", "parse_config"]


class DetkitCLI(LightningCLI):
    """LightningCLI with detkit's wiring.

    - ``num_classes``, ``class_names``, ``input_size`` and ``pad_multiple`` are declared once, by
      the data, and linked into the model (which saves them in checkpoints);
    - a :class:`~detkit.training.callbacks.Checkpoint` (group ``checkpoint``) keeps the best ``val/map`` and
      the last epoch;
    - a :class:`~detkit.training.callbacks.Curves` (group ``curves``) draws ``curves.png`` beside the CSV
      log when ``fit`` ends;
    - a :class:`~detkit.training.callbacks.PredictionWriter` (group ``predictions``) writes what
      ``detkit predict`` finds;
    - a :class:`~detkit.training.test_report.TestReport` (group ``test_report``) writes
      ``<root>/test/report.html`` when ``test`` ends (``--test_report.enabled false``: not);
    - ``validate``, ``test`` and ``predict`` with ``--ckpt_path`` letterbox as the checkpoint was
      trained (its ``input_size`` and ``pad_multiple``; a warning says so when the config differs);
    - options are taken by their full names only (no argparse abbreviations);
    - every output follows ``trainer.default_root_dir`` unless given its own place: checkpoints go to
      ``<root>/checkpoints`` (``--checkpoint.dirpath``), predictions to ``<root>/predictions``
      (``--predictions.output_dir``) and, with ``trainer.logger`` left unset, metrics to a CSV logger
      (``<root>/csv``) and a TensorBoard logger (``<root>/tensorboard``).
    """

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        """Every parser (main and per subcommand) takes options by their full names only: argparse's
        prefix matching would take ``--trainer.max_epoch 3`` silently as ``--trainer.max_epochs``."""
        kwargs.setdefault("allow_abbrev", False)
        return super().init_parser(**kwargs)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse ``args`` (``sys.argv`` when ``None``) into ``self.config``.

        detkit's own commands (``evaluate``, ``check-data``, ``explain``, ``export``) and tools hand
        the parser the config arguments they took from their own command line; Lightning's warning
        about giving ``args`` while ``sys.argv`` has arguments is about a mistake they do not make,
        so it is not raised (no warning filter involved)."""
        self.config = parser.parse_object(args) if isinstance(args, (dict, Namespace)) else parser.parse_args(args)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")
        parser.link_arguments("data.input_size", "model.input_size", apply_on="parse")
        parser.link_arguments("data.pad_multiple", "model.pad_multiple", apply_on="parse")
        parser.add_lightning_class_args(Checkpoint, "checkpoint")
        parser.add_lightning_class_args(Curves, "curves")
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
        parser.add_lightning_class_args(TestReport, "test_report")

    def _subcommand_config(self) -> Namespace:
        return self.config[self.subcommand] if self.subcommand else self.config

    def _root_dir(self) -> Path:
        return Path(self._subcommand_config().trainer.get("default_root_dir") or os.getcwd())

    def before_instantiate_classes(self) -> None:
        """Evaluate and predict at the input size the checkpoint was trained at; ``predict`` keeps
        nothing in memory per image unless asked (``--return_predictions true``): the
        :class:`~detkit.training.callbacks.PredictionWriter` streams every batch to disk."""
        config = self._subcommand_config()
        if self.subcommand in ("validate", "test", "predict") and config.get("ckpt_path"):
            match_checkpoint_input(config.data, config.ckpt_path)
        if self.subcommand == "predict" and config.get("return_predictions") is None:
            config.return_predictions = False

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The Trainer, with CSV + TensorBoard loggers under ``default_root_dir`` when ``logger`` is unset."""
        if self._subcommand_config().trainer.get("logger") is None and "logger" not in kwargs:
            root = str(self._root_dir())
            kwargs["logger"] = [CSVLogger(root, name="csv"), TensorBoardLogger(root, name="tensorboard")]
        return super().instantiate_trainer(**kwargs)


def match_model_input(data: Namespace, source: str | Path, input_size: int | None, pad_multiple: int | None) -> None:
    """Set the parsed ``data`` config's ``input_size`` and ``pad_multiple`` to those the model from
    ``source`` was trained with, warning about each value the config had otherwise: one model, one mAP."""
    for key, value in {"input_size": input_size, "pad_multiple": pad_multiple}.items():
        if value is not None and data.get(key) != value:
            warnings.warn(f"{source} was trained with data {key} {value}; using it instead of the config's {data.get(key)}")
            data[key] = value


def match_checkpoint_input(data: Namespace, ckpt_path: str | Path) -> None:
    """:func:`match_model_input` with the letterbox recorded in a detkit checkpoint."""
    if not Path(ckpt_path).is_file():
        return  # Lightning reports the missing file
    meta = read_checkpoint(ckpt_path)["detkit"]  # a file that is not a detkit checkpoint: named error
    match_model_input(data, ckpt_path, meta.get("input_size"), meta.get("pad_multiple", 32))


class _ParseOnlyCLI(DetkitCLI):
    """Parses like ``detkit fit`` (config files, overrides, links) and instantiates nothing."""

    def before_instantiate_classes(self) -> None:
        pass

    def instantiate_classes(self) -> None:
        pass


@contextmanager
def _quiet() -> Iterator[None]:
    """Within: two warnings a detkit run cannot act on are not shown; the caller's filters come back after."""
    with warnings.catch_warnings():
        # Frozen backbone stages stay in eval mode on purpose (their BatchNorm statistics are fixed).
        warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")
        # Lightning 2.6's own use of a deprecated torch pytree API; nothing a detkit user can act on.
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
        yield


def build_cli(args: list[str] | dict | None = None, run: bool = True) -> DetkitCLI:
    """Parse ``args`` (default: ``sys.argv``), build model, data and trainer, and run the subcommand.

    With ``run=False`` there is no subcommand: ``args`` are those of ``detkit fit`` without ``fit``,
    and the returned CLI holds ``.model``, ``.datamodule`` and ``.trainer`` (tools and tests use this).
    The warnings filtered while the subcommand runs (a frozen backbone's eval-mode stages, Lightning's
    own deprecated torch call) are filtered there only: the process's filters are left as they were.
    """
    with _quiet():
        return DetkitCLI(
            DetectionModule,
            DetectionDataModule,
            save_config_kwargs={"overwrite": True},
            args=args,
            run=run,
        )


def parse_config(args: list[str]) -> Namespace:
    """The config that ``detkit fit ARGS`` would run (``--config`` files, overrides, links), parsed
    by the same CLI and checked, with nothing built: no model, no weights, no data, no trainer."""
    for i, arg in enumerate(args):  # a clear error rather than the parser's usage text
        path = arg.split("=", 1)[1] if arg.startswith("--config=") else args[i + 1] if arg == "--config" and i + 1 < len(args) else None
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"config file not found: {path}")
    args = [*args, "--seed_everything=false"]  # parsing must not reseed the caller's random state
    return _ParseOnlyCLI(DetectionModule, DetectionDataModule, args=args, run=False).config


def dump_config(args: list[str]) -> str:
    """The whole config ``detkit fit ARGS`` would run, as one YAML that ``detkit fit --config`` takes as it is
    (what ``--print_config`` prints; nothing built)."""
    cli = _ParseOnlyCLI(DetectionModule, DetectionDataModule, args=args, run=False)
    return cli.parser.dump(cli.config, skip_none=False)


def build_data(args: list[str], ckpt_path: str | Path | None = None) -> DetectionDataModule:
    """The DataModule that ``detkit fit ARGS`` would build, and nothing else (see :func:`parse_config`);
    with ``ckpt_path``, letterboxing as that checkpoint was trained (see :func:`match_checkpoint_input`)."""
    data = parse_config(args).data
    if ckpt_path is not None:
        match_checkpoint_input(data, ckpt_path)
    block = {"class_path": "detkit.data.DetectionDataModule", "init_args": data.as_dict()}
    return instantiate(DetectionDataModule, block)
