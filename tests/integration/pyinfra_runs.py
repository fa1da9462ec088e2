"""Running the project's pyinfra files the way an operator does, for the integration tests."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

from lab import core
from lab.load import TAIL, Load, LoadResult
from lab.topology import topology
from tasks.config import validate
from tasks.inventory import lab_group

REPO = Path(__file__).resolve().parents[2]
PYINFRA = str(Path(sys.executable).parent / "pyinfra")
RUN_TIMEOUT = 900
OBJECTS = [  # what the reference service's migration 003 creates
    "idx_metrics_type_time_covering",
    "idx_metrics_type_time_id",
    "idx_metrics_recent",
    "metrics_hourly",
]


def pyinfra(
    *args: str,
    script: str = "deploy.py",
    inventory: str = "inventories/lab.py",
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """`pyinfra -y INVENTORY SCRIPT ARGS`, as a CI stage runs it (no stdin)."""
    return subprocess.run(
        [PYINFRA, "-y", inventory, script, *args],
        cwd=REPO,
        text=True,
        capture_output=True,
        timeout=RUN_TIMEOUT,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def start(*args: str, inventory: str = "inventories/lab.py") -> subprocess.Popen:
    """The same, in the background."""
    return subprocess.Popen(
        [PYINFRA, "-y", inventory, "deploy.py", *args],
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def output(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def report_path(result: subprocess.CompletedProcess) -> Path:
    """The JSON report a deploy names in its output (its JUnit XML is beside it)."""
    line = next(x for x in reversed(output(result).splitlines()) if "report:" in x and ".json" in x)
    return REPO / line.split("report:")[1].strip()


def report(result: subprocess.CompletedProcess, host: str = "app1") -> dict:
    """One host's entry of the JSON report a deploy names in its output."""
    return json.loads(report_path(result).read_text())["hosts"][host]


QUICK = ("--data", "loadtest_enabled=false", "--data", "monitor_duration=0")
LEAD = 3  # seconds of load before the run starts


# How long k6 may run around a single-host deploy or rollback. It is stopped a few seconds after
# the run ends, so a long bound costs nothing; a run takes 15 to 30 s, more on a busy machine.
SINGLE_HOST_WINDOW = 60


def under_load(
    url: str,
    *args: str,
    window: int,
    rate: int = 100,
    script: str = "deploy.py",
    inventory: str = "inventories/lab.py",
    forbidden: str = "",
) -> tuple[subprocess.CompletedProcess, LoadResult]:
    """Run a deploy or rollback (without its own load test and monitoring window) while k6
    sends RATE requests/s to URL, from LEAD seconds before the run to a few seconds after it;
    the run must end inside WINDOW seconds."""
    with Load(url, rate, f"{window}s", forbidden) as load:
        time.sleep(LEAD)
        started = time.monotonic()
        result = pyinfra(*args, *QUICK, script=script, inventory=inventory)
        elapsed = time.monotonic() - started
        traffic = load.result(stop_early=True)
    assert LEAD + elapsed < window - 1, f"the run took {elapsed:.0f} s, longer than the load"
    assert traffic.seconds >= elapsed + TAIL, f"k6 did not send through the whole run: {traffic}"
    assert traffic.unsent == 0, traffic
    return result, traffic


def lab_settings(env: str = "staging") -> dict:
    """The validated settings a deploy to the lab's ENV gets (its app hosts' group_vars)."""
    settings, problems = validate(dict(lab_group(env, "app_servers", (env, "lab"), [])[0][1]))
    assert problems == [], problems
    return settings


def staging_app1():
    return topology("staging")[0]


def served_version(host) -> str:
    """What the service on HOST says it is, through its port."""
    return core.ssh(host, "curl -s -m 5 localhost:8080/api/v1/version").stdout.decode().strip()


def on_staging(*args: str, script: str = "deploy.py", forbidden: str = ""):
    """under_load through staging app1's port for up to SINGLE_HOST_WINDOW seconds."""
    url = f"http://{staging_app1().address}:8080"
    return under_load(url, *args, window=SINGLE_HOST_WINDOW, script=script, forbidden=forbidden)


def wait_for_line(proc: subprocess.Popen, text: str, timeout: float) -> str:
    """Read PROC's output until a line holds TEXT; returns what was read."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if text in line:
                return "".join(seen)
    raise AssertionError(f"{text!r} never appeared: {''.join(seen)[-2000:]}")
