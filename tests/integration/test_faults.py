"""Faults a real deploy meets, one by one, on the lab's staging, judged from outside the tool:
the service kept answering, no row of `metrics` was lost (count and checksum), the message
says what state things are in, and the same command run again converges."""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass

import pytest
from pyinfra_runs import (
    OBJECTS,
    QUICK,
    lab_settings,
    output,
    pyinfra,
    report,
    start,
    under_load,
    wait_for_line,
)

from lab import apprepo, core
from lab.apprepo import pushed_release
from lab.load import Load
from lab.topology import LabHost, topology
from tasks.commands import postgres, shell
from tasks.config import Settings

HOLDER = "fault-holder"  # application_name of the session a test keeps open on the database


@dataclass
class Staging:
    app1: LabHost
    db1: LabHost
    s: Settings

    def sh(self, command: str, host: LabHost | None = None, check: bool = True) -> str:
        done = core.ssh(host or self.app1, command, check=check)
        return done.stdout.decode().strip()

    def psql(self, sql: str) -> str:
        return self.sh(postgres.psql(self.s, sql))

    def as_postgres(self, sql: str) -> str:
        psql = f"psql -X -At -d {shell.q(self.s.db_name)} -c {shell.q(sql)}"
        return self.sh(f"su postgres -c {shell.q(psql)}", host=self.db1)

    def rows(self) -> str:
        """What a DBA checks first: count, highest id and md5 of every (id, value)."""
        return self.psql(postgres.table_fingerprint_sql())

    def applied(self) -> str:
        return self.psql(
            f"SELECT string_agg(version, ',' ORDER BY version) FROM {postgres.HISTORY_TABLE} "
            "WHERE reverted_at IS NULL"
        )

    def objects(self) -> list[str]:
        """`name|kind|valid|bytes` of the objects migration 003 creates that exist."""
        return self.psql(postgres.objects_state_sql(OBJECTS)).splitlines()

    def version(self) -> str:
        return self.sh("curl -s -m 5 localhost:8080/api/v1/version")

    def url(self) -> str:
        return f"http://{self.app1.address}:8080"

    def hold(self, statements: str) -> None:
        """A session that runs STATEMENTS in a transaction and keeps it open (300 s at most)."""
        sql = f"BEGIN ISOLATION LEVEL REPEATABLE READ; {statements}; SELECT pg_sleep(300)"
        command = f"PGAPPNAME={HOLDER} {postgres.psql(self.s, sql)}"
        self.sh(f"nohup sh -c {shell.q(command)} >/dev/null 2>&1 &")
        self.wait_for(f"application_name = '{HOLDER}' AND state = 'active'", 30)

    def release(self) -> None:
        self.as_postgres(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE application_name = '{HOLDER}'"
        )

    def wait_for(self, condition: str, timeout: float) -> str:
        """The pid of a session matching CONDITION on pg_stat_activity, waited for."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.as_postgres(f"SELECT pid FROM pg_stat_activity WHERE {condition} LIMIT 1")
            if pid:
                return pid
            time.sleep(0.3)
        raise AssertionError(f"no session with {condition} within {timeout}s")

    def backups(self) -> str:
        return self.sh(f"ls -A {shell.q(self.s.backup_dir)} 2>/dev/null || true")


@pytest.fixture(scope="module")
def st(lab) -> Staging:
    """A fresh staging serving v1.9.0: migration 003 is pending for the faults below."""
    core.reset("staging", echo=lambda _m: None)
    hosts = {h.name: h for h in topology("staging")}
    s = lab_settings()
    first = pyinfra("--data", "app_version=v1.9.0", *QUICK)
    assert first.returncode == 0, output(first)[-3000:]
    return Staging(hosts["app1"], hosts["db1"], s)


def kill_when(proc: subprocess.Popen, ready, timeout: float) -> float:
    """SIGKILL the deploy process PROC once READY() is true; returns the time of the kill."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, "the deploy ended before the fault"
        assert time.monotonic() < deadline, f"the fault's moment never came within {timeout}s"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    return time.monotonic()


