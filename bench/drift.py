"""Drift on the fleet: `.venv/bin/python bench/drift.py [--app-hosts 32] [--runs 5]` (as root,
on this machine; it brings the lab's production up with that many app hosts and leaves it so).

After a deploy to every app host (each record then says what the run left there), medians of
RUNS runs, alternated:
- `drift.py` on the whole inventory: every app host's listing compared with its record, and
  the schema check (the applied migrations replayed into a scratch database on db1, both
  schemas dumped) from app1;
- pyinfra's own floor on the same inventory (bench/floor_at_once.py: 15 idempotent operations
  on each app host), the baseline: what any pyinfra run on this fleet costs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from availability import PYINFRA, pyinfra  # noqa: E402
from fleet import INVENTORY, ONE_BATCH  # noqa: E402
from run import timed  # noqa: E402

from lab import core  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app-hosts", type=int, default=32)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    core.up("production", echo=lambda _m: None, app_hosts=args.app_hosts)
    pyinfra(INVENTORY, "--data", "app_version=v2.0.0-perf", *ONE_BATCH)
    drift, floor = [], []
    for i in range(args.runs):
        drift.append(timed([PYINFRA, "-y", INVENTORY, "drift.py"]))
        floor.append(timed([PYINFRA, "-y", INVENTORY, "bench/floor_at_once.py"]))
        print(f"  run {i + 1}: drift.py {drift[-1]:.2f} s, floor {floor[-1]:.2f} s", flush=True)
    d, f = statistics.median(drift), statistics.median(floor)
    print("\n| app hosts | drift.py, wall | pyinfra's floor | ratio |\n|---|---|---|---|")
    print(f"| {args.app_hosts} | {d:.2f} s | {f:.2f} s | {d / f:.2f}x |")
    print(f"medians of {args.runs} runs, alternated")


if __name__ == "__main__":
    main()
