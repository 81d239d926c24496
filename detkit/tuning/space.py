"""A search space in YAML over any config key (dotted as on the command line), checked before any trial runs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Parameter", "SearchSpace", "SpaceError"]

_TYPES = ("categorical", "int", "float")


class SpaceError(ValueError):
    """A search space entry that cannot be searched: the message names the file and the entry."""


@dataclass(frozen=True)
class Parameter:
    """One searched config key.

    Attributes:
        key: Dotted config key as on the command line (``model.optimizer.init_args.lr``).
        type: ``"categorical"``, ``"int"`` or ``"float"``.
        choices: The values of a categorical parameter (numbers, strings, booleans or ``None``).
        low, high: Bounds of an int or float parameter (both included).
        step: Grid step of an int (default 1) or float parameter (default none).
        log: Sample on a log scale (``low > 0``; no ``step`` for floats).
    """

    key: str
    type: str
    choices: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False

    def suggest(self, trial: Any) -> Any:
        """The value an Optuna trial draws for this parameter (``trial.suggest_*``, named by ``key``)."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is a point of this parameter (a base config's value, for the baseline trial)."""
        if self.type == "categorical":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not self.low <= value <= self.high:
            return False
        if self.type == "int":
            return float(value).is_integer() and (value - self.low) % (self.step or 1) == 0
        return self.step is None or math.isclose((value - self.low) / self.step, round((value - self.low) / self.step))


def _parameter(source: str, key: str, spec: Any) -> Parameter:
    where = f"{source}: {key}"
    if not isinstance(key, str) or not key or key.startswith("-") or " " in key:
        raise SpaceError(f"{where}: keys are dotted config keys as on the command line (model.optimizer.init_args.lr)")
    if not isinstance(spec, dict):
        raise SpaceError(f"{where}: expected a mapping such as {{type: float, low: 0.001, high: 0.01, log: true}}, got {spec!r}")
    unknown = set(spec) - {"type", "choices", "low", "high", "step", "log"}
    if unknown:
        raise SpaceError(f"{where}: unknown fields {sorted(unknown)} (type, choices, low, high, step, log)")
    kind = spec.get("type", "categorical" if "choices" in spec else None)
    if kind not in _TYPES:
        raise SpaceError(f"{where}: type must be one of {', '.join(_TYPES)}, got {kind!r}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise SpaceError(f"{where}: a categorical parameter needs a non-empty list of choices")
        if any(not (c is None or isinstance(c, (bool, int, float, str))) for c in choices):
            raise SpaceError(f"{where}: choices must be numbers, strings, booleans or null (Optuna stores them), got {choices}")
        if len({repr(c) for c in choices}) != len(choices):
            raise SpaceError(f"{where}: repeated choices in {choices}")
        extra = {"low", "high", "step", "log"} & set(spec)
        if extra:
            raise SpaceError(f"{where}: {sorted(extra)} do not apply to a categorical parameter")
        return Parameter(key, kind, choices=tuple(choices))
    low, high, step, log = spec.get("low"), spec.get("high"), spec.get("step"), bool(spec.get("log", False))
    numbers = [v for v in (low, high, step) if v is not None]
    if low is None or high is None or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in numbers):
        raise SpaceError(f"{where}: an {kind} parameter needs numeric low and high, got low={low!r}, high={high!r}")
    if kind == "int" and any(not float(v).is_integer() for v in numbers):
        raise SpaceError(f"{where}: an int parameter needs whole low, high and step, got {low}, {high}, {step}")
    if low > high:
        raise SpaceError(f"{where}: low ({low}) > high ({high})")
    if step is not None and step <= 0:
        raise SpaceError(f"{where}: step must be > 0, got {step}")
    if log and low <= 0:
        raise SpaceError(f"{where}: a log-scale parameter needs low > 0, got {low}")
    if log and step is not None and not (kind == "int" and step == 1):
        raise SpaceError(f"{where}: log and step cannot be combined (Optuna samples a log scale continuously)")
    return Parameter(key, kind, low=low, high=high, step=step, log=log)


class SearchSpace:
    """The parameters of a study, read from YAML: one entry per dotted config key.

    Example (``configs/tune_shapes_space.yaml``)::

        model.optimizer.init_args.lr: {type: float, low: 0.0005, high: 0.01, log: true}
        data.input_size: {type: int, low: 96, high: 160, step: 32}
        model.detector.init_args.backbone.init_args.kernel_size: {choices: [3, 5, 7]}
    """

    def __init__(self, parameters: list[Parameter]) -> None:
        """Hold the parameters (use :meth:`from_yaml` to read and check a file)."""
        if not parameters:
            raise SpaceError("the search space is empty")
        self.parameters = parameters

    @classmethod
    def from_yaml(cls, path: str | Path) -> SearchSpace:
        """Read and check a space file; :class:`SpaceError` names the file and the entry that is wrong."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"search space file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise SpaceError(f"{path}: not valid YAML: {error}") from None
        if not isinstance(data, dict) or not data:
            raise SpaceError(f"{path}: expected a mapping of dotted config keys to parameters, got {type(data).__name__}")
        return cls([_parameter(str(path), key, spec) for key, spec in data.items()])

    @property
    def keys(self) -> list[str]:
        """The searched config keys, in file order."""
        return [p.key for p in self.parameters]

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Draw every parameter from an Optuna trial: ``{key: value}``."""
        return {p.key: p.suggest(trial) for p in self.parameters}

    @staticmethod
    def overrides(params: dict[str, Any]) -> list[str]:
        """Command-line overrides setting ``params``: ``["--key=value", ...]`` (values as YAML, as the CLI reads them)."""
        return [f"--{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
                for key, value in params.items()]  # fmt: skip
