"""Start-up cost of the ``detkit`` console script: wall time and peak memory of ``--help`` answers.

Each command runs in a fresh process (``python -c "from detkit.commands import main; main(ARGS)"``),
``--runs`` times; the table gives the median wall time, the peak resident memory of the process
(``ru_maxrss``) and the ratio to the first row of the same run. ``--repo DIR`` imports detkit from
another checkout (for example a ``git worktree`` of an older commit), so one machine measures
before and after::

    git worktree add /tmp/detkit-before 8224e0a
    python -m tools.bench_startup --repo /tmp/detkit-before --label before
    python -m tools.bench_startup --label after
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = [["--help"], ["fit", "--help"], ["evaluate", "--help"], ["check-data", "--help"], ["export", "--help"]]


def measure(args: list[str], repo: Path, runs: int) -> tuple[float, float]:
    """Median wall seconds and largest peak RSS (MB) of ``detkit ARGS`` over ``runs`` fresh processes."""
    script = f"import sys; from detkit.commands import main; main({args!r})"
    env = {**os.environ, "PYTHONPATH": str(repo)}
    walls, peaks = [], []
    for _ in range(runs):
        start = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=repo,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        _, status, usage = os.wait4(child.pid, 0)  # this child's own resource use
        walls.append(time.perf_counter() - start)
        peaks.append(usage.ru_maxrss / 1024)  # KB on Linux
        if os.waitstatus_to_exitcode(status) not in (0, 2):  # --help exits 0 (argparse) or 2 (no subcommand)
            raise RuntimeError(f"detkit {' '.join(args)} failed in {repo}")
    return statistics.median(walls), max(peaks)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1], help="checkout to import detkit from")
    parser.add_argument("--label", default="", help="a name for this checkout in the table")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows = [(" ".join(cmd), *measure(cmd, args.repo.resolve(), args.runs)) for cmd in COMMANDS]
    print(f"detkit start-up {args.label} ({args.repo}); {cpu_model()}, {os.cpu_count()} cores; median of {args.runs}")
    print("| command | wall s | peak RSS MB | vs `detkit --help` |")
    print("|---|---:|---:|---:|")
    base = rows[0][1]
    for name, wall, peak in rows:
        print(f"| `detkit {name}` | {wall:.2f} | {peak:.0f} | {wall / base:.1f}x |")


if __name__ == "__main__":
    main()
