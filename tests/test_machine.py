"""Tests for detkit.machine: the CPU as benchmark tables print it."""

import os
from pathlib import Path

import pytest

from detkit.machine import cpu_description, cpu_model, speed_flags


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="reads /proc/cpuinfo (Linux)")
def test_cpu_model_and_flags_come_from_cpuinfo():
    text = Path("/proc/cpuinfo").read_text()
    names = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")]
    flags = next(line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags"))
    if names:
        assert cpu_model() == names[0]
    assert ("avx2" in speed_flags()) == ("avx2" in flags)
    assert ("amx" in speed_flags()) == any(f.startswith("amx") for f in flags)
    description = cpu_description()
    assert description.startswith(cpu_model()) and f"{os.cpu_count()} cores" in description
