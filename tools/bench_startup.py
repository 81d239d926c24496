"""Start-up cost of the ``detkit`` console script: wall time and peak memory of ``--help`` answers.

Each command runs in a fresh process (``python -c "from detkit.commands import main; main(ARGS)"``),
``--runs`` times, for this checkout and for ``--before DIR`` (another checkout, e.g. a
``git worktree`` of an older commit), one command after the other in the same run; the table gives the median wall
time and the peak resident memory of each process (``ru_maxrss`` from ``wait4``) and the ratios::

    git worktree add /tmp/detkit-before 8224e0a
    python -m tools.bench_startup --before /tmp/detkit-before
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from detkit.machine import cpu_description

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="the checkout to compare with (imported by PYTHONPATH)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    after_repo, before_repo = Path(__file__).resolve().parents[1], args.before.resolve()
    print(f"detkit start-up: before = {before_repo}, after = {after_repo}; {cpu_description()}, {os.cpu_count()} cores; "
          f"median wall of {args.runs} fresh processes, largest peak RSS")  # fmt: skip
    print("| command | before s | after s | before / after | before MB | after MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for cmd in COMMANDS:
        (b_wall, b_mb), (a_wall, a_mb) = measure(cmd, before_repo, args.runs), measure(cmd, after_repo, args.runs)
        print(f"| `detkit {' '.join(cmd)}` | {b_wall:.2f} | {a_wall:.2f} | {b_wall / a_wall:.1f}x | {b_mb:.0f} | {a_mb:.0f} |")


if __name__ == "__main__":
    main()
