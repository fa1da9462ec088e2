"""The backup phase of a release-changing deploy, by backup method and database size:
`.venv/bin/python bench/backup.py [--rows 1000000 10000000] [--runs 3] [--rate 100]` (as root,
on this machine; it brings the lab's staging up itself, seeded with each size in turn, which
takes minutes the first time for 10M rows).

Per size: staging reset with that many rows of `metrics`, v2.0.0-perf deployed (migration 003
applied once), backup-setup run (pgBackRest archiving to repo1, a first full backup). Then
releases alternate between v2.0.2-slow and v2.0.0-perf (the same schema: each deploy changes
the release and takes a backup, no migration runs), RUNS deploys with `backup_method: pg_dump`
and RUNS with `pgbackrest`, each under RATE requests/s from k6 (open loop) on app1. Per deploy,
from its report and k6's samples: the backup phase's seconds, the bytes it moved off the
database host (pg_dump: the dump; pgbackrest: the archived WAL segment holding the restore
point, compressed), p99 of the serving release during the phase, failed and dropped requests
of the whole deploy. Then one restore drill per size (its RTO: restore, start, checks).
Medians are printed, and the ratio of the 10M figure to the 1M one per method.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from availability import report_of  # noqa: E402
from schema import p99, pyinfra  # noqa: E402

from lab import core  # noqa: E402
from lab.load import Load  # noqa: E402

METHODS = ("pg_dump", "pgbackrest")
RELEASES = ("v2.0.2-slow", "v2.0.0-perf")
ARCHIVE = "/var/lib/pgbackrest/archive/monitoring"


def moved_bytes(repo1: core.LabHost, facts: dict) -> int:
    backup = facts["backup"]
    if backup["method"] == "pg_dump":
        return int(backup["bytes"])
    out = core.ssh(repo1, f"stat -c %s {ARCHIVE}/*/*/{backup['wal_segment']}-*").stdout
    return int(out.decode().split()[0])


def one_deploy(url: str, rate: int, method: str, ref: str, repo1: core.LabHost) -> dict:
    with Load(url, rate, "900s", samples=True) as load:
        time.sleep(3)
        text = pyinfra("--data", f"app_version={ref}", "--data", f"backup_method={method}")
        traffic = load.result(stop_early=True)
        report = report_of(text)["app1"]
        phase = next(p for p in report["phases"] if p["phase"] == "backup")
        during = load.durations(phase["start"], phase["start"] + phase["seconds"])
    return {
        "backup_s": phase["seconds"],
        "moved_kb": moved_bytes(repo1, report["facts"]) / 1e3,
        "p99_ms": p99(during) if len(during) > 1 else float("nan"),
        "failed": traffic.failed + traffic.dropped,
        "requests": traffic.requests,
    }


def drill_seconds() -> float:
    text = pyinfra(
        "--data", "runbook=restore-drill", "--data", "backup_method=pgbackrest", script="runbook.py"
    )
    return float(re.search(r"RTO ([0-9.]+)s", text).group(1))


def size(rows: int, runs: int, rate: int) -> dict[str, dict[str, float]]:
    os.environ["MDD_LAB_ROWS"] = str(rows)
    core.up("staging", echo=lambda _m: None)
    core.reset("staging", echo=lambda m: print(f"  {m}", file=sys.stderr))
    app1, _, repo1 = core.hosts_of("staging")
    url = f"http://{app1.address}:8080"
    pyinfra("--data", "app_version=v2.0.0-perf")
    pyinfra(
        "--data", "runbook=backup-setup", "--data", "backup_method=pgbackrest", script="runbook.py"
    )
    figures: dict[str, dict[str, float]] = {}
    turn = 0
    for method in METHODS:
        found = []
        for _ in range(runs):
            found.append(one_deploy(url, rate, method, RELEASES[turn % 2], repo1))
            turn += 1
            print(f"  {rows} rows, {method}: {found[-1]}", file=sys.stderr)
        figures[method] = {
            key: statistics.median(f[key] for f in found) for key in ("backup_s", "moved_kb")
        }
        figures[method]["p99_ms"] = statistics.median(f["p99_ms"] for f in found)
        for key in ("failed", "requests"):  # of all the runs
            figures[method][key] = sum(f[key] for f in found)
    figures["drill"] = {"rto_s": drill_seconds()}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=int, default=100)
    args = parser.parse_args()
    by_size = {rows: size(rows, args.runs, args.rate) for rows in args.rows}
    os.environ.pop("MDD_LAB_ROWS", None)
    core.reset("staging", echo=lambda _m: None)  # the lab's default size again
    print(f"backup phase of a release-changing deploy, medians of {args.runs}, {args.rate} req/s")
    print("| rows | method | backup s | KB moved off db1 | p99 during (ms) | failed+dropped |")
    print("|---|---|---|---|---|---|")
    for rows, figures in by_size.items():
        for method in METHODS:
            f = figures[method]
            print(
                f"| {rows:,} | {method} | {f['backup_s']:.2f} | {f['moved_kb']:,.0f} | "
                f"{f['p99_ms']:.1f} | {int(f['failed'])} of {int(f['requests'])} |"
            )
    print("| rows | restore drill RTO s |")
    print("|---|---|")
    for rows, figures in by_size.items():
        print(f"| {rows:,} | {figures['drill']['rto_s']:.1f} |")
    if len(args.rows) == 2:
        small, large = (by_size[r] for r in args.rows)
        for method in METHODS:
            ratio = large[method]["backup_s"] / small[method]["backup_s"]
            print(
                f"{method}: backup phase at {args.rows[1]:,} rows / at {args.rows[0]:,}: "
                f"{ratio:.2f}x"
            )


if __name__ == "__main__":
    main()
