"""Killed at any moment: `.venv/bin/python bench/chaos.py [--runs 30] [--seed N]` (as root, on
this machine; it brings the lab's production up itself, three app hosts behind lb1).

k6 sends 100 requests/s through lb1 (open loop) during each run. A run starts a deploy or a
rollback of the whole fleet, SIGKILLs it at a random instant of its duration (uniform over
the time an unkilled run of that command took, measured first in the same invocation), then
runs `unlock.py` and the same command again. Deploys alternate between v1.9.0 and v2.0.0-perf
(both built once before the first run); rollbacks name the release they go back to
(`rollback_to`), so the same command means the same target. After each run, from outside:

- the re-run exited 0;
- every app host serves the target version (its own port);
- every app server on lb1 is UP (none left drained or in maintenance);
- no stray slot (exactly one instance unit active per host, the one `slots/active` names), no
  half-built release (`*.partial`), no deploy process left (`go build`, `pg_dump`, `psql`), no
  container on an app host;
- the rows of `metrics` are those of before (count, highest id, checksum);
- k6's own summary: 0 failed, 0 dropped, 0 due and not sent.

The table names the operation that was running when the kill came (the last one pyinfra
announced), so the spread over the phases can be read.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lab import core  # noqa: E402
from lab.load import Load  # noqa: E402
from tasks.commands import haproxy, postgres, shell  # noqa: E402
from tasks.config import BY_NAME  # noqa: E402
from tasks.inventory import lab_group  # noqa: E402

PYINFRA = str(Path(sys.executable).parent / "pyinfra")
INVENTORY = "inventories/lab_production.py"
QUICK = ["--data", "loadtest_enabled=false", "--data", "monitor_duration=0"]
VERSIONS = {"v1.9.0": "1.9.0", "v2.0.0-perf": "2.0.0-perf"}
APPS = ("app1", "app2", "app3")
RATE = 100
APP_DIR = "/app/monitoring-dashboard-api"


def hosts() -> dict:
    return {h.name: h for h in core.hosts_of("production")}


def sh(name: str, command: str) -> str:
    return core.ssh(hosts()[name], command, check=False).stdout.decode().strip()


FOLDERS: dict[str, str] = {}  # ref -> the release folder its deploy made (a rollback names it)


def command(kind: str, ref: str) -> list[str]:
    script = "deploy.py" if kind == "deploy" else "rollback.py"
    wanted = f"app_version={ref}" if kind == "deploy" else f"rollback_to={FOLDERS[ref]}"
    return [PYINFRA, "-y", INVENTORY, script, *QUICK, "--data", wanted]


def run(argv: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def start(argv: list[str]) -> subprocess.Popen:
    """ARGV started in the repository, stdout and stderr on one text pipe, unbuffered (what it
    printed before a kill is kept, and each line is read when it is printed)."""
    return subprocess.Popen(
        argv,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def killed(argv: list[str], after: float) -> tuple[bool, str, str]:
    """Start ARGV, SIGKILL it AFTER seconds; whether it was still running, the operation it
    had announced last, and its output."""
    proc = start(argv)
    try:
        proc.wait(timeout=after)
        alive = False
    except subprocess.TimeoutExpired:
        proc.kill()
        alive = True
    out, _ = proc.communicate(timeout=60)
    started = re.findall(r"Starting (?:[a-z, ]+ )?operation: (.+)", out)
    return alive, started[-1].strip() if started else "(connecting, facts)", out


def rows() -> str:
    data = dict(lab_group("production", "app_servers", ("production", "lab"), [])[0][1])
    db_name = data.get("db_name", BY_NAME["db_name"].default)
    psql = f"psql -X -At -d {shell.q(db_name)} -c {shell.q(postgres.table_fingerprint_sql())}"
    return sh("db1", f"su postgres -c {shell.q(psql)}")


def served() -> dict[str, str]:
    out = {}
    for name in APPS:
        answer = sh(name, "curl -s -m 5 localhost:8080/api/v1/version")
        out[name] = json.loads(answer)["version"] if answer.startswith("{") else answer
    return out


def lb_statuses() -> dict[str, str]:
    stat = haproxy.haproxy_api("/run/haproxy/admin.sock", "show stat")
    lines = sh("lb1", f"{stat} | awk -F, '{{print $2, $18}}'").splitlines()
    found = dict(line.split(" ", 1) for line in lines if " " in line)
    return {name: found.get(name, "absent") for name in APPS}


def strays(name: str) -> list[str]:
    """What a killed run may have left on app host NAME."""
    found = []
    active = sh(name, f"cat {APP_DIR}/slots/active")
    units = sh(
        name,
        "systemctl list-units --state=active --plain --no-legend 'monitoring-dashboard@*' "
        "| awk '{print $1}'",
    ).split()
    if units != [f"monitoring-dashboard@{active}.service"]:
        found.append(f"instances {units}, slots/active {active}")
    partial = sh(name, f"ls {APP_DIR}/releases | grep partial || true")
    if partial:
        found.append(f"half-built {partial.split()}")
    procs = sh(name, "pgrep -a -f '[g]o build|[p]g_dump|[p]sql ' || true")
    if procs:
        found.append(f"processes {procs.splitlines()}")
    containers = sh(name, "command -v docker >/dev/null && docker ps -q | wc -l || echo 0")
    if containers != "0":
        found.append(f"{containers} containers")
    return found


def converge_check(target: str, before_rows: str) -> list[str]:
    problems = []
    now = served()
    if set(now.values()) != {VERSIONS[target]}:
        problems.append(f"serving {now}")
    statuses = lb_statuses()
    if set(statuses.values()) != {"UP"}:
        problems.append(f"lb1 {statuses}")
    for name in APPS:
        problems += [f"{name}: {s}" for s in strays(name)]
    if rows() != before_rows:
        problems.append("metrics rows changed")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--logs", default="/tmp/chaos-runs", help="each run's output goes here")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    echo = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    core.up("production", echo=echo, app_hosts=len(APPS))
    url = f"http://{hosts()['lb1'].address}:80"

    durations = {}
    for kind, ref in (("deploy", "v1.9.0"), ("deploy", "v2.0.0-perf"), ("rollback", "v1.9.0")):
        started = time.monotonic()
        done = run(command(kind, ref))
        if done.returncode != 0:
            raise SystemExit(f"{kind} {ref} failed:\n{(done.stdout + done.stderr)[-3000:]}")
        durations[kind] = time.monotonic() - started
        if kind == "deploy":  # the same tag may have been built from other commits before
            FOLDERS[ref] = sh("app1", f"basename $(readlink {APP_DIR}/current)")
    echo(f"unkilled: deploy {durations['deploy']:.1f} s, rollback {durations['rollback']:.1f} s")
    current = "v1.9.0"

    results = []
    print(
        "| run | command | killed at | operation running | re-run | problems | failed | "
        "dropped | unsent | p99 ms | max ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for i in range(args.runs):
        kind = "deploy" if i % 2 == 0 else "rollback"
        target = next(ref for ref in VERSIONS if ref != current)
        before_rows = rows()
        after = rng.uniform(0.5, durations[kind])
        with Load(url, RATE, "900s", samples=True) as load:
            time.sleep(3)
            began = time.time()
            was_killed, operation, out = killed(command(kind, target), after)
            unlock = run([PYINFRA, "-y", INVENTORY, "unlock.py"])
            rerun_began = time.time()
            again = run(command(kind, target))
            rerun_ended = time.time()
            traffic = load.result(stop_early=True)
            failures = [(t - began, status) for t, status in load.timed_answers() if status != 200]
        (logs / f"{i + 1:02d}-killed.log").write_text(out)
        (logs / f"{i + 1:02d}-rerun.log").write_text(again.stdout + again.stderr)
        problems = [] if unlock.returncode == 0 else ["unlock.py failed"]
        problems += converge_check(target, before_rows)
        if again.returncode != 0:
            problems.append("re-run failed: " + (again.stdout + again.stderr)[-400:])
        if failures:
            statuses = sorted({status for _, status in failures})  # 0: no answer
            problems.append(
                f"answers {statuses} {failures[0][0]:.1f}-{failures[-1][0]:.1f} s after the start "
                f"(killed at {after:.1f} s, re-run {rerun_began - began:.1f}-"
                f"{rerun_ended - began:.1f} s)"
            )
        current = target
        results.append((was_killed, not problems, traffic))
        moment = f"{after:.1f} s" if was_killed else f"(ended before {after:.1f} s)"
        print(
            f"| {i + 1} | {kind} {target} | {moment} | {operation} | exit "
            f"{again.returncode} | {'; '.join(problems) or 'none'} | {traffic.failed} | "
            f"{traffic.dropped} | {traffic.unsent} | {traffic.p99_ms:.1f} | "
            f"{traffic.max_ms:.1f} |",
            flush=True,
        )

    kills = sum(1 for k, _, _ in results if k)
    converged = sum(1 for _, ok, _ in results if ok)
    print()
    print(f"runs {len(results)}, killed mid-run {kills}, converged {converged}")
    print(
        "requests failed / dropped / due and not sent, all runs: "
        f"{sum(t.failed for _, _, t in results)} / {sum(t.dropped for _, _, t in results)} / "
        f"{sum(t.unsent for _, _, t in results)} of {sum(t.requests for _, _, t in results)}; "
        f"p99 median {statistics.median(t.p99_ms for _, _, t in results):.1f} ms, "
        f"max {max(t.max_ms for _, _, t in results):.1f} ms"
    )
    return 0 if converged == len(results) and not any(t.unserved for _, _, t in results) else 1


if __name__ == "__main__":
    sys.exit(main())
