"""``detkit check-data``: read a fit config's ``data:`` block and report what is in, and wrong with, each split."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any

import yaml

_SPLITS = ("train", "val", "test")


def _merge(base: dict[str, Any], new: Any) -> dict[str, Any]:
    """Later ``data:`` blocks override earlier ones; without a new ``class_path`` their ``init_args`` merge."""
    if not isinstance(new, dict):
        raise ValueError(f"the data block must be a mapping with class_path/init_args, got {new!r}")
    if new.get("class_path") and new.get("class_path") != base.get("class_path"):
        return {"class_path": new["class_path"], "init_args": dict(new.get("init_args") or {})}
    return {**base, "init_args": {**(base.get("init_args") or {}), **(new.get("init_args") or {})}}


def _data_block(configs: list[str]) -> dict[str, Any]:
    block: dict[str, Any] = {}
    for path in configs:
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"config file not found: {file}")
        content = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        if "data" in content:
            block = _merge(block, content["data"])
    return block


def _build_datamodule(configs: list[str], overrides: list[str]) -> Any:
    from jsonargparse import ArgumentParser

    from detkit.data.datamodules import DetectionDataModule

    parser = ArgumentParser(prog="detkit check-data", exit_on_error=False)
    parser.add_subclass_arguments(DetectionDataModule, "data", required=True)
    block = _data_block(configs)
    args = (["--data", json.dumps(block)] if block else []) + overrides
    return parser.instantiate(parser.parse_args(args)).data


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="detkit check-data",
        description="Check the data of a detkit fit config: counts per split and class, background images, "
        "label files without images, clipped / dropped boxes, duplicate ids, category ids, crowd / difficult "
        "boxes, unreadable images. Exits 1 when a split has errors. Data options are those of "
        "`detkit fit` (`--data.init_args.X value`; see `detkit fit --data.help CLASS`).",
    )
    parser.add_argument("--config", action="append", default=[], help="fit config YAML (only its data: block is read)")
    parser.add_argument("--plot", help="write a PNG of class counts and box-size histograms here")
    parser.add_argument("--splits", default=",".join(_SPLITS), help="comma-separated splits to check")
    parser.add_argument("--no-images", action="store_true", help="do not decode every image (faster)")
    return parser


def main(argv: list[str]) -> int:
    """Run ``detkit check-data``; returns the exit status (0: no errors, 1: errors, 2: bad usage)."""
    parser = _parser()
    options, overrides = parser.parse_known_args(argv)
    unknown = [a for a in overrides if a.startswith("-") and not a.startswith("--data")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    from detkit.data.check import check_dataset, plot_reports

    try:
        datamodule = _build_datamodule(options.config, overrides)
    except Exception as error:  # noqa: BLE001 - config errors of any kind are reported, not raised
        print(f"ERROR: cannot build the data module: {error}")
        return 2
    print(f"{type(datamodule).__name__}: {datamodule.num_classes} classes {datamodule.class_names}")
    reports, failed, seen = [], False, {}
    for split in [s.strip() for s in options.splits.split(",") if s.strip()]:
        if split not in _SPLITS:
            parser.error(f"unknown split {split!r}; choose from {', '.join(_SPLITS)}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the report lists what the warnings would say
                dataset = datamodule.make_dataset(split)
        except (ValueError, FileNotFoundError, OSError) as error:
            print(f"[{split}]\n  ERROR: {error}")
            failed = True
            continue
        key = (type(dataset).__name__, getattr(dataset, "issues", None) and dataset.issues.source,
               tuple(getattr(dataset, "files", ())) or id(dataset))  # fmt: skip
        if key in seen:
            print(f"[{split}] same data as [{seen[key]}]")
            continue
        seen[key] = split
        report = check_dataset(dataset, split, read_images=not options.no_images)
        print(report.format())
        failed |= bool(report.errors)
        reports.append(report)
    if options.plot and reports:
        print(f"wrote {plot_reports(reports, options.plot)}")
    print("FAILED: the data has errors (see ERROR lines)" if failed else "OK: no errors")
    return 1 if failed else 0