def converge(st: Staging, rows: str) -> None:
    """The killed run's lock is broken explicitly, then the same deploy converges."""
    refused = pyinfra(*QUICK)
    assert refused.returncode != 0 and "REFUSED: the deploy lock for lab" in output(refused)
    assert pyinfra(script="unlock.py").returncode == 0
    again = pyinfra(*QUICK)
    assert again.returncode == 0, output(again)[-3000:]
    assert st.version() == '{"version":"2.0.0-perf"}'
    assert st.rows() == rows


def test_a_failing_pg_dump_stops_before_any_migration_and_leaves_no_file(st):
    rows, backups = st.rows(), st.backups()
    st.as_postgres("CREATE TABLE fault_unreadable (x int)")  # pg_dump as the app's role fails
    try:
        result = pyinfra(*QUICK)
    finally:
        st.as_postgres("DROP TABLE fault_unreadable")
    text = output(result)
    assert result.returncode != 0
    assert "pg_dump failed on app1" in text and "permission denied" in text
    assert report(result)["failure"].startswith("backup: ")
    assert st.applied() == "001,002" and st.objects() == []
    assert st.backups() == backups
    assert st.version() == '{"version":"1.9.0"}' and st.rows() == rows


def test_a_backup_disk_that_fills_up_mid_dump_stops_before_any_migration(st):
    """A small file system on backup_dir, big enough for the pre-flight check; once the dump
    has begun, something else fills it."""
    rows, where = st.rows(), shell.q(st.s.backup_dir)
    filler = (
        f"for i in $(seq 1200); do ls {where}/*.partial >/dev/null 2>&1 && break; sleep 0.05; "
        f"done; dd if=/dev/zero of={where}/.filler bs=1M 2>/dev/null"
    )
    st.sh(f"mkdir -p {where} && mount -t tmpfs -o size=200m,mode=0700 fault-small {where}")
    try:
        st.sh(f"nohup sh -c {shell.q(filler)} >/dev/null 2>&1 &")
        result = pyinfra(*QUICK)
        left = st.sh(f"ls -A {where}").split()
    finally:
        st.sh(f"pkill -f '[d]d if=/dev/zero' || true; umount {where}")
    assert result.returncode != 0
    assert "No space left on device" in output(result)
    assert report(result)["failure"].startswith("backup: pg_dump failed")
    assert left == [".filler"]  # no dump, whole or partial
    assert st.applied() == "001,002" and st.objects() == []
    assert st.version() == '{"version":"1.9.0"}' and st.rows() == rows


def test_a_migration_blocked_by_a_long_transaction_retries_then_stops_cleanly(st):
    rows = st.rows()
    st.hold("LOCK TABLE metrics IN SHARE UPDATE EXCLUSIVE MODE")  # as a long VACUUM would
    try:
        with Load(st.url(), 50, "60s") as load:
            began = time.monotonic()
            result = pyinfra(
                *QUICK,
                "--data",
                "migrate_lock_timeout=1s",
                "--data",
                "migrate_lock_retries=2",
                "--data",
                "migrate_lock_backoff=1s",
            )
            assert time.monotonic() - began < 55
            traffic = load.result(stop_early=True)
    finally:
        st.release()
    text = output(result)
    assert result.returncode != 0
    assert "migration 003 met lock_timeout (1s; lock held by" in text
    assert "ShareUpdateExclusiveLock" in text and "attempt 2/3, next in 2s" in text
    assert "could not take its lock within 1s in 3 attempt(s)" in text
    assert traffic.unserved == 0, traffic
    assert st.applied() == "001,002" and st.objects() == []
    assert st.version() == '{"version":"1.9.0"}' and st.rows() == rows


