"""Secrets from an age file, and password rotations under load, on the lab's production: three
app hosts behind lb1, the database on db1, the Redis endpoint on cache1. k6 sends 100 requests/s
through lb1 during each rotation; failed requests come from k6's own summary. What is checked
afterwards is what a DBA sees: a real psql and redis-cli login with each password, the
sessions on db1, the .env of every host."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from pyinfra_runs import PYINFRA, QUICK, REPO, output, pyinfra, under_load, wait_for_line
from pyrage import x25519

from lab import core
from lab.load import Load
from tasks import secrets

INVENTORY = "inventories/lab_production.py"
APPS = ("app1", "app2", "app3")
WINDOW = 120  # seconds of load around one rotation (one takes 20 to 40 s on the lab)
OWNER, ROLE_A, ROLE_B = "monitoring", "monitoring_a", "monitoring_b"


def hosts() -> dict:
    return {h.name: h for h in core.hosts_of("production")}


def sh(name: str, command: str, input: str | None = None) -> str:
    done = core.ssh(hosts()[name], command, input=input.encode() if input else None, check=False)
    return (done.stdout + done.stderr).decode(errors="replace").strip()


def psql_login(role: str, password: str) -> str:
    """A real psql login on db1 as ROLE from app1 (the password over stdin, not argv)."""
    db = hosts()["db1"].address
    return sh(
        "app1",
        f"read -r PGPASSWORD; export PGPASSWORD; psql -h {db} -U {role} -d monitoring -Atc "
        "'SELECT current_user' 2>&1",
        input=password + "\n",
    )


def redis_login(password: str) -> str:
    cache = hosts()["cache1"].address
    return sh(
        "app1",
        f"read -r REDISCLI_AUTH; export REDISCLI_AUTH; redis-cli -h {cache} ping 2>&1",
        input=password + "\n",
    )


def env_value(name: str, key: str) -> str:
    line = sh(name, f"grep '^{key}=' /app/monitoring-dashboard-api/.env")
    return line.partition("=")[2]


def can_log_in() -> list[str]:
    out = sh(
        "db1",
        'cd / && runuser -u postgres -- psql -Atc "SELECT rolname FROM pg_roles WHERE rolname '
        "LIKE 'monitoring%' AND rolcanlogin ORDER BY 1\"",
    )
    return out.split()


def sessions_of(role: str) -> int:
    return int(
        sh(
            "db1",
            'cd / && runuser -u postgres -- psql -Atc "SELECT count(*) FROM pg_stat_activity '
            f"WHERE usename = '{role}'\"",
        )
    )


@pytest.fixture(scope="module")
def store(lab, tmp_path_factory):
    """The lab's production serving v1.9.0 with its passwords read from an age file (the lab's
    own passwords, encrypted for a key made here); the lab's production reset afterwards."""
    core.up("production", echo=lambda _m: None, app_hosts=3)
    folder = tmp_path_factory.mktemp("secrets")
    me = x25519.Identity.generate()
    path = folder / "lab-production.secrets.age"
    secrets.recipients_path(path).write_text(f"{me.to_public()}\n")
    db_password = core.secret_file("db_password").read_text().strip()
    redis_password = core.secret_file("redis_password").read_text().strip()
    secrets.encrypt(path, f"DB_PASSWORD={db_password}\nREDIS_PASSWORD={redis_password}\n")
    os.environ["AGE_IDENTITY_KEY"] = str(me)
    args = ("--data", "secrets_from=age", "--data", f"secrets_file={path}")
    try:
        first = pyinfra(*args, "--data", "app_version=v1.9.0", *QUICK, inventory=INVENTORY)
        assert first.returncode == 0, output(first)[-3000:]
        yield path, args
    finally:
        del os.environ["AGE_IDENTITY_KEY"]
        core.reset("production", echo=lambda _m: None)  # the lab's own passwords and roles


def stored(path: Path) -> dict[str, str]:
    values, problems = secrets.load("age", str(path), "", "", os.environ)
    assert problems == []
    return values


def test_a_wrong_identity_stops_before_any_host_is_reached_naming_the_file(store):
    path, args = store
    wrong = {"AGE_IDENTITY_KEY": str(x25519.Identity.generate())}
    result = pyinfra(*args, *QUICK, inventory=INVENTORY, env=wrong)
    text = output(result)
    assert result.returncode != 0
    assert f"{path}: does not decrypt with the given identity" in text
    assert "Connected" not in text and "nothing was changed" in text


def rotate(name: str, args: tuple[str, ...]):
    return under_load(
        f"http://{hosts()['lb1'].address}:80",
        "--data",
        f"runbook={name}",
        *args,
        window=WINDOW,
        script="runbook.py",
        inventory=INVENTORY,
    )


