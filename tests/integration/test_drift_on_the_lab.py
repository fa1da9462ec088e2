"""drift.py and pre-flight's drift check on the lab's staging: changes made by hand on app1 and
on db1 (the way a DBA or an operator makes them during an incident) are found and named, a
deploy under drift_policy fail stops before any change, and the scratch database the schema
check replays into is gone after every run, a killed one's included. Each assertion reads the
hosts (PostgreSQL's catalog, the files, the service), not what the tool says of itself."""

from __future__ import annotations

import json
import os
import secrets
import shlex
import signal
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest
import yaml
from pyinfra_runs import PYINFRA, QUICK, REPO, output, pyinfra, wait_for_line

from lab import core
from lab.topology import topology
from tasks.commands.pgbackrest import superuser_psql
from tasks.drift import CACHE_DIR

SCRATCH = "monitoring_drift_scratch"
ENV = "/app/monitoring-dashboard-api/.env"
PROXY_CFG = "/etc/monitoring-dashboard/proxy.cfg"
DROP_IN = "/etc/systemd/system/monitoring-dashboard@.service.d/override.conf"
FAIL = ("--data", "drift_policy=fail")


def sh(host, command: str) -> str:
    return core.ssh(host, command).stdout.decode().strip()


def superuser(db, sql: str, database: str = "monitoring") -> str:
    return sh(db, superuser_psql(sql, database))


def scratch_databases(db) -> str:
    return superuser(
        db, f"SELECT count(*) FROM pg_database WHERE datname = '{SCRATCH}'", "postgres"
    )


def drift() -> subprocess.CompletedProcess:
    return pyinfra(script="drift.py")


def report_of(result: subprocess.CompletedProcess) -> dict:
    line = next(x for x in output(result).splitlines() if "report:" in x and "drift" in x)
    return json.loads((REPO / line.split("report:")[1].strip()).read_text())


def systemctl_edit(unit: str, text: str) -> None:
    """`systemctl edit UNIT` on staging's app1 as an operator runs it (it wants a terminal),
    the editor writing TEXT."""
    command = (
        f"printf %s {shlex.quote(text)} > /root/dropin && "
        f"SYSTEMD_EDITOR='cp /root/dropin' systemctl edit {unit} && rm /root/dropin"
    )
    ssh = ["ssh", "-F", str(core.ssh_config()), "-tt", "staging-app1", command]
    subprocess.run(ssh, stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=True)


def served(app1) -> str:
    return sh(app1, "curl -s -m 5 localhost:8080/api/v1/version")


@pytest.fixture(scope="module")
def deployed(lab):
    """Fresh staging with v2.0.0-perf deployed (its migrations applied); reset afterwards."""
    core.reset("staging", echo=lambda _m: None)
    app1, db1, _ = topology("staging")
    first = pyinfra("--data", "app_version=v2.0.0-perf", *QUICK)
    assert first.returncode == 0, output(first)[-3000:]
    yield app1, db1
    core.reset("staging", echo=lambda _m: None)


def test_after_a_clean_deploy_nothing_drifted_and_no_scratch_database_is_left(deployed):
    app1, db1 = deployed
    result = drift()
    text = output(result)
    assert result.returncode == 0, text[-3000:]
    assert "no drift" in text and "DRIFT" not in text
    assert scratch_databases(db1) == "0"
    found = report_of(result)["hosts"]["app1"]
    assert found["differences"] == []
    junit = ET.parse(REPO / "reports" / f"lab-{report_of(result)['run']}-drift.xml").getroot()
    assert junit.find("testsuite").get("failures") == "0"