def test_a_deploy_killed_during_the_migration_converges_when_run_again(st):
    rows = st.rows()
    st.hold("SELECT count(*) FROM metrics")  # an old snapshot: CONCURRENTLY waits for it
    try:
        with Load(st.url(), 50, "40s") as load:
            proc = start(*QUICK, "--data", "migrate_lock_timeout=120s")
            killed = kill_when(
                proc,
                lambda: (
                    st.as_postgres(
                        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE "
                        "'CREATE INDEX CONCURRENTLY%' AND state = 'active'"
                    )
                    == "1"
                ),
                240,
            )
            traffic = load.result(stop_early=True)
    finally:
        st.release()
    assert traffic.unserved == 0, traffic
    assert st.version() == '{"version":"1.9.0"}'  # the release never switched
    converge(st, rows)
    assert st.applied() == "001,002,003"
    assert [o.split("|")[2] for o in st.objects()] == ["t"] * len(OBJECTS)
    print(f"killed run to converged re-run: {time.monotonic() - killed:.1f} s")


def test_an_edited_applied_migration_is_refused_and_changes_nothing(st):
    rows, applied = st.rows(), st.applied()
    migration = (
        "internal/infrastructure/persistence/postgres/migrations/"
        "003_covering_indexes_optimization.sql"
    )
    edited = (apprepo.APP_SOURCE / migration).read_text() + "-- edited after it was applied\n"
    with pushed_release("fault-edited-003", "v2.0.0-perf", {migration: edited}) as branch:
        result = pyinfra(*QUICK, "--data", f"app_version={branch}")
    text = output(result)
    assert result.returncode != 0
    assert "applied migration(s) 003 changed since they were applied" in text
    assert st.applied() == applied and st.rows() == rows
    assert st.version() == '{"version":"2.0.0-perf"}'


def test_a_taken_redis_port_is_a_clear_error_and_the_release_keeps_serving(st):
    st.sh("docker rm -f redis-cache >/dev/null")
    st.sh("nohup socat TCP-LISTEN:6379,bind=127.0.0.1,reuseaddr,fork /dev/null >/dev/null 2>&1 &")
    try:
        result = pyinfra(*QUICK)
    finally:
        st.sh("pkill -f '[s]ocat TCP-LISTEN:6379' || true")
    text = output(result)
    assert result.returncode != 0
    assert report(result)["failure"].startswith("redis: ")
    assert "address already in use" in text.lower() or "port is already allocated" in text
    assert st.version() == '{"version":"2.0.0-perf"}'
    again = pyinfra(*QUICK)
    assert again.returncode == 0, output(again)[-3000:]
    assert st.sh("docker inspect -f '{{.State.Running}}' redis-cache") == "true"


def test_a_failed_verification_rolls_back_by_itself_and_no_request_fails(st):
    rows = st.rows()
    result, traffic = under_load(
        st.url(),
        "--data",
        "app_version=v1.9.0",
        "--data",
        "verify_max_db_connections=1",  # the check's own session counts
        window=60,
    )
    failed = report(result)
    assert result.returncode != 0
    assert failed["failure"].startswith("verify: ")
    assert failed["status"] == "failed, rolled back"
    assert traffic.unserved == 0, traffic
    assert st.version() == '{"version":"2.0.0-perf"}' and st.rows() == rows


def test_a_database_restart_in_the_monitoring_window_rolls_back_and_loses_no_row(st):
    rows = st.rows()
    proc = start(
        "--data",
        "app_version=v1.9.0",
        "--data",
        "loadtest_enabled=false",
        "--data",
        "monitor_duration=20",
    )
    seen = ""
    try:
        seen = wait_for_line(proc, "monitoring for 20s", 300)
        # a restart that takes longer than a sampling interval (2 s in the lab), so that a
        # sample meets it: one shorter than that can fall between two samples unseen
        st.sh("systemctl stop postgresql && sleep 5 && systemctl start postgresql", host=st.db1)
    finally:
        rest, _ = proc.communicate(timeout=300)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, seen + rest, "")
    assert done.returncode != 0, rest[-3000:]
    failed = report(done)
    assert failed["status"] == "failed, rolled back"
    assert failed["failure"].startswith("monitor: "), failed["failure"]
    assert st.version() == '{"version":"2.0.0-perf"}'
    assert st.rows() == rows


