"""``detkit check-data``: read a fit config's ``data:`` block and report what is in, and wrong with, each split."""

from __future__ import annotations

import argparse
import warnings


_SPLITS = ("train", "val", "test")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="detkit check-data",
        description="Check the data of a detkit fit config: counts per split and class, background images, "
        "label files without images, clipped / dropped boxes, duplicate ids, category ids, crowd / difficult "
        "boxes, unreadable images. Exits 1 when a split has errors. Data options are those of "
        "`detkit fit` (`--data.X value`, `--data.train.init_args.X value`; see `detkit fit --data.train.help CLASS`).",
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
    from detkit.training.cli import build_data
    from detkit.data.check import check_dataset, plot_reports

    try:
        datamodule = build_data([f"--config={path}" for path in options.config] + overrides)
    except (Exception, SystemExit) as error:  # noqa: BLE001 - config errors of any kind are reported, not raised
        print(f"ERROR: cannot build the data module: {error}")
        return 2
    reports, failed, seen = [], False, {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the report lists what the warnings would say
            print(f"{type(datamodule).__name__}: {datamodule.num_classes} classes {datamodule.class_names}")
    except (ValueError, FileNotFoundError, OSError) as error:
        print(f"ERROR: {error}")
        failed = True
    for split in [s.strip() for s in options.splits.split(",") if s.strip()]:
        if split not in _SPLITS:
            parser.error(f"unknown split {split!r}; choose from {', '.join(_SPLITS)}")
        try:
            reader = datamodule.reader(split)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the report lists what the warnings would say
                reader.load()
        except (ValueError, FileNotFoundError, OSError) as error:
            print(f"[{split}]\n  ERROR: {error}")
            failed = True
            continue
        key = repr(reader)  # a reader's repr names its data (e.g. test defaults to the val reader)
        if key in seen:
            print(f"[{split}] same data as [{seen[key]}]")
            continue
        seen[key] = split
        report = check_dataset(reader, split, read_images=not options.no_images)
        print(report.format())
        failed |= bool(report.errors)
        reports.append(report)
    if options.plot and reports:
        print(f"wrote {plot_reports(reports, options.plot)}")
    print("FAILED: the data has errors (see ERROR lines)" if failed else "OK: no errors")
    return 1 if failed else 0
