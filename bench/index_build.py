"""One index build under load, by the parallel workers it may use: `.venv/bin/python
bench/index_build.py [--rates 600 1000] [--runs 3]` (as root, on this machine; it brings the
lab's staging up and deploys v1.9.0 itself).

v1.9.0 (no cache: every request reads PostgreSQL) serves RATE requests/s from k6 (open loop)
while app1 builds, with CREATE INDEX CONCURRENTLY, a covering index of `metrics` like migration
003's (1M rows), in a session that sets max_parallel_maintenance_workers to 2 (PostgreSQL's
default: two workers and the leader) or to 0 (the leader alone), in turn. Per run, from k6's
samples and summary: the build's seconds, p99 and max during the build against p99 in the 5 s
before it (the baseline, same k6 run), dropped requests. The deploy sets neither: this
measures whether it should (on this machine, it made no difference).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from schema import p99, pyinfra  # noqa: E402

from lab import core  # noqa: E402
from lab.load import Load  # noqa: E402

BASELINE = 5  # seconds of load before the build starts
INDEX = "idx_bench_parallel_workers"
WORKERS = (2, 0)


def psql(app1: core.LabHost, script: str) -> None:
    """SCRIPT run by psql on app1 against staging's database, with the deploy's pgpass."""
    db = core.status()["database"]["staging"]
    command = (
        "PGPASSFILE=/var/lib/monitoring-dashboard-deploy/pgpass psql -X -q -v ON_ERROR_STOP=1 "
        f"-h {db['host']} -p {db['port']} -U {db['user']} -d {db['name']} -f -"
    )
    core.ssh(app1, command, timeout=300, input=script.encode())


def one_build(app1: core.LabHost, url: str, rate: int, workers: int) -> dict[str, float]:
    psql(app1, f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX};")
    with Load(url, rate, "300s", samples=True) as load:
        time.sleep(BASELINE)
        started = time.time()
        psql(
            app1,
            f"SET max_parallel_maintenance_workers = {workers};\n"
            "SET maintenance_work_mem = '256MB';\n"
            f"CREATE INDEX CONCURRENTLY {INDEX} ON metrics (type, recorded_at) "
            "INCLUDE (value, host);\n",
        )
        ended = time.time()
        traffic = load.result(stop_early=True)
        during = load.durations(started, ended)
        base = load.durations(started - BASELINE, started)
    return {
        "build_s": ended - started,
        "p99_base": p99(base),
        "p99": p99(during),
        "max": max(during),
        "dropped": traffic.dropped,
        "failed": traffic.failed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=int, nargs="+", default=[600, 1000])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    core.up("staging", echo=lambda _m: None)
    app1 = core.hosts_of("staging")[0]
    url = f"http://{app1.address}:8080"
    pyinfra("--data", "app_version=v1.9.0")
    print("| rate | workers | run | build s | p99 before / during ms | max ms | failed | dropped |")
    print("|---|---|---|---|---|---|---|---|")
    summary = []
    for rate in args.rates:
        runs: dict[int, list[dict[str, float]]] = {w: [] for w in WORKERS}
        for i in range(args.runs):
            for workers in WORKERS:
                r = one_build(app1, url, rate, workers)
                runs[workers].append(r)
                print(
                    f"| {rate}/s | {workers} | {i + 1} | {r['build_s']:.1f} | "
                    f"{r['p99_base']:.1f} / {r['p99']:.1f} | {r['max']:.0f} | {r['failed']} | "
                    f"{r['dropped']} |",
                    flush=True,
                )
        median = {w: statistics.median(r["p99"] for r in runs[w]) for w in WORKERS}
        build = {w: statistics.median(r["build_s"] for r in runs[w]) for w in WORKERS}
        dropped = {w: sum(r["dropped"] for r in runs[w]) for w in WORKERS}
        summary.append(
            f"{rate}/s: p99 during the build {median[0]:.1f} ms with 0 workers / "
            f"{median[2]:.1f} ms with 2 ({median[0] / median[2]:.2f}x); build {build[0]:.1f} s / "
            f"{build[2]:.1f} s; dropped {dropped[0]} / {dropped[2]} (medians of {args.runs})"
        )
    psql(app1, f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX};")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
