"""The ``data:`` block of fit configs, with ``--data.*`` overrides, as a DataModule for detkit's own subcommands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


def _merge(base: dict[str, Any], new: Any) -> dict[str, Any]:
    """Later ``data:`` blocks override earlier ones; without a new ``class_path`` their ``init_args`` merge."""
    if not isinstance(new, dict):
        raise ValueError(f"the data block must be a mapping with class_path/init_args, got {new!r}")
    if new.get("class_path") and new.get("class_path") != base.get("class_path"):
        return {"class_path": new["class_path"], "init_args": dict(new.get("init_args") or {})}
    return {**base, "init_args": {**(base.get("init_args") or {}), **(new.get("init_args") or {})}}


def _data_block(configs: list[str | Path]) -> dict[str, Any]:
    """The merged ``data:`` blocks of ``configs`` (empty when none has one)."""
    block: dict[str, Any] = {}
    for path in configs:
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"config file not found: {file}")
        content = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        if "data" in content:
            block = _merge(block, content["data"])
    return block


def build_datamodule(configs: list[str | Path], overrides: list[str]) -> Any:
    """The DetectionDataModule described by the configs' ``data:`` blocks (later files win) and
    ``--data.init_args.X value`` style ``overrides``, as ``detkit fit`` would build it; the other
    blocks of the configs (trainer, model, ...) are ignored.
    """
    from jsonargparse import ArgumentParser

    from detkit.data.datamodules import DetectionDataModule

    parser = ArgumentParser(prog="detkit", exit_on_error=False)
    parser.add_subclass_arguments(DetectionDataModule, "data", required=True)
    block = _data_block(configs)
    args = (["--data", json.dumps(block)] if block else []) + overrides
    return parser.instantiate(parser.parse_args(args)).data
