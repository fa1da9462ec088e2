"""The deploy's guard on its own load, measured: `.venv/bin/python bench/guard.py [--rate 1000]
[--runs 3]` (as root, on this machine; it brings the lab's staging up itself).

v1.9.0 (no cache: every request reads PostgreSQL) serves RATE requests/s from k6 (open loop)
while v2.0.0-perf is deployed over it: backup (pg_dump of 1M rows), migration 003 (three
covering indexes built CONCURRENTLY and a materialized view), then the switch. Runs alternate
between the guard off (`deploy_guard_p99_ms=0`) and on (the defaults: 250 ms, or twice the
p99 the serving release had before the first heavy step, whichever is higher); after each, a
full rollback takes the schema back to 002 and v1.9.0 serves again (no load).

Per run, from k6's own samples and summary: p99 and max in the 15 s before the deploy (the
baseline, same k6 run) and during it; failed and dropped requests; the deploy's seconds, and
how long the guard waited and the limit it paused above (the deploy's report).
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

from availability import report_of  # noqa: E402
from schema import BASELINE, p99, pyinfra  # noqa: E402

from lab import core  # noqa: E402
from lab.load import Load  # noqa: E402


def guard_facts(text: str) -> tuple[int, int]:
    """The seconds the guard waited in all, and the limit it paused above (ms; 0: the guard
    was off), from the deploy's report."""
    facts = report_of(text)["app1"]["facts"]
    waited = sum(w["waited_s"] for w in facts.get("guard", []))
    return waited, facts.get("guard_baseline", {}).get("limit_ms", 0)


def one_run(url: str, rate: int, guard_on: bool) -> dict[str, float]:
    guard = [] if guard_on else ["--data", "deploy_guard_p99_ms=0"]
    with Load(url, rate, "900s", samples=True) as load:
        time.sleep(BASELINE)
        started = time.time()
        text = pyinfra("--data", "app_version=v2.0.0-perf", *guard)
        ended = time.time()
        traffic = load.result(stop_early=True)
        baseline = load.durations(started - BASELINE, started)
        during = load.durations(started, ended)
    pyinfra("--data", "rollback_mode=full", script="rollback.py")  # v1.9.0 and schema 002 again
    waited, limit = guard_facts(text)
    return {
        "deploy_s": ended - started,
        "waited_s": waited,
        "limit_ms": limit,
        "p99_base": p99(baseline),
        "p99": p99(during),
        "max": max(during),
        "failed": traffic.failed,
        "dropped": traffic.dropped,
        "requests": traffic.requests,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    core.up("staging", echo=lambda _m: None)
    url = f"http://{core.topology('staging')[0].address}:8080"
    pyinfra("--data", "app_version=v1.9.0")  # both releases built and on the host
    pyinfra("--data", "app_version=v2.0.0-perf")
    pyinfra("--data", "rollback_mode=full", script="rollback.py")  # v1.9.0, schema 002
    runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    print(
        "| run | guard | limit ms | deploy s | guard waited s | p99 before / during ms | max ms | "
        "failed | dropped | requests |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for i in range(args.runs * 2):
        on = bool(i % 2)
        r = one_run(url, args.rate, on)
        runs[on].append(r)
        print(
            f"| {i + 1} | {'on' if on else 'off'} | {r['limit_ms'] or '-'} | {r['deploy_s']:.1f} | "
            f"{r['waited_s']} | "
            f"{r['p99_base']:.1f} / {r['p99']:.1f} | {r['max']:.0f} | {r['failed']} | "
            f"{r['dropped']} | {r['requests']:,} |",
            flush=True,
        )
    for on in (False, True):
        median = {k: statistics.median(r[k] for r in runs[on]) for k in runs[on][0]}
        print(
            f"guard {'on ' if on else 'off'}: deploy {median['deploy_s']:.1f} s (waited "
            f"{median['waited_s']:.0f} s), p99 {median['p99']:.1f} ms during / "
            f"{median['p99_base']:.1f} ms before ({median['p99'] / median['p99_base']:.2f}x), max "
            f"{median['max']:.0f} ms, dropped {sum(r['dropped'] for r in runs[on])}, failed "
            f"{sum(r['failed'] for r in runs[on])} (medians of {len(runs[on])}, k6 at "
            f"{args.rate}/s on staging app1)"
        )


if __name__ == "__main__":
    main()