def test_a_terminated_index_build_leaves_an_invalid_index_that_the_next_run_rebuilds(st):
    back = pyinfra("--data", "rollback_mode=full", script="rollback.py")
    assert back.returncode == 0, output(back)[-3000:]
    assert st.objects() == [] and st.version() == '{"version":"1.9.0"}'
    rows = st.rows()
    st.hold("SELECT count(*) FROM metrics")
    try:
        proc = start(*QUICK, "--data", "migrate_lock_timeout=120s")
        pid = st.wait_for("query LIKE 'CREATE INDEX CONCURRENTLY%' AND state = 'active'", 240)
        st.as_postgres(f"SELECT pg_terminate_backend({pid})")
        out, _ = proc.communicate(timeout=300)
    finally:
        st.release()
    assert proc.returncode != 0
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, "")
    assert report(done)["failure"].startswith("migrate: ")
    assert st.version() == '{"version":"1.9.0"}'
    assert "idx_metrics_type_time_covering|i|f" in st.objects()[0]  # INVALID, left behind
    again = pyinfra(*QUICK)
    text = output(again)
    assert again.returncode == 0, text[-3000:]
    assert "dropping INVALID index(es) left by an interrupted build" in text
    assert [o.split("|")[2] for o in st.objects()] == ["t"] * len(OBJECTS)
    assert st.rows() == rows and st.version() == '{"version":"2.0.0-perf"}'


def test_a_full_disk_during_the_build_fails_before_the_switch_and_leaves_nothing(st):
    """A small file system over releases/ for the run (the serving process keeps its files)."""
    rows, app = st.rows(), "/app/monitoring-dashboard-api"
    st.sh(f"mount -t tmpfs -o size=1m fault-small {app}/releases")
    try:
        with Load(st.url(), 50, "30s") as load:
            result = pyinfra(*QUICK, "--data", "app_version=main")
            left = st.sh(f"ls -A {app}/releases")
            traffic = load.result(stop_early=True)
    finally:
        st.sh(f"umount {app}/releases")
    text = output(result)
    assert result.returncode != 0
    assert "no space left on device" in text.lower()
    assert report(result)["failure"].startswith("build: release main-")
    assert left == ""  # not even a .partial folder
    assert traffic.unserved == 0, traffic
    assert st.version() == '{"version":"2.0.0-perf"}' and st.rows() == rows
    again = pyinfra(*QUICK, "--data", "app_version=main")
    assert again.returncode == 0, output(again)[-3000:]
    assert st.sh(f"readlink {app}/current").rsplit("/", 1)[1].startswith("main-")


def test_a_deploy_killed_during_the_build_converges_when_run_again(st):
    rows, app = st.rows(), "/app/monitoring-dashboard-api"
    st.sh(f"rm -rf {app}/releases/v2.0.0-perf-*")  # main-* serves: v2.0.0-perf builds again
    with Load(st.url(), 50, "30s") as load:
        proc = start(*QUICK)
        kill_when(proc, lambda: st.sh("pgrep -f '[g]o build' || true") != "", 240)
        traffic = load.result(stop_early=True)
    assert traffic.unserved == 0, traffic
    assert st.sh(f"readlink {app}/current").rsplit("/", 1)[1].startswith("main-")
    converge(st, rows)
    assert st.sh(f"readlink {app}/current").rsplit("/", 1)[1].startswith("v2.0.0-perf-")
    assert st.sh(f"ls {app}/releases | grep -c partial || true") == "0"


def test_a_switch_killed_once_the_old_slot_drained_converges_and_no_request_fails(st):
    """The kill lands once the new slot takes the traffic and the old one has drained, before
    the old one is stopped and the new one recorded in `slots/active`: the re-run finds the
    slot the proxy sends requests to, whatever `slots/active` says, and stops the other."""
    rows, app = st.rows(), "/app/monitoring-dashboard-api"
    with Load(st.url(), 50, "120s") as load:
        proc = start(*QUICK, "--data", "app_version=main")  # built above: only the switch
        wait_for_line(proc, " drained (", 120)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        assert pyinfra(script="unlock.py").returncode == 0
        again = pyinfra(*QUICK, "--data", "app_version=main")
        traffic = load.result(stop_early=True)
    assert again.returncode == 0, output(again)[-3000:]
    assert traffic.unserved == 0, traffic
    active = st.sh(f"cat {app}/slots/active")
    running = st.sh(
        "systemctl list-units --state=active --plain --no-legend 'monitoring-dashboard@*' "
        "| awk '{print $1}'"
    )
    assert running == f"monitoring-dashboard@{active}.service"
    assert st.sh(f"readlink {app}/current").rsplit("/", 1)[1].startswith("main-")
    assert st.rows() == rows


