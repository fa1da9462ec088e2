"""backup_method pgbackrest on the lab's staging: db1 archives its WAL to repo1, a deploy's
backup is a named restore point, drills restore into a scratch cluster on repo1, a full
rollback goes back to the restore point, and a lost data directory comes back from the archive.
Each assertion reads the hosts themselves (PostgreSQL, pgBackRest's repository, the service)."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from pyinfra_runs import QUICK, lab_settings, output, pyinfra, report

from lab import core
from lab.load import Load
from lab.topology import topology
from tasks.commands import postgres
from tasks.commands.pgbackrest import superuser_psql

ARCHIVE_TIMEOUT = 5
PGB = (
    "--data",
    "backup_method=pgbackrest",
    "--data",
    f"backup_archive_timeout={ARCHIVE_TIMEOUT}",
)


def sh(host, command: str) -> str:
    return core.ssh(host, command).stdout.decode().strip()


def superuser(db, sql: str) -> str:
    """SQL run on db1 by PostgreSQL's superuser, in the service's database."""
    return sh(db, superuser_psql(sql, "monitoring"))


def runbook(name: str, *args: str) -> subprocess.CompletedProcess:
    return pyinfra("--data", f"runbook={name}", *PGB, *args, script="runbook.py")


def insert_marker(db, label: str) -> int:
    """One row of metrics written on db1; its id."""
    sql = f"INSERT INTO metrics (type, host, value) VALUES ('drill', '{label}', 1) RETURNING id"
    return int(superuser(db, sql))


@pytest.fixture(scope="module")
def archived(lab):
    """Fresh staging with v1.9.0, then backup-setup; the lab is reset after the module (db1
    stops archiving, repo1 boots again empty)."""
    core.reset("staging", echo=lambda _m: None)
    app1, db1, repo1 = topology("staging")
    first = pyinfra("--data", "app_version=v1.9.0", *QUICK)
    assert first.returncode == 0, output(first)[-3000:]
    refused = pyinfra("--data", "app_version=v2.0.0-perf", *PGB, *QUICK)
    assert refused.returncode != 0 and "runbook=backup-setup" in output(refused)
    setup = runbook("backup-setup")
    assert setup.returncode == 0, output(setup)[-3000:]
    yield app1, db1, repo1, lab_settings(), output(setup)
    core.reset("staging", echo=lambda _m: None)


def info(repo1) -> dict:
    out = sh(
        repo1, "cd / && runuser -u postgres -- pgbackrest --stanza=monitoring info --output=json"
    )
    return json.loads(out)[0]


def test_a_server_that_does_not_archive_was_refused_before_any_change(archived):
    app1 = archived[0]
    assert sh(app1, "curl -s -m 5 localhost:8080/api/v1/version") == '{"version":"1.9.0"}'


def test_backup_setup_archives_restarts_once_measured_and_then_changes_nothing(archived):
    app1, db1, repo1, _, text = archived
    assert "archive_mode needs a restart" in text
    assert "PostgreSQL restarted for archive_mode (" in text and "requests to the serving" in text
    assert "first full backup" in text
    assert superuser(db1, "SHOW archive_mode") == "on"
    assert info(repo1)["backup"][0]["type"] == "full"
    for host in (db1, repo1):
        assert sh(host, "stat -c '%a %U:%G' /etc/pgbackrest.conf") == "640 root:postgres"
    again = runbook("backup-setup")
    assert again.returncode == 0, output(again)[-3000:]
    assert "runbook backup-setup: nothing to change" in output(again)


def test_a_deploy_backup_is_a_restore_point_archived_before_any_change(archived):
    app1, db1, repo1, s, _ = archived
    deployed = pyinfra("--data", "app_version=v2.0.0-perf", *PGB, *QUICK)
    text = output(deployed)
    assert deployed.returncode == 0, text[-3000:]
    backup = report(deployed)["facts"]["backup"]
    assert backup["method"] == "pgbackrest" and backup["restore_point"].startswith("mdd_lab_")
    segment = backup["wal_segment"]
    listing = sh(repo1, "ls /var/lib/pgbackrest/archive/monitoring/15-1/*/")
    assert f"{segment}-" in listing  # the segment holding the point is in the repository
    manifest = json.loads(
        sh(app1, "cat $(ls -1t /var/lib/monitoring-dashboard-deploy/manifests/*.json | head -1)")
    )
    assert manifest["backup"]["restore_point"] == backup["restore_point"]


def test_a_drill_to_a_restore_point_finds_the_row_before_it_and_not_the_one_after(archived):
    app1, db1, repo1, s, _ = archived
    before = insert_marker(db1, "before")
    superuser(db1, "SELECT pg_create_restore_point('drill_between')")
    after = insert_marker(db1, "after")
    superuser(db1, "SELECT pg_switch_wal()")
    drilled = runbook("restore-drill", "--data", "drill_target=drill_between")
    text = output(drilled)
    assert drilled.returncode == 0, text[-3000:]
    assert "drill to drill_between" in text and "PASSED" in text
    assert f"metrics highest id: {before}" in text  # the row after the point is not there
    live = superuser(db1, f"SELECT count(*) FROM metrics WHERE id IN ({before}, {after})")
    assert live == "2"
    record = json.loads(
        sh(app1, "tail -n 1 /var/lib/monitoring-dashboard-deploy/deployments.jsonl")
    )
    assert record["drill"]["passed"] and record["drill"]["rto_seconds"] > 0
    # the scratch cluster is stopped and gone (repo1 runs no PostgreSQL of its own)
    assert (
        sh(repo1, "ls /var/lib/mdd-drill 2>/dev/null; pgrep -u postgres -x postgres || true") == ""
    )


def test_a_drill_with_a_corrupted_wal_segment_fails_and_names_it(archived):
    app1, db1, repo1, s, _ = archived
    insert_marker(db1, "corrupt")
    superuser(db1, "SELECT pg_switch_wal()")
    time.sleep(2)
    # the newest segment (db1's cluster may be on a later timeline: the lab keeps it)
    victim = sh(repo1, "ls -1 /var/lib/pgbackrest/archive/monitoring/15-1/*/*.gz | tail -n 1")
    corrupt = f"printf garbage | dd of={victim} bs=1 seek=200 conv=notrunc"
    sh(repo1, f"cp -p {victim} /root/kept.gz && {corrupt}")
    try:
        drilled = runbook("restore-drill")
    finally:
        sh(repo1, f"cp -p /root/kept.gz {victim}")
    text = output(drilled)
    assert drilled.returncode != 0
    assert victim.rsplit("/", 1)[1] in text and "corrupted" in text


def test_a_full_rollback_restores_the_cluster_to_the_deploy_restore_point(archived):
    app1, db1, repo1, s, _ = archived
    late = (
        "INSERT INTO metrics (type, host, value) SELECT 'cpu', 'late', 1 FROM generate_series(1, 7)"
    )
    sh(app1, postgres.psql(s, late))
    with Load(f"http://{app1.address}:8080", 50, "300s", samples=True) as load:
        time.sleep(2)
        result = pyinfra(
            "--data",
            "rollback_mode=full",
            "--data",
            "rollback_restore_backup=yes",
            *PGB,
            script="rollback.py",
        )
        load.result(stop_early=True)
        # k6's own samples: every request answered; those that were not served got the
        # maintenance 503 while the database was down, none failed otherwise
        statuses = [status for _, status in load.timed_answers()]
    text = output(result)
    assert result.returncode == 0, text[-3000:]
    assert 503 in statuses and set(statuses) <= {200, 503}, sorted(set(statuses))
    assert "row(s) written since will be lost" in text and "maintenance mode on" in text
    assert sh(app1, "curl -s -m 5 localhost:8080/api/v1/version") == '{"version":"1.9.0"}'
    applied = f"SELECT version FROM {postgres.HISTORY_TABLE} WHERE reverted_at IS NULL"
    assert "003" not in sh(app1, postgres.psql(s, applied)).split()
    assert sh(app1, postgres.psql(s, "SELECT count(*) FROM metrics WHERE host = 'late'")) == "0"
    again = pyinfra(
        "--data",
        "rollback_mode=full",
        "--data",
        "rollback_restore_backup=yes",
        *PGB,
        script="rollback.py",
    )
    assert again.returncode == 0, output(again)[-3000:]
    assert "nothing to restore" in output(again) or "already rolled back" in output(again)


def test_restore_latest_brings_back_every_row_older_than_the_archive_timeout(archived):
    app1, db1, repo1, s, _ = archived
    writer = subprocess.Popen(
        [
            "ssh",
            "-F",
            str(core.ssh_config()),
            "staging-db1",
            "cd / && for i in $(seq 1 600); do runuser -u postgres -- psql -X -At -d monitoring "
            "-c \"INSERT INTO metrics (type, host, value) VALUES ('writer', 'w', $i) "
            'RETURNING value, extract(epoch FROM clock_timestamp())" || break; sleep 0.1; done',
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    time.sleep(15)
    sh(db1, "pkill -9 -u postgres postgres || true; rm -rf /var/lib/postgresql/15/main")
    lost_at = time.time()
    written, _ = writer.communicate(timeout=120)
    committed = [line.split("|") for line in written.splitlines() if "|" in line]
    assert len(committed) > 50
    result = runbook("restore-latest")
    text = output(result)
    assert result.returncode == 0, text[-3000:]
    assert "could not be brought back: writes of the last" in text
    present = {
        int(float(v))
        for v in sh(
            app1, postgres.psql(s, "SELECT value FROM metrics WHERE type = 'writer'")
        ).split()
    }
    horizon = lost_at - (ARCHIVE_TIMEOUT + 3)  # archive_timeout, plus one WAL switch's latency
    old_enough = [int(v) for v, at in committed if float(at) < horizon]
    missing = sorted(set(old_enough) - present)
    assert old_enough and not missing, (
        f"{len(missing)} rows missing: {missing[:20]}\n{text[-2000:]}"
    )
    assert (
        sh(app1, "curl -s -o /dev/null -w '%{http_code}' -m 5 localhost:8080/api/v1/auth/status")
        == "200"
    )
