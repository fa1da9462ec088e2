"""Where the release is built, measured: `.venv/bin/python bench/build_host.py [--rate 300]
[--runs 3]` (as root, on this machine; it brings the lab's staging up itself).

The serving release (v2.0.0-perf) answers RATE requests/s from k6 (open loop) on staging's
app1 while a release-changing deploy of a commit never built before (a branch of v2.0.0-perf
with one file changed, pushed again for each run) builds it from a cold Go cache: the
checklist's way on app1, the host that serves (`build_host` empty), or on repo1, a host of the
inventory that serves nothing (`build_host=repo1`, app1 receives the tarball). Runs alternate.

Per run, from k6's own samples and summary: p99 in the 15 s before the deploy (the baseline,
same k6 run) and during it, failed and dropped requests, and the deploy's seconds.
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

from schema import BASELINE, p99, pyinfra  # noqa: E402

from lab import core  # noqa: E402
from lab.apprepo import pushed_release  # noqa: E402
from lab.load import Load  # noqa: E402

BRANCH = "bench-build"
# the Go build cache each builder keeps beside its bare repository (tasks/commands/git.py)
GO_CACHES = {
    "": "/app/monitoring-dashboard-api/repo.git/gocache",
    "repo1": "/var/lib/monitoring-dashboard-deploy/build/repo.git/gocache",
}


def one_run(url: str, rate: int, build_host: str, n: int) -> dict[str, float]:
    app1, _, repo1 = core.topology("staging")
    builder = repo1 if build_host else app1
    core.ssh(builder, f"rm -rf {GO_CACHES[build_host]}", timeout=60)
    with pushed_release(BRANCH, "v2.0.0-perf", {"BUILD.txt": f"run {n}\n"}):
        with Load(url, rate, "900s", samples=True) as load:
            time.sleep(BASELINE)
            started = time.time()
            pyinfra("--data", f"app_version={BRANCH}", "--data", f"build_host={build_host}")
            ended = time.time()
            traffic = load.result(stop_early=True)
            baseline = load.durations(started - BASELINE, started)
            during = load.durations(started, ended)
    return {
        "deploy_s": ended - started,
        "p99_base": p99(baseline),
        "p99": p99(during),
        "failed": traffic.failed,
        "dropped": traffic.dropped,
        "requests": traffic.requests,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    core.up("staging", echo=lambda _m: None)
    url = f"http://{core.topology('staging')[0].address}:8080"
    pyinfra("--data", "app_version=v2.0.0-perf")  # what serves while each run deploys
    runs: dict[str, list[dict[str, float]]] = {"": [], "repo1": []}
    print("| run | built on | deploy s | p99 before / during ms | failed | dropped | requests |")
    print("|---|---|---|---|---|---|---|")
    for i in range(args.runs * 2):
        where = "repo1" if i % 2 else ""
        r = one_run(url, args.rate, where, i)
        runs[where].append(r)
        print(
            f"| {i + 1} | {where or 'app1 (serving)'} | {r['deploy_s']:.1f} | "
            f"{r['p99_base']:.1f} / {r['p99']:.1f} | {r['failed']} | {r['dropped']} | "
            f"{r['requests']:,} |",
            flush=True,
        )
    medians = {
        where: {k: statistics.median(r[k] for r in found) for k in found[0]}
        for where, found in runs.items()
    }
    for where, m in medians.items():
        print(
            f"built on {where or 'app1 (serving)'}: p99 {m['p99']:.1f} ms during / "
            f"{m['p99_base']:.1f} ms before ({m['p99'] / m['p99_base']:.2f}x), deploy "
            f"{m['deploy_s']:.1f} s, failed {sum(r['failed'] for r in runs[where])}, dropped "
            f"{sum(r['dropped'] for r in runs[where])} (medians of {len(runs[where])}, k6 at "
            f"{args.rate}/s on staging app1)"
        )
    ratio = medians[""]["p99"] / medians["repo1"]["p99"]
    print(f"p99 during the deploy, built on the serving host / built elsewhere: {ratio:.2f}x")


if __name__ == "__main__":
    main()