def test_a_database_that_stalls_for_seconds_makes_no_request_fail(st):
    """PostgreSQL stopped (SIGSTOP) for 3 s under 100 requests/s: the health path, which pings
    the database, cannot answer meanwhile. The local proxy checks its slot on the liveness path
    with a timeout longer than the stall, so it does not declare the only running slot down:
    requests the cache answers go on, the others wait for the database, and none fails."""
    stall = "pkill -STOP -x postgres; sleep 3; pkill -CONT -x postgres"
    since = st.sh("date '+%Y-%m-%d %H:%M:%S'")
    with Load(st.url(), 100, "20s") as load:
        time.sleep(4)
        st.sh(f"trap 'pkill -CONT -x postgres' EXIT; {stall}", host=st.db1)
        traffic = load.result()
    assert traffic.unserved == 0, traffic
    downs = st.sh(
        f"journalctl -u monitoring-dashboard-proxy --since '{since}' --no-pager "
        "| grep -c ' is DOWN' || true"
    )
    assert downs == "0"


# /usr/sbin/haproxy made to fail its configuration check (`-c`) and nothing else: the running
# proxy and everything else on the host see the real binary
FAILING_HAPROXY_CHECK = (
    "mv /usr/sbin/haproxy /usr/sbin/haproxy.real && printf '%s\\n' '#!/bin/sh' "
    '\'for a; do [ "$a" = -c ] && { echo "[ALERT] check made to fail by the test" >&2; '
    "exit 1; }; done' 'exec /usr/sbin/haproxy.real \"$@\"' > /usr/sbin/haproxy "
    "&& chmod 755 /usr/sbin/haproxy"
)


def test_a_proxy_configuration_that_fails_its_check_fails_the_step_and_changes_no_file(st):
    """The deploy changes .env (db_max_idle_conns) and the proxy configuration (the maintenance
    message); the host's `haproxy -c` refuses the new configuration. The deploy fails in the
    release step through the product's failure path, the service answers throughout, .env and
    proxy.cfg are byte for byte what they were, and the next deploy is not refused a lock."""
    files = "/etc/monitoring-dashboard/proxy.cfg /app/monitoring-dashboard-api/.env"
    look = f"sha256sum {files} && stat -c '%n %a %U %G' {files}"
    before, serving = st.sh(look), st.version()
    st.sh(FAILING_HAPROXY_CHECK)
    try:
        with Load(st.url(), 50, "60s") as load:
            result = pyinfra(
                *QUICK,
                "--data",
                "db_max_idle_conns=40",
                "--data",
                "runbook_maintenance_message=back at noon",
            )
            traffic = load.result(stop_early=True)
    finally:
        st.sh("mv -f /usr/sbin/haproxy.real /usr/sbin/haproxy")
    text = output(result)
    assert result.returncode != 0
    assert "--> DEPLOY FAILED on app1 in release" in text
    assert "Ensure the proxy configuration /etc/monitoring-dashboard/proxy.cfg" in text
    assert "[ALERT] check made to fail by the test" in text
    assert "put back:    /app/monitoring-dashboard-api/.env" in text
    assert report(result)["failure"].startswith("release: operation 'Ensure the proxy")
    assert traffic.unserved == 0, traffic
    assert st.sh(look) == before
    assert st.sh("ls -A /etc/monitoring-dashboard") == "drain.map\nproxy.cfg"  # no candidate
    assert st.version() == serving
    after = pyinfra(*QUICK, "--data", "lock_wait=0")
    assert after.returncode == 0, output(after)[-3000:]
    assert "REFUSED" not in output(after)
