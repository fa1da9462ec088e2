"""Secrets under stress, on the lab's staging: a deploy, a failing phase that rolls back by
itself, another deploy and a rollback, all at -vvv --diff with a distinctive REDIS_PASSWORD
(the database password is the lab's own random one); neither is found anywhere an operator,
a log shipper or another user of the hosts could read it."""

from __future__ import annotations

import os
import secrets
import threading
import time

import pytest
from pyinfra_runs import QUICK, REPO, lab_settings, output, pyinfra

from lab import core
from lab.topology import topology
from tasks.commands import shell


def sh(host, command: str) -> str:
    return core.ssh(host, command).stdout.decode(errors="replace")


@pytest.fixture(scope="module")
def staging(lab):
    hosts = {h.name: h for h in topology("staging")}
    s = lab_settings()
    first = pyinfra(*QUICK)  # whatever an earlier test left, the default release serves
    assert first.returncode == 0, output(first)[-3000:]
    return hosts["app1"], hosts["db1"], s


def test_no_secret_reaches_output_files_journals_or_process_lists(staging):
    app1, db1, s = staging
    db_password = os.environ["DB_PASSWORD"]
    redis_password = "Redis-" + secrets.token_hex(12)
    env = {"MDD_LAB_REDIS_PASSWORD": redis_password}  # the lab inventory's REDIS_PASSWORD
    processes: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for host in (app1, db1):
                processes.append(sh(host, "ps -eo user,args"))
            time.sleep(0.3)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        runs = {
            "deploy with a Redis password": pyinfra("-vvv", "--diff", *QUICK, env=env),
            "failed verification, automatic rollback": pyinfra(
                "-vvv",
                "--diff",
                *QUICK,
                "--data",
                "app_version=v1.9.0",
                "--data",
                "verify_max_db_connections=1",
                env=env,
            ),
            "deploy of v1.9.0": pyinfra(
                "-vvv", "--diff", *QUICK, "--data", "app_version=v1.9.0", env=env
            ),
            "rollback": pyinfra("-vvv", "--diff", script="rollback.py", env=env),
        }
    finally:
        stop.set()
        watcher.join(timeout=30)
    codes = {name: run.returncode for name, run in runs.items()}
    assert codes == {
        "deploy with a Redis password": 0,
        "failed verification, automatic rollback": 1,
        "deploy of v1.9.0": 0,
        "rollback": 0,
    }, {name: output(run)[-2000:] for name, run in runs.items()}
    assert "failed, rolled back" in output(runs["failed verification, automatic rollback"])
    assert "content not shown" in output(runs["deploy with a Redis password"])  # .env, --diff

    # the password guards the cache, and the image's unprivileged user reads it
    assert "NOAUTH" in sh(app1, "redis-cli -h 127.0.0.1 get x")
    pid = sh(app1, "docker inspect -f '{{.State.Pid}}' redis-cache").strip()
    assert sh(app1, f"awk '/^Uid:/ {{print $2}}' /proc/{pid}/status").strip() == "999"
    listing = sh(app1, "docker cp redis-cache:/usr/local/etc/redis/auth.conf - | tar -tvf -")
    assert listing.startswith("-r-------- 999/999 ")

    p = shell.paths(s)
    sources: dict[str, str] = {
        f"terminal output: {name}": output(run) for name, run in runs.items()
    }
    sources["ps on app1 and db1 during the runs"] = "\n".join(processes)
    sources["docker inspect redis-cache"] = sh(app1, "docker inspect redis-cache")
    for report in sorted((REPO / "reports").glob("*")):
        sources[str(report.relative_to(REPO))] = report.read_text(errors="replace")
    remote = [
        f"{p['manifests']}/*.json",
        p["records"],
        s.app_log_file,
        f"{s.backup_dir}/*.log",
        f"{s.backup_dir}/*.json",
    ]
    for pattern in remote:
        for path in sh(app1, f"ls -1 {pattern} 2>/dev/null || true").split():
            sources[f"app1:{path}"] = sh(app1, f"cat {shell.q(path)}")
    sources["app1: journal"] = sh(app1, "journalctl --no-pager -o cat")
    sources["db1: journal and PostgreSQL log"] = sh(
        db1, "journalctl --no-pager -o cat; cat /var/log/postgresql/*.log 2>/dev/null || true"
    )
    found = [
        name for name, text in sources.items() if db_password in text or redis_password in text
    ]
    lines = sum(len(text.splitlines()) for text in sources.values())
    print(f"secret scan: {len(sources)} sources, {lines} lines, {len(found)} with a secret")
    assert len(sources) >= 15 and lines > 1000
    assert found == []

    back = pyinfra(*QUICK)  # no password again, as the other tests expect
    assert back.returncode == 0, output(back)[-3000:]
