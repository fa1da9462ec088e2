"""Availability figures for docs/benchmarks.md:
`.venv/bin/python bench/availability.py [--app-hosts N]
[--rates 100 600 1000]` (as root, on this machine; it brings the lab up itself).

k6 sends 100 requests/s (open loop) during each run; every failed-request count and latency
below comes from k6's own summary, and a request k6 dropped (never sent: every worker stuck)
counts as failed. Medians of RUNS runs; each baseline is measured in the
same run of this script:
- one host (staging): a release-changing deploy with release_strategy blue_green (the
  default) against the checklist's stop/start (restart); p99 during the deploy against p99
  with no deploy;
- the fleet (production behind lb1, no retries on lb1): a rolling deploy (canary, then one
  host at a time) of N app hosts, failed requests and p99 through lb1, the seconds each batch
  took (drain, switch, gate, back in service);
- wall time of a release-changing deploy to every app host in one batch against the same
  deploy to app1 alone (--limit).
Deploys alternate between v1.9.0 and v2.0.0-perf, both built once before the first figure.

With --rates, only this, at each rate: one host (staging), a release-changing deploy between
two releases that each serve that rate (v2.0.0-perf and `main`, the same commit in a folder of
its own: a new instance starts and takes over), blue_green; failed, dropped and unsent
requests, and p99 during the deploy against p99 with no deploy (v1.9.0 reads PostgreSQL on
every request and does not hold 600 requests/s here).
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
from lab.load import Load, LoadResult  # noqa: E402

PYINFRA = str(Path(sys.executable).parent / "pyinfra")
RUNS = 3
RATE = 100
QUICK = ["--data", "loadtest_enabled=false", "--data", "monitor_duration=0"]
VERSIONS = ("v1.9.0", "v2.0.0-perf")


def pyinfra(inventory: str, *args: str) -> tuple[float, str]:
    started = time.monotonic()
    result = subprocess.run(
        [PYINFRA, "-y", inventory, "deploy.py", *QUICK, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise SystemExit(f"deploy failed: {args}\n{(result.stdout + result.stderr)[-3000:]}")
    return time.monotonic() - started, result.stdout + result.stderr


def under_load(
    url: str, window: int, inventory: str, *args: str, rate: int = RATE
) -> tuple[LoadResult, str]:
    with Load(url, rate, f"{window}s") as load:
        time.sleep(3)
        seconds, text = pyinfra(inventory, *args)
        result = load.result()
    if seconds + 4 > window:
        raise SystemExit(f"the deploy took {seconds:.0f} s, longer than the {window} s of load")
    return result, text


def idle_p99(url: str, rate: int = RATE) -> float:
    with Load(url, rate, "20s") as load:
        return load.result().p99_ms


def report_of(text: str) -> dict:
    line = next(x for x in reversed(text.splitlines()) if "report:" in x and ".json" in x)
    return json.loads((REPO / line.split("report:")[1].strip()).read_text())["hosts"]


def one_host() -> list[tuple[str, float, float | None]]:
    core.up("staging", echo=lambda _m: None)
    app1 = core.hosts_of("staging")[0]
    url, inv = f"http://{app1.address}:8080", "inventories/lab.py"
    for version in VERSIONS:  # both releases built, blue_green in place
        pyinfra(inv, "--data", f"app_version={version}")
    failed: dict[str, list[int]] = {"blue_green": [], "restart": []}
    p99: list[float] = []
    base_p99 = [idle_p99(url) for _ in range(RUNS)]
    for i in range(RUNS):
        for strategy in ("restart", "blue_green"):
            # settle on the strategy with no load, then measure one release change under load
            pyinfra(
                inv,
                "--data",
                f"app_version={VERSIONS[0]}",
                "--data",
                f"release_strategy={strategy}",
            )
            result, _ = under_load(
                url,
                30,
                inv,
                "--data",
                f"app_version={VERSIONS[1]}",
                "--data",
                f"release_strategy={strategy}",
            )
            failed[strategy].append(result.unserved)
            if strategy == "blue_green":
                p99.append(result.p99_ms)
            print(f"  one host, run {i + 1}, {strategy}: {result}", flush=True)
    return [
        (
            "one host: failed+dropped+unsent requests, release-changing deploy, blue_green",
            statistics.median(failed["blue_green"]),
            statistics.median(failed["restart"]),
        ),
        (
            "one host: p99 ms during the deploy / with no deploy",
            statistics.median(p99),
            statistics.median(base_p99),
        ),
    ]


def at_rates(rates: list[int]) -> list[tuple[str, float, float | None]]:
    core.up("staging", echo=lambda _m: None)
    app1 = core.hosts_of("staging")[0]
    url, inv = f"http://{app1.address}:8080", "inventories/lab.py"
    releases = ("v2.0.0-perf", "main")
    for version in releases:  # both built, blue_green in place
        pyinfra(inv, "--data", f"app_version={version}")
    serving = releases[-1]
    rows: list[tuple[str, float, float | None]] = []
    for rate in rates:
        base_p99 = [idle_p99(url, rate) for _ in range(RUNS)]
        unserved, p99 = [], []
        for i in range(RUNS):
            version = serving = releases[1 - releases.index(serving)]  # the other one, always
            result, _ = under_load(url, 30, inv, "--data", f"app_version={version}", rate=rate)
            unserved.append(result.unserved)
            p99.append(result.p99_ms)
            print(f"  one host at {rate}/s, run {i + 1}, to {version}: {result}", flush=True)
        rows += [
            (
                f"one host at {rate}/s: failed+dropped+unsent, release-changing deploy (each run)",
                max(unserved),
                None,
            ),
            (
                f"one host at {rate}/s: p99 ms during the deploy / with no deploy",
                statistics.median(p99),
                statistics.median(base_p99),
            ),
        ]
    return rows


def fleet(app_hosts: int) -> list[tuple[str, float, float | None]]:
    core.up("production", echo=lambda _m: None, app_hosts=app_hosts)
    lb1 = next(h for h in core.hosts_of("production") if h.name == "lb1")
    url, inv = f"http://{lb1.address}:80", "inventories/lab_production.py"
    for version in VERSIONS:
        pyinfra(inv, "--data", f"app_version={version}")
    window = 30 + 10 * app_hosts
    failed, p99, batch_seconds, one_batch, single = [], [], [], [], []
    base_p99 = [idle_p99(url) for _ in range(RUNS)]
    for i in range(RUNS):
        result, text = under_load(url, window, inv, "--data", f"app_version={VERSIONS[0]}")
        failed.append(result.unserved)
        p99.append(result.p99_ms)
        hosts = report_of(text)
        batch_seconds += [h["facts"]["rollout"]["seconds"] for h in hosts.values()][1:]
        print(f"  fleet of {app_hosts}, run {i + 1}: {result}", flush=True)
        all_at_once = ["--data", "rollout_batch=100%", "--data", "rollout_canary=0"]
        one_batch.append(pyinfra(inv, "--data", f"app_version={VERSIONS[1]}", *all_at_once)[0])
        pyinfra(inv, "--data", f"app_version={VERSIONS[0]}", "--limit", "app1")
        single.append(pyinfra(inv, "--data", f"app_version={VERSIONS[1]}", "--limit", "app1")[0])
    return [
        (
            f"fleet of {app_hosts} behind lb1: failed+dropped+unsent requests, rolling deploy",
            statistics.median(failed),
            None,
        ),
        (
            f"fleet of {app_hosts}: p99 ms during the rollout / with no deploy",
            statistics.median(p99),
            statistics.median(base_p99),
        ),
        (
            f"fleet of {app_hosts}: seconds per batch after the canary (lb drain 0 s)",
            statistics.median(batch_seconds),
            None,
        ),
        (
            f"fleet of {app_hosts}: one-batch deploy wall s / the same deploy to app1 alone",
            statistics.median(one_batch),
            statistics.median(single),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app-hosts", type=int, default=3, help="production app hosts (1-32)")
    parser.add_argument("--skip-one-host", action="store_true")
    parser.add_argument("--rates", type=int, nargs="+", help="only the one-host deploy at these")
    args = parser.parse_args()
    if args.rates:
        rows = at_rates(args.rates)
    else:
        rows = [] if args.skip_one_host else one_host()
        rows += fleet(args.app_hosts)
    print(f"\n{'figure':<74} {'median':>8} {'baseline':>9} {'ratio':>7}")
    for name, value, base in rows:
        ratio = f"{value / base:.2f}x" if base else ""
        base_text = f"{base:.1f}" if base is not None else ""
        print(f"{name:<74} {value:>8.1f} {base_text:>9} {ratio:>7}")
    print(
        "baselines: restart strategy (one host, failed+dropped+unsent); k6 with no deploy (p99); "
        "the deploy to app1 alone (wall)"
    )


if __name__ == "__main__":
    main()