def test_database_password_rotations_fail_no_request(store):
    path, args = store
    old = stored(path)["DB_PASSWORD"]
    for before, after in ((OWNER, ROLE_A), (ROLE_A, ROLE_B)):
        result, traffic = rotate("rotate-db-password", args)
        assert result.returncode == 0, output(result)[-3000:]
        assert traffic.unserved == 0, traffic
        new = stored(path)
        assert new["DB_LOGIN_ROLE"] == after and new["DB_PASSWORD"] != old
        assert f"the service logs in as {after}; {before} can no longer log in" in output(result)
        assert {name: env_value(name, "DB_USER") for name in APPS} == dict.fromkeys(APPS, after)
        assert {env_value(name, "DB_PASSWORD") for name in APPS} == {new["DB_PASSWORD"]}
        assert "authentication failed" in psql_login(before, old)
        assert psql_login(after, new["DB_PASSWORD"]) == OWNER  # sessions act as the owner
        assert can_log_in() == [after]
        assert sessions_of(before) == 0
        old = new["DB_PASSWORD"]


def test_a_redis_password_rotation_fails_no_request(store):
    path, args = store
    old = stored(path)["REDIS_PASSWORD"]
    result, traffic = rotate("rotate-redis-password", args)
    assert result.returncode == 0, output(result)[-3000:]
    assert traffic.unserved == 0, traffic
    new = stored(path)["REDIS_PASSWORD"]
    assert new != old
    assert {env_value(name, "REDIS_PASSWORD") for name in APPS} == {new}
    assert "WRONGPASS" in redis_login(old)
    assert redis_login(new) == "PONG"


def test_a_killed_rotation_is_finished_by_the_next_run_and_no_request_fails(store):
    path, args = store
    serving = stored(path).get("DB_LOGIN_ROLE", OWNER)
    command = [PYINFRA, "-y", INVENTORY, "runbook.py", "--data", "runbook=rotate-db-password"]
    with Load(f"http://{hosts()['lb1'].address}:80", 100, f"{WINDOW}s") as load:
        time.sleep(3)
        run = subprocess.Popen(
            [*command, *args],
            cwd=REPO,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        seen = wait_for_line(run, ".env switched to the new credential", timeout=90)
        os.killpg(run.pid, signal.SIGKILL)
        run.wait(timeout=30)
        unlock = pyinfra(*args, script="unlock.py", inventory=INVENTORY)
        again = pyinfra(*command[4:], *args, inventory=INVENTORY, script="runbook.py")
        traffic = load.result(stop_early=True)
    assert unlock.returncode == 0, output(unlock)[-2000:]
    assert again.returncode == 0, output(again)[-3000:]
    assert "is unfinished: finishing it" in output(again)
    assert traffic.unserved == 0, traffic
    new = stored(path)
    assert new["DB_LOGIN_ROLE"] != serving, seen[-2000:]
    assert can_log_in() == [new["DB_LOGIN_ROLE"]]
    assert {env_value(name, "DB_USER") for name in APPS} == {new["DB_LOGIN_ROLE"]}
    assert {env_value(name, "DB_PASSWORD") for name in APPS} == {new["DB_PASSWORD"]}
    assert sessions_of(serving) == 0


def test_rotated_values_appear_nowhere_but_the_store_and_the_env_files(store):
    """The passwords the rotations above made are in no deployment record, report, journal
    or process list; a rotation run again under a process watcher shows none either."""
    path, args = store
    processes: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for name in ("app1", "app2", "db1", "cache1"):
                processes.append(sh(name, "ps -eo user,args"))
            time.sleep(0.3)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        runs = [
            pyinfra(
                "-vvv",
                "--data",
                "runbook=rotate-redis-password",
                *args,
                script="runbook.py",
                inventory=INVENTORY,
            ),
            pyinfra(
                "-vvv",
                "--data",
                "runbook=rotate-db-password",
                *args,
                script="runbook.py",
                inventory=INVENTORY,
            ),
        ]
    finally:
        stop.set()
        watcher.join(timeout=30)
    assert [r.returncode for r in runs] == [0, 0], output(runs[-1])[-3000:]
    values = [v for k, v in stored(path).items() if k != "DB_LOGIN_ROLE"]
    reports = [
        (REPO / line.split("(report: ")[1].rstrip(")")).read_text()
        for run in runs
        for line in output(run).splitlines()
        if "(report: " in line
    ]
    assert reports
    seen = "".join(output(r) for r in runs) + "".join(reports) + "".join(processes)
    for name in (*APPS, "db1", "cache1"):
        seen += sh(name, "journalctl --no-pager -q --since '-15 min' 2>/dev/null | tail -n 20000")
        seen += sh(name, "cat /var/lib/monitoring-dashboard-deploy/deployments.jsonl 2>/dev/null")
    leaked = [i for i, v in enumerate(values) if v in seen]
    assert leaked == [], "a rotated password appears in output, reports, journals or ps"
    assert json.loads(reports[-1])["runbook"] == "rotate-db-password"
