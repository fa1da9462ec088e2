"""The fleet curve: `.venv/bin/python bench/fleet.py [--sizes 1 8 16 32] [--runs 3]` (as root,
on this machine; it brings the lab's production up at each size itself and leaves it at the
last).

For each number of app hosts behind lb1, medians of RUNS runs:
- a release-changing deploy to every app host in one batch (no canary), wall time, against the
  same deploy to app1 alone (`--limit app1`) measured in the same run; both with
  app_health_timeout 60 s (the lab's 10 s is too short for 32 instances starting at once on
  this machine's two cores);
- a rolling deploy in quarter batches (`rollout_batch=25%`, after the lab's one-host canary)
  while k6 sends 100 requests/s through lb1 (open loop): failed, dropped and unsent requests
  from k6's own summary, and p99 during the rollout against p99 with no deploy;
- pyinfra's own floor (bench/floor_at_once.py: 15 idempotent operations a host, on the
  deploy's transport) on every host against app1 alone: how pyinfra itself grows with the
  number of hosts it runs on, one Python process on one core;
- memory each app host uses (its cgroup), and lb1's.
Deploys alternate between v2.0.0-perf and `main` (the same commit in a release folder of its
own: every host starts a new instance and switches to it), both built once per size before
the figures. Not v1.9.0: it reads PostgreSQL on every request, and 32 hosts verifying it at
once on this machine's two cores miss the checklist's 500 ms for the history endpoint.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from availability import PYINFRA, idle_p99, pyinfra, under_load  # noqa: E402
from run import timed  # noqa: E402

from lab import core  # noqa: E402

INVENTORY = "inventories/lab_production.py"
VERSIONS = ("v2.0.0-perf", "main")
# 32 new instances starting at once on two cores take longer than the lab's 10 s to answer
HEALTH = ["--data", "app_health_timeout=60"]
ONE_BATCH = ["--data", "rollout_batch=100%", "--data", "rollout_canary=0", *HEALTH]
QUARTERS = ["--data", "rollout_batch=25%"]


def memory_mib(names: set[str]) -> list[float]:
    return [
        h["memory_bytes"] / 2**20
        for h in core.status()["hosts"]
        if h["env"] == "production" and h["name"] in names and h["memory_bytes"] is not None
    ]


def floor_seconds(*limit: str) -> float:
    """Wall seconds of pyinfra's floor on the fleet's inventory (every host, or LIMIT)."""
    return timed([PYINFRA, "-y", INVENTORY, "bench/floor_at_once.py", *limit])


def size(app_hosts: int, runs: int) -> dict[str, float]:
    core.up("production", echo=lambda _m: None, app_hosts=app_hosts)
    apps = {h.name for h in core.hosts_of("production") if h.is_app}
    lb1 = next(h for h in core.hosts_of("production") if h.name == "lb1")
    url = f"http://{lb1.address}:80"
    for version in VERSIONS:  # both releases built and shipped, blue_green in place
        pyinfra(INVENTORY, "--data", f"app_version={version}")
    window = 40 + 3 * app_hosts
    one_batch, alone, unserved, requests, p99 = [], [], [], [], []
    floor_all, floor_one = [], []
    base_p99 = [idle_p99(url) for _ in range(runs)]
    for i in range(runs):
        load, _ = under_load(
            url, window, INVENTORY, "--data", f"app_version={VERSIONS[0]}", *QUARTERS
        )
        unserved.append(load.unserved)
        requests.append(load.requests)
        p99.append(load.p99_ms)
        print(f"  {app_hosts} app hosts, run {i + 1}: rolling in quarters: {load}", flush=True)
        one_batch.append(pyinfra(INVENTORY, "--data", f"app_version={VERSIONS[1]}", *ONE_BATCH)[0])
        pyinfra(INVENTORY, "--data", f"app_version={VERSIONS[0]}", "--limit", "app1")
        seconds, _ = pyinfra(
            INVENTORY, "--data", f"app_version={VERSIONS[1]}", "--limit", "app1", *HEALTH
        )
        alone.append(seconds)
        floor_all.append(floor_seconds())
        floor_one.append(floor_seconds("--limit", "app1"))
        print(
            f"  {app_hosts} app hosts, run {i + 1}: one batch {one_batch[-1]:.1f} s, app1 alone "
            f"{alone[-1]:.1f} s; pyinfra's floor on every host {floor_all[-1]:.1f} s, on app1 "
            f"{floor_one[-1]:.1f} s",
            flush=True,
        )
    return {
        "hosts": app_hosts,
        "one_batch": statistics.median(one_batch),
        "alone": statistics.median(alone),
        "floor_all": statistics.median(floor_all),
        "floor_one": statistics.median(floor_one),
        "unserved": sum(unserved),
        "requests": sum(requests),
        "p99": statistics.median(p99),
        "base_p99": statistics.median(base_p99),
        "memory": statistics.median(memory_mib(apps)),
        "lb1_memory": statistics.median(memory_mib({"lb1"})),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 16, 32])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows = [size(n, args.runs) for n in args.sizes]
    print(
        "\n| app hosts | one batch, wall | app1 alone | ratio | pyinfra's floor, every host / "
        "app1 | rolling in quarters: failed+dropped+unsent / requests | p99 during / idle | "
        "memory per app host | lb1 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['hosts']} | {r['one_batch']:.1f} s | {r['alone']:.1f} s | "
            f"{r['one_batch'] / r['alone']:.2f}x | {r['floor_all']:.1f} / {r['floor_one']:.1f} s "
            f"({r['floor_all'] / r['floor_one']:.2f}x) | {r['unserved']} / {r['requests']:,} | "
            f"{r['p99']:.1f} / {r['base_p99']:.1f} ms | {r['memory']:.0f} MiB | "
            f"{r['lb1_memory']:.0f} MiB |"
        )
    print(f"medians of {args.runs} runs per size; k6 at 100 requests/s through lb1")


if __name__ == "__main__":
    main()