def test_the_nightly_stage_runs_as_written_and_passes_on_a_clean_staging(deployed):
    steps = yaml.safe_load((REPO / "ci/github-actions-drift.yml").read_text())["jobs"]["drift"]
    step = next(x["run"] for x in steps["steps"] if x.get("name") == "Drift")
    env = {**os.environ, "INVENTORY": "inventories/lab.py"}
    result = subprocess.run(
        ["bash", "-c", step], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "no drift" in result.stdout + result.stderr


def test_changes_made_by_hand_are_named_and_a_deploy_under_fail_changes_nothing(deployed):
    app1, db1 = deployed
    value = secrets.token_hex(12)
    superuser(db1, "SET ROLE monitoring; CREATE INDEX drift_by_hand ON metrics (value)")
    superuser(db1, "SET ROLE monitoring; ALTER TABLE metrics ADD COLUMN note_by_hand text")
    sh(app1, f"echo '# edited by hand' >> {PROXY_CFG}")
    systemctl_edit("monitoring-dashboard@.service", "[Service]\nNice=5\n")
    sh(app1, f"chmod 644 {ENV} && echo EXTRA_TOKEN={value} >> {ENV}")
    before = sh(app1, "readlink /app/monitoring-dashboard-api/current")

    result = drift()
    text = output(result)
    assert result.returncode != 0, text[-3000:]
    named = {
        "INDEX public.drift_by_hand": "found present",
        "TABLE public.metrics": "added note_by_hand text",
        f"file {PROXY_CFG}": "found sha256",
        f"file {DROP_IN}": "expected absent",
        f"file {ENV}": "mode 644",
        ".env key EXTRA_TOKEN": "found present",
    }
    for obj, what in named.items():
        assert any(obj in line and what in line for line in text.splitlines()), (obj, text)
    found = report_of(result)
    assert {x["object"] for x in found["hosts"]["app1"]["differences"]} == set(named)
    run = found["run"]
    for suffix in ("json", "xml", "html"):
        assert value not in (REPO / "reports" / f"lab-{run}-drift.{suffix}").read_text()
    assert value not in text
    assert scratch_databases(db1) == "0"

    refused = pyinfra("--data", "app_version=v1.9.0", *FAIL, *QUICK)
    text = output(refused)
    assert refused.returncode != 0
    assert "DEPLOY FAILED on app1 in preflight" in text and "drift: 6 difference(s)" in text
    assert value not in text
    assert served(app1) == '{"version":"2.0.0-perf"}'
    assert sh(app1, "readlink /app/monitoring-dashboard-api/current") == before
    assert sh(app1, f"stat -c %a {ENV}") == "644" and "edited by hand" in sh(
        app1, f"cat {PROXY_CFG}"
    )

    # the refused run changed nothing, so it did not become what the next check expects
    again = drift()
    assert again.returncode != 0 and len(report_of(again)["hosts"]["app1"]["differences"]) == 6

    reason = "drift_accept=incident 4711: index made by hand"
    accepted = pyinfra("--data", "app_version=v2.0.0-perf", *FAIL, "--data", reason, *QUICK)
    assert accepted.returncode == 0, output(accepted)[-3000:]
    assert sh(app1, f"stat -c %a {ENV}") == "600" and "EXTRA_TOKEN" not in sh(app1, f"cat {ENV}")
    assert "edited by hand" not in sh(app1, f"cat {PROXY_CFG}")
    last = json.loads(sh(app1, "tail -n 1 /var/lib/monitoring-dashboard-deploy/deployments.jsonl"))
    assert last["facts"]["preflight"]["drift_accepted"] == "incident 4711: index made by hand"
    assert any("drift_by_hand" in line for line in last["facts"]["preflight"]["drift"])
    assert value not in json.dumps(last)


def test_a_migrations_index_dropped_by_hand_is_named(deployed):
    app1, db1 = deployed
    superuser(db1, "DROP INDEX idx_metrics_recent")
    result = drift()
    text = output(result)
    assert result.returncode != 0
    assert any(
        "INDEX public.idx_metrics_recent" in line and "found absent" in line
        for line in text.splitlines()
    ), text[-3000:]
    refused = pyinfra(*FAIL, *QUICK)
    assert refused.returncode != 0 and "INDEX public.idx_metrics_recent" in output(refused)


def test_the_next_run_clears_the_scratch_database_a_killed_run_left(deployed):
    app1, db1 = deployed
    # a run killed while replaying: SIGKILL once the database server says it replays (no
    # replayed schema kept: the run must replay)
    sh(db1, f"rm -rf {CACHE_DIR}")
    proc = subprocess.Popen(
        [PYINFRA, "-y", "inventories/lab.py", "drift.py"],
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_line(proc, "replaying", 120)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    # the worst a kill leaves: the scratch database, with a session still connected to it
    superuser(db1, f"DROP DATABASE IF EXISTS {SCRATCH} WITH (FORCE)", "postgres")
    superuser(db1, f"CREATE DATABASE {SCRATCH}", "postgres")
    session = superuser_psql("SELECT pg_sleep(120)", SCRATCH)
    held = subprocess.Popen(
        ["ssh", "-F", str(core.ssh_config()), "staging-db1", session],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        sessions = f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{SCRATCH}'"
        for _ in range(100):
            if superuser(db1, sessions, "postgres") == "1":
                break
            time.sleep(0.1)
        assert superuser(db1, sessions, "postgres") == "1"
        result = drift()
    finally:
        held.kill()
    assert "DRIFT" in output(result) or "no drift" in output(result), output(result)[-3000:]
    assert scratch_databases(db1) == "0"
