"""Figures for docs/benchmarks.md: `.venv/bin/python bench/run.py [--runs 5]` (as root, on
this machine).

Medians of several runs, each with a baseline measured in the same run:
- a no-change deploy vs pyinfra's own floor (the same host, 15 idempotent operations), and vs
  that floor on the deploy's transport (bench/floor_at_once.py: SSH packets sent at once);
- quick rollback: seconds from the restart to a healthy answer, and the whole command;
- `lab up` on a running lab (warm) vs bringing staging up from the cached base (cold);
- `lab reset staging` vs `lab down staging` + `lab up staging`;
- memory each lab host uses.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lab import core  # noqa: E402

PY = str(Path(sys.executable))
PYINFRA = str(Path(sys.executable).parent / "pyinfra")
RUNS = 5


def timed(cmd: list[str]) -> float:
    started = time.monotonic()
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return time.monotonic() - started


def median_of(cmd: list[str], runs: int) -> float:
    return statistics.median(timed(cmd) for _ in range(runs))


def last_record_seconds() -> float:
    app1 = core.topology("staging")[0]
    out = core.ssh(app1, "tail -n 1 /var/lib/monitoring-dashboard-deploy/deployments.jsonl")
    return json.loads(out.stdout)["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=RUNS, help="runs per figure (median)")
    runs = parser.parse_args().runs
    rows = []
    core.up("staging", echo=lambda _m: None)
    deploy = [PYINFRA, "-y", "inventories/lab.py", "deploy.py"]
    timed([*deploy, "--data", "app_version=v1.9.0"])  # a release for the rollbacks to go back to
    timed(deploy)  # then v2.0.0-perf
    floor = median_of([PYINFRA, "-y", "inventories/lab.py", "bench/floor.py"], runs)
    floor_at_once = median_of([PYINFRA, "-y", "inventories/lab.py", "bench/floor_at_once.py"], runs)
    noop = median_of(deploy, runs)
    rows.append(("no-change deploy (pyinfra inventories/lab.py deploy.py)", noop, floor))
    rows.append(("no-change deploy vs the floor on the same transport", noop, floor_at_once))

    rollback_cmd, healthy = [], []
    for _ in range(3):
        rollback_cmd.append(timed([PYINFRA, "-y", "inventories/lab.py", "rollback.py"]))
        healthy.append(last_record_seconds())
        timed(deploy)
    rows.append(
        (
            "quick rollback: restart -> healthy (s, from the record)",
            statistics.median(healthy),
            None,
        )
    )
    rows.append(("quick rollback: whole command", statistics.median(rollback_cmd), floor))

    warm = median_of([PY, "-m", "lab", "up", "staging"], runs)
    cold, down_up, reset = [], [], []
    for _ in range(3):
        down = timed([PY, "-m", "lab", "down", "staging"])
        cold.append(timed([PY, "-m", "lab", "up", "staging"]))
        down_up.append(down + cold[-1])
        reset.append(timed([PY, "-m", "lab", "reset", "staging"]))
    rows.append(
        ("lab up staging, cold (cached base, seeds 1M rows)", statistics.median(cold), warm)
    )
    rows.append(("lab up staging, warm (already running)", warm, None))
    rows.append(
        (
            "lab reset staging (vs lab down + lab up staging)",
            statistics.median(reset),
            statistics.median(down_up),
        )
    )

    print(f"{'figure':<58} {'median s':>9} {'baseline s':>11} {'ratio':>7}")
    for name, value, base in rows:
        ratio = f"{value / base:.2f}x" if base else ""
        base_text = f"{base:.2f}" if base else ""
        print(f"{name:<58} {value:>9.2f} {base_text:>11} {ratio:>7}")
    memory = {
        h["name"]: h["memory_bytes"]
        for h in core.status()["hosts"]
        if h["env"] == "staging" and h["running"]
    }
    print(
        "memory per lab host (MiB): "
        + ", ".join(f"{n} {b / 2**20:.0f}" for n, b in memory.items() if b is not None)
    )
    print(
        "baselines: pyinfra's floor (15 idempotent operations on the same host; the second "
        "row: with TCP_NODELAY, as the deploy's connections); "
        "for cold lab up, warm lab up; for lab reset, lab down + lab up"
    )


if __name__ == "__main__":
    main()
