"""This machine in words, for every benchmark table, study and report: CPU model, cores and the extensions that change torch's speed."""

from __future__ import annotations

import os
import platform
from pathlib import Path

__all__ = ["cpu_description", "cpu_model", "speed_flags"]


def _cpuinfo() -> tuple[str | None, set[str]]:
    """The first processor's ``model name`` and ``flags`` from ``/proc/cpuinfo`` (Linux; nothing elsewhere)."""
    name, flags = None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name is None:
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return name, flags


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else what :mod:`platform` knows)."""
    return _cpuinfo()[0] or platform.processor() or platform.machine() or "unknown CPU"


def speed_flags() -> list[str]:
    """Which of AVX2, AVX-512 and AMX the CPU has: they change torch's CPU speed several-fold."""
    flags = _cpuinfo()[1]
    return [f for f in ("avx2", "avx512f") if f in flags] + (["amx"] if any(f.startswith("amx") for f in flags) else [])


def cpu_description() -> str:
    """``"<model>, <n> cores, avx2 avx512f amx"``: what to print beside a speed figure."""
    flags = speed_flags()
    return f"{cpu_model()}, {os.cpu_count()} cores, {' '.join(flags) if flags else 'no avx2/avx512f/amx'}"
