"""Figures for docs/benchmarks.md's schema section:
`.venv/bin/python bench/schema.py [--runs 3]` (as
root, on this machine, the lab's staging up).

- the lint: seconds per migration (squawk over v2.1.0's three migrations, median of 5);
- v2.1.0 on staging (metrics.host renamed hostname, 1M rows), RUNS times, each under k6 at
  100 requests/s from 15 s before the deploy to its end, then a full rollback back to
  v2.0.0-perf: the backfill's seconds; k6's p99 while the backfill runs over its p99 in the
  15 s before the deploy (the baseline, same k6 run); requests failed and dropped (k6's own
  counts) during the whole deploy.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lab import core  # noqa: E402
from lab.load import Load  # noqa: E402
from tasks import lint  # noqa: E402
from tasks.migrations import Migration  # noqa: E402

PYINFRA = str(Path(sys.executable).parent / "pyinfra")
QUICK = ("--data", "loadtest_enabled=false", "--data", "monitor_duration=0")
RUNS = 3
BASELINE = 15  # seconds of load before the deploy starts
V210 = REPO / "lab/releases/v2.1.0/internal/infrastructure/persistence/postgres/migrations"


def pyinfra(*args: str, script: str = "deploy.py") -> str:
    """SCRIPT on the lab's staging without the load test and monitoring window; its output."""
    cmd = [PYINFRA, "-y", "inventories/lab.py", script, *args, *QUICK]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{(done.stdout + done.stderr)[-3000:]}")
    return done.stdout + done.stderr


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) > 1 else float("nan")


def lint_seconds() -> float:
    names = sorted(p.name for p in V210.glob("00[0-9]_*.sql") if p.name.count(".") == 1)
    migrations = [Migration(n[:3], n[4:-4], (V210 / n).read_text()) for n in names]
    runs = [lint.lint(migrations, "error", serving=True).seconds for _ in range(5)]
    return statistics.median(runs) / len(migrations)


def one_rename(url: str) -> dict[str, float]:
    """v2.1.0 deployed under load; the times at which the deploy said its backfill started and
    ended are read off its output as it comes."""
    cmd = [PYINFRA, "-y", "inventories/lab.py", "deploy.py", "--data", "app_version=v2.1.0"]
    with Load(url, 100, "600s", samples=True) as load:
        time.sleep(BASELINE)
        deploy_started = time.time()
        proc = subprocess.Popen(
            [*cmd, *QUICK], cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        lines: list[tuple[float, str]] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.time(), line))
        proc.wait(timeout=60)
        traffic = load.result(stop_early=True)
        if proc.returncode != 0:
            raise SystemExit("v2.1.0 failed:\n" + "".join(x for _, x in lines)[-3000:])
        started = next(t for t, x in lines if "backfill 004_metrics_hostname:" in x)
        ended = next(t for t, x in lines if "backfill 004:" in x and "(100%)" in x)
        baseline = load.durations(deploy_started - BASELINE, deploy_started)
        during = load.durations(started, ended)
    return {
        "backfill_s": ended - started,
        "p99_ratio": p99(during) / p99(baseline),
        "p99_base_ms": p99(baseline),
        "p99_backfill_ms": p99(during),
        "failed": traffic.failed,
        "dropped": traffic.dropped,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=RUNS, help="v2.1.0 deploys (median)")
    args = parser.parse_args()
    core.up("staging", echo=lambda _m: None)
    app1 = core.topology("staging")[0]
    url = f"http://{app1.address}:8080"
    pyinfra()  # v2.0.0-perf, schema 003
    per_migration = lint_seconds()
    runs = []
    for _ in range(args.runs):
        runs.append(one_rename(url))
        pyinfra("--data", "rollback_mode=full", script="rollback.py")
    median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    print(f"lint (squawk, 3 migrations of v2.1.0)   {per_migration * 1000:.0f} ms per migration")
    print(f"backfill of 1M rows (v2.1.0, 004)       {median['backfill_s']:.1f} s")
    print(
        f"p99 during the backfill / before        {median['p99_ratio']:.2f}x "
        f"({median['p99_backfill_ms']:.1f} ms / {median['p99_base_ms']:.1f} ms)"
    )
    print(
        "failed / dropped requests (k6, whole deploy)  "
        + ", ".join(f"{r['failed']}/{r['dropped']}" for r in runs)
    )
    print(f"medians of {args.runs} runs; k6 at 100 requests/s on staging app1")


if __name__ == "__main__":
    main()
