"""Rollback on the lab: full (with restore), automatic, the lock; then quick with --limit on
the production-shaped lab."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from pyinfra_runs import OBJECTS, QUICK, REPO, lab_settings, output, pyinfra, report, start

from lab import core
from lab.topology import topology
from tasks.commands import postgres

DAY = timedelta(days=1)


def sh(host, command: str) -> str:
    return core.ssh(host, command).stdout.decode().strip()


def version(host) -> str:
    return sh(host, "curl -s -m 5 localhost:8080/api/v1/version")


@pytest.fixture(scope="module")
def staging(lab):
    """Fresh lab staging where v1.9.0 runs without Redis (as the team's staging did before the
    checklist), then the checklist's v2.0.0-perf deployed over it (neither runs the load test
    or the monitoring window: test_deploy.py's deploys do)."""
    core.reset("staging", echo=lambda _m: None)
    app1 = topology("staging")[0]
    settings = lab_settings()
    first = pyinfra("--data", "app_version=v1.9.0", *QUICK)
    assert first.returncode == 0, output(first)[-3000:]
    sh(app1, "docker rm -f redis-cache")
    upgrade = pyinfra(*QUICK)
    assert upgrade.returncode == 0, output(upgrade)[-3000:]
    return app1, settings, report(upgrade)


def full_rollback_with_restore():
    return pyinfra(
        "--data",
        "rollback_mode=full",
        "--data",
        "rollback_restore_backup=yes",
        script="rollback.py",
    )


def psql(app1, s, sql: str) -> str:
    return sh(app1, postgres.psql(s, sql))


def test_a_restore_drill_restores_the_newest_dump_into_a_scratch_cluster(staging):
    app1, s, upgrade = staging
    backup = upgrade["facts"]["backup"]
    result = pyinfra("--data", "runbook=restore-drill", script="runbook.py")
    text = output(result)
    assert result.returncode == 0, text[-3000:]
    assert f"drill to latest from {backup['path']}: PASSED" in text
    assert f"metrics rows: {backup['metrics_rows']}" in text
    assert "(matches the live database)" in text
    # the scratch cluster is stopped and gone; app1 runs no PostgreSQL of its own
    assert (
        sh(app1, "ls /var/lib/mdd-drill 2>/dev/null; pgrep -u postgres -x postgres || true") == ""
    )


def test_full_rollback_reverts_migrations_removes_the_container_and_restores(staging):
    app1, s, upgrade = staging
    backup = upgrade["facts"]["backup"]
    assert upgrade["facts"]["migrations"]["applied"] == ["003"]
    psql(
        app1,
        s,
        "INSERT INTO metrics (type, host, value) SELECT 'cpu', 'late', 1 "
        "FROM generate_series(1, 7)",
    )
    result = full_rollback_with_restore()
    text = output(result)
    assert result.returncode == 0, text[-3000:]
    assert "7 row(s) written since the backup will be lost" in text
    assert psql(app1, s, postgres.objects_state_sql(OBJECTS)) == ""
    reverted = psql(
        app1,
        s,
        f"SELECT reverted_at IS NOT NULL FROM {postgres.HISTORY_TABLE} WHERE version = '003'",
    )
    assert reverted == "t"
    assert sh(app1, "docker ps -a --format '{{.Names}}'") == ""
    assert version(app1) == '{"version":"1.9.0"}'
    rows, _, md5 = psql(app1, s, postgres.table_fingerprint_sql()).split("|")
    assert (int(rows), md5) == (backup["metrics_rows"], backup["metrics_md5"])


def test_a_second_rollback_changes_nothing(staging):
    app1, s, _ = staging
    before = sh(app1, "wc -l < /var/lib/monitoring-dashboard-deploy/deployments.jsonl")
    result = full_rollback_with_restore()
    text = output(result)
    assert result.returncode == 0, text[-3000:]
    assert "no migration to revert" in text
    assert "metrics already matches the backup: nothing to restore" in text
    assert "already rolled back" in text
    assert sh(app1, "wc -l < /var/lib/monitoring-dashboard-deploy/deployments.jsonl") == before


