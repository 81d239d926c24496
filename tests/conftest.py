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
