"""Set-up shared by every test: the modules in ``tests/support`` are importable.

They stand for code written outside detkit (an extra head, a new dataset format, a DDP probe
callback) that configs name by ``class_path`` (``extra_head.PointHead``). A test starting a
subprocess puts the same folder on its ``PYTHONPATH`` (as ``tests/test_ddp.py`` does).
"""

import sys
from pathlib import Path

SUPPORT = Path(__file__).resolve().parent / "support"

if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))


def _trained_tiny_shapes():
    from tiny import trained_tiny_shapes

    return trained_tiny_shapes()


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def trained_shapes_module():
    """The tiny FCOS shapes detector (``tests/support/tiny.py``) trained for 1000 steps at 96 px,
    once per test session: Grad-CAM and export parity tests need one that finds the shapes."""
    return _trained_tiny_shapes()