def test_a_broken_release_never_takes_over(staging):
    app1, _, _ = staging
    good = pyinfra(*QUICK)
    assert good.returncode == 0, output(good)[-3000:]
    result = pyinfra("--data", "app_version=v2.0.1-broken")
    assert result.returncode != 0
    failed = report(result)
    assert failed["status"] == "failed"
    assert failed["failure"].startswith("release: the new instance (slot ")
    failing = [m["metric"] for m in failed["success_metrics"] if not m["pass"]]
    assert failing == ["health check before traffic"]
    assert failed["rolled_back"] == []
    assert failed["not_rolled_back"] == [
        f"release: {failed['release']} never took a request, {failed['previous_release']} "
        "kept serving"
    ]
    assert version(app1) == '{"version":"2.0.0-perf"}'


def test_a_broken_release_rolls_back_by_itself_with_the_restart_strategy(staging):
    app1, _, _ = staging
    strategy = ("--data", "release_strategy=restart")
    good = pyinfra(*strategy, *QUICK)
    assert good.returncode == 0, output(good)[-3000:]
    result = pyinfra("--data", "app_version=v2.0.1-broken", *strategy)
    assert result.returncode != 0
    failed = report(result)
    assert failed["status"] == "failed, rolled back"
    assert failed["failure"].startswith("release: the health check failed")
    failing = [m["metric"] for m in failed["success_metrics"] if not m["pass"]]
    assert failing == ["health check after restart"]
    assert failed["rolled_back"] == [
        f"release: {failed['release']} -> {failed['previous_release']}"
    ]
    assert version(app1) == '{"version":"2.0.0-perf"}'
    assert "rolled back: release:" in output(result)
    # the single unit of `restart` is as hardened as the slots (the server suite's score)
    suite = [sys.executable, "-m", "pytest", "-q", "tests/servers", "-k", "scores_at_most_2"]
    env = {**os.environ, "MDD_INVENTORY": "inventories/lab.py"}
    env["MDD_DATA"] = "release_strategy=restart"
    scored = subprocess.run(suite, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert scored.returncode == 0 and "1 passed" in scored.stdout, scored.stdout[-2000:]
    back = pyinfra(*QUICK)
    assert back.returncode == 0, output(back)[-3000:]


def test_a_crossed_load_test_threshold_fails_the_deploy_and_rolls_back(staging):
    app1, _, _ = staging
    result = pyinfra("--data", "app_version=v1.9.0", "--data", "loadtest_step_p95_ms=1")
    assert result.returncode != 0
    failed = report(result)
    assert failed["failure"].startswith("loadtest: k6 ")
    assert "k6 step p95" in [m["metric"] for m in failed["success_metrics"] if not m["pass"]]
    assert failed["status"] == "failed, rolled back"
    assert version(app1) == '{"version":"2.0.0-perf"}'


def test_a_concurrent_deploy_or_rollback_is_refused_and_a_queued_one_waits(staging):
    app1, s, _ = staging
    # the monitoring window holds the lock while the others are tried
    first = start(
        "--data",
        "redis_cache_ttl=61s",
        "--data",
        "loadtest_enabled=false",
        "--data",
        "monitor_duration=20",
    )
    try:
        deadline = time.monotonic() + 120
        while "lab" not in psql(app1, s, "SELECT env FROM deploy_lock"):
            assert time.monotonic() < deadline and first.poll() is None, "lock never taken"
            time.sleep(0.5)
        began = time.monotonic()
        second = pyinfra()
        assert second.returncode != 0
        text = output(second)
        assert "REFUSED: the deploy lock for lab is held by" in text
        assert "alive (heartbeat" in text and "--data lock_wait=SECONDS" in text
        assert time.monotonic() - began < 60
        rollback = pyinfra(script="rollback.py")
        assert rollback.returncode != 0
        assert "REFUSED: the deploy lock for lab is held by" in output(rollback)
        assert version(app1) == '{"version":"2.0.0-perf"}'
        queued = start("--data", "lock_wait=300", "--data", "redis_cache_ttl=60s", *QUICK)
    finally:
        out, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out[-3000:]
    text, _ = queued.communicate(timeout=600)
    assert queued.returncode == 0, text[-3000:]
    assert "waiting up to 300s: the deploy lock is held by" in text
    assert "deploy lock for lab taken after waiting" in text
    assert psql(app1, s, "SELECT count(*) FROM deploy_lock") == "0"


def test_a_lock_left_by_a_killed_run_is_stale_and_broken_only_by_unlock(staging):
    app1, s, _ = staging
    psql(
        app1,
        s,
        "INSERT INTO deploy_lock (env, holder, command, since, heartbeat) VALUES ('lab', "
        "'someone@elsewhere pid 1 run x', 'pyinfra deploy.py', now() - interval '2 hours', "
        "now() - interval '10 minutes')",
    )
    refused = pyinfra("--data", "lock_wait=300")
    text = output(refused)
    assert refused.returncode != 0
    assert "held by someone@elsewhere pid 1 run x" in text
    assert "STALE: no heartbeat for 6" in text  # 600 s and a little more
    assert "break the lock with: pyinfra -y inventories/lab.py unlock.py" in text
    assert "waiting" not in text  # a stale lock is never waited for
    unlocked = pyinfra(script="unlock.py")
    assert unlocked.returncode == 0
    assert "released the deploy lock of lab held by someone@elsewhere" in output(unlocked)
    record = sh(app1, "tail -n 1 /var/lib/monitoring-dashboard-deploy/deployments.jsonl")
    assert '"status": "lock broken"' in record and "someone@elsewhere" in record
    assert pyinfra(*QUICK).returncode == 0


@pytest.fixture(scope="module")
def production(lab):
    core.reset("production", echo=lambda _m: None)
    return {h.name: h for h in topology("production") if h.is_app}


def test_nothing_to_roll_back_to_is_a_clear_error_that_changes_nothing(production):
    first = pyinfra(
        "--data", "app_version=v1.9.0", *QUICK, inventory="inventories/lab_production.py"
    )
    assert first.returncode == 0, output(first)[-3000:]
    before = {
        name: sh(h, "readlink /app/monitoring-dashboard-api/current")
        for name, h in production.items()
    }
    result = pyinfra(script="rollback.py", inventory="inventories/lab_production.py")
    assert result.returncode != 0
    assert "nothing to roll back to: the last deploy (v1.9.0) was the first on this host" in output(
        result
    )
    assert {
        name: sh(h, "readlink /app/monitoring-dashboard-api/current")
        for name, h in production.items()
    } == before


def test_quick_rollback_of_one_production_host(production):
    """Inside a freeze a deploy is refused before any change; a rollback runs."""
    today = datetime.now(UTC).date()  # the freeze holds whichever day the runs start on
    freeze = ("--data", f"deploy_freeze={today - DAY}..{today + DAY} launch week")
    current = "readlink /app/monitoring-dashboard-api/current"
    before = {name: sh(h, current) for name, h in production.items()}
    frozen = pyinfra(*QUICK, *freeze, inventory="inventories/lab_production.py")
    text = output(frozen)
    assert frozen.returncode != 0
    assert f"inside the deploy freeze '{today - DAY}..{today + DAY} launch week'" in text
    assert f"the next window opens: {(today + 2 * DAY).strftime('%a %Y-%m-%d')} 00:00" in text
    assert "deploy window: " in report(frozen)["failure"]
    assert {name: sh(h, current) for name, h in production.items()} == before
    assert {version(h) for h in production.values()} == {'{"version":"1.9.0"}'}
    upgrade = pyinfra(*QUICK, inventory="inventories/lab_production.py")
    assert upgrade.returncode == 0, output(upgrade)[-3000:]
    assert {version(h) for h in production.values()} == {'{"version":"2.0.0-perf"}'}
    result = pyinfra(
        "--limit", "app1", *freeze, script="rollback.py", inventory="inventories/lab_production.py"
    )
    assert result.returncode == 0, output(result)[-3000:]
    assert version(production["app1"]) == '{"version":"1.9.0"}'
    assert version(production["app2"]) == '{"version":"2.0.0-perf"}'
    assert version(production["app3"]) == '{"version":"2.0.0-perf"}'
    record = sh(
        production["app1"], "tail -n 1 /var/lib/monitoring-dashboard-deploy/deployments.jsonl"
    )
    assert '"status": "rolled back"' in record and '"mode": "quick"' in record


def test_quick_rollback_can_turn_redis_off(production):
    result = pyinfra(
        "--limit",
        "app2",
        "--data",
        "rollback_disable_redis=true",
        script="rollback.py",
        inventory="inventories/lab_production.py",
    )
    assert result.returncode == 0, output(result)[-3000:]
    app2 = production["app2"]
    assert version(app2) == '{"version":"1.9.0"}'
    assert (
        sh(app2, "grep REDIS_ENABLED /app/monitoring-dashboard-api/.env") == "REDIS_ENABLED=false"
    )


PRODUCTION = "inventories/lab_production.py"


def schema(app) -> tuple[str, str]:
    """(objects of migration 003 present, versions applied and not reverted)."""
    s = lab_settings("production")
    objects = sh(app, postgres.psql(s, postgres.objects_state_sql(OBJECTS)))
    applied = sh(
        app,
        postgres.psql(
            s,
            f"SELECT string_agg(version, ',' ORDER BY version) FROM {postgres.HISTORY_TABLE} "
            "WHERE reverted_at IS NULL",
        ),
    )
    return objects, applied


def test_a_full_rollback_of_one_host_is_refused_while_others_need_the_schema(production):
    app1 = production["app1"]
    before = schema(app1)
    assert before[1] == "001,002,003"
    result = pyinfra(
        "--limit",
        "app1",
        "--data",
        "rollback_mode=full",
        script="rollback.py",
        inventory=PRODUCTION,
    )
    text = output(result)
    assert result.returncode != 0
    assert "full rollback refused: it would revert migration(s) 003" in text
    assert "app3 runs v2.0.0-perf-" in text and "(needs 003)" in text
    assert "app2" not in text.split("still need them:")[1].split("\n")[0]  # runs v1.9.0
    assert "Nothing was changed." in text
    assert schema(app1) == before
    assert version(production["app3"]) == '{"version":"2.0.0-perf"}'


def test_a_full_rollback_reverts_every_migration_the_old_release_lacks(production):
    """The history the issue met: the last deploy applied no migration (003 came with an
    earlier one); the full rollback still brings the schema back to v1.9.0's."""
    again = pyinfra("--data", "app_version=v2.0.0-perf", *QUICK, inventory=PRODUCTION)
    assert again.returncode == 0, output(again)[-3000:]
    assert report(again)["facts"]["migrations"]["applied"] == []
    result = pyinfra("--data", "rollback_mode=full", script="rollback.py", inventory=PRODUCTION)
    assert result.returncode == 0, output(result)[-3000:]
    assert "reverting migration 003_covering_indexes_optimization" in output(result)
    assert {version(h) for h in production.values()} == {'{"version":"1.9.0"}'}
    assert schema(production["app1"]) == ("", "001,002")


def test_rollback_to_goes_to_a_named_release_and_never_migrates_forward(production):
    for ref in ("v2.0.0-perf", "main"):  # main is v2.0.0-perf's commit, in its own folder
        deployed = pyinfra("--data", f"app_version={ref}", *QUICK, inventory=PRODUCTION)
        assert deployed.returncode == 0, output(deployed)[-3000:]
    assert schema(production["app1"])[1] == "001,002,003"
    result = pyinfra(
        "--data",
        "rollback_to=v1.9.0",
        "--data",
        "rollback_mode=full",
        script="rollback.py",
        inventory=PRODUCTION,
    )
    assert result.returncode == 0, output(result)[-3000:]
    assert {version(h) for h in production.values()} == {'{"version":"1.9.0"}'}
    assert schema(production["app1"]) == ("", "001,002")
    forward = pyinfra("--data", "rollback_to=main", script="rollback.py", inventory=PRODUCTION)
    assert forward.returncode != 0
    assert "needs migration(s) 003, which the database does not have" in output(forward)
    assert {version(h) for h in production.values()} == {'{"version":"1.9.0"}'}
