"""Schema changes the serving release survives, on the lab's production fleet behind lb1: a
migration that would break the serving release is refused before any change, and a contract
migration runs only once every host serves the new release. Judged from outside: the hosts'
serving processes, the database's columns and history, k6's own counts."""

from __future__ import annotations

import signal
import time

import pytest
from pyinfra_cli import (
    QUICK,
    lab_settings,
    output,
    pushed_release,
    pyinfra,
    report,
    start,
    under_load,
    wait_for_line,
)
from test_fleet import APPS, INVENTORY, fleet_serving, hosts, serving_pid, sh, versions

from tasks import commands

MIGRATIONS = "internal/infrastructure/persistence/postgres/migrations"
EXPAND = {
    f"{MIGRATIONS}/004_add_site.sql": "ALTER TABLE metrics ADD COLUMN IF NOT EXISTS site text;\n",
    f"{MIGRATIONS}/004_add_site.down.sql": "ALTER TABLE metrics DROP COLUMN IF EXISTS site;\n",
}
CONTRACT = {
    f"{MIGRATIONS}/005_drop_site.sql": (
        "-- the collectors stopped writing site\n-- deploy: contract\n"
        "ALTER TABLE metrics DROP COLUMN IF EXISTS site;\n"
    ),
    f"{MIGRATIONS}/005_drop_site.down.sql": (
        "ALTER TABLE metrics ADD COLUMN IF NOT EXISTS site text;\n"
    ),
}
BROKEN = {  # v2.0.1-broken's health query: every canary fails its health gate
    "cmd/monitoring-dashboard-api/release.go": (
        'package main\n\nconst (\n\tVersion = "2.0.1-broken"\n\tcacheSupported = true\n'
        '\thealthQuery = "SELECT 1 FROM metrics_v2 LIMIT 1"\n)\n'
    ),
}


def db(sql: str) -> str:
    """SQL's answer, read on app1 with the deploy's own credentials file."""
    return sh("app1", commands.psql(lab_settings("production"), sql))


def history() -> list[str]:
    """`version|phase` of every applied migration (not reverted)."""
    return db(
        "SELECT version || '|' || coalesce(to_jsonb(m)->>'phase', 'expand') FROM "
        "schema_migrations m WHERE reverted_at IS NULL ORDER BY version"
    ).split()


def columns() -> list[str]:
    return db(
        "SELECT string_agg(column_name, ',' ORDER BY column_name) FROM "
        "information_schema.columns WHERE table_name = 'metrics'"
    ).split(",")


def backups() -> str:
    return sh("app1", "ls -1 /var/backups/monitoring-dashboard/ 2>/dev/null || true")


@pytest.fixture(scope="module")
def fleet(lab):
    """lab production: three app hosts behind lb1, all serving v2.0.0-perf, schema 003."""
    fleet_serving("v2.0.0-perf", "2.0.0-perf")
    assert [h.split("|")[0] for h in history()] == ["001", "002", "003"]


def test_a_migration_that_drops_a_column_in_use_is_refused_before_any_change(fleet):
    pids, applied, kept = {n: serving_pid(n) for n in APPS}, history(), backups()
    drop = {f"{MIGRATIONS}/004_drop_host.sql": "ALTER TABLE metrics DROP COLUMN host CASCADE;\n"}
    with pushed_release("schema-drop-host", "v2.0.0-perf", drop) as branch:
        result = pyinfra("--data", f"app_version={branch}", *QUICK, inventory=INVENTORY)
    text = output(result)
    assert result.returncode != 0
    assert "004_drop_host.sql:1: ban-drop-column" in text
    assert "DROP COLUMN host CASCADE" in text and "-- deploy: contract" in text
    assert {n: serving_pid(n) for n in APPS} == pids
    assert history() == applied and backups() == kept
    assert "host" in columns()


def test_a_failed_rollout_never_runs_the_contract(fleet):
    pids = {n: serving_pid(n) for n in APPS[1:]}
    with pushed_release("schema-broken", "v2.0.0-perf", {**EXPAND, **CONTRACT, **BROKEN}) as b:
        result = pyinfra("--data", f"app_version={b}", *QUICK, inventory=INVENTORY)
    text = output(result)
    assert result.returncode != 0
    assert "held back until every app host serves" in text
    assert history()[-1] == "004|expand"  # the expand ran, the contract did not
    assert "site" in columns()
    assert versions() == dict.fromkeys(APPS, "2.0.0-perf")
    assert {n: serving_pid(n) for n in APPS[1:]} == pids


def test_the_contract_runs_after_the_rollout_and_the_rollbacks_respect_it(fleet):
    lb1 = f"http://{hosts()['lb1'].address}:80"
    with pushed_release("schema-contract", "v2.0.0-perf", {**EXPAND, **CONTRACT}) as branch:
        dry = pyinfra("--dry", "--data", f"app_version={branch}", inventory=INVENTORY)
        assert dry.returncode == 0, output(dry)[-3000:]
        assert "005_drop_site creates no index or view (runs after every app host" in output(dry)
        result, traffic = under_load(
            lb1, "--data", f"app_version={branch}", window=90, inventory=INVENTORY
        )
        text = output(result)
        assert result.returncode == 0, text[-3000:]
        assert traffic.failed == 0 and traffic.dropped == 0, traffic
        assert text.index("batch 3/3") < text.index("applying 1 contract migration(s): 005")
        assert report(result, "app1")["facts"]["migrations"]["contract_applied"] == ["005"]
        assert history()[-2:] == ["004|expand", "005|contract"]
        assert "site" not in columns()

        pids = {n: serving_pid(n) for n in APPS}
        quick = pyinfra(script="rollback.py", inventory=INVENTORY)
        assert quick.returncode != 0
        assert "quick rollback refused: contract migration(s) 005_drop_site" in output(quick)
        assert "rollback_mode=full" in output(quick)
        assert {n: serving_pid(n) for n in APPS} == pids and "site" not in columns()

        full, traffic = under_load(
            lb1,
            "--data",
            "rollback_mode=full",
            window=90,
            script="rollback.py",
            inventory=INVENTORY,
        )
    text = output(full)
    assert full.returncode == 0, text[-3000:]
    assert traffic.failed == 0 and traffic.dropped == 0, traffic
    contract, expand = (
        text.index("reverting migration 005_drop_site (contract"),
        text.index("reverting migration 004_add_site (expand"),
    )
    assert contract < text.index("serves (blue/green, no failed request)") < expand
    assert [h.split("|")[0] for h in history()] == ["001", "002", "003"]
    assert "site" not in columns() and "host" in columns()
    assert versions() == dict.fromkeys(APPS, "2.0.0-perf")


RENAME = {  # let through the lint by a reviewed exception, yet v2.0.0-perf reads `host`
    f"{MIGRATIONS}/004_rename_host.sql": (
        "-- squawk-ignore renaming-column\nALTER TABLE metrics RENAME COLUMN host TO hostname;\n"
    ),
    f"{MIGRATIONS}/004_rename_host.down.sql": (
        "ALTER TABLE metrics RENAME COLUMN hostname TO host;\n"
    ),
}


def uncached_history(name: str) -> str:
    """The status of a history query on NAME that no cache has answered before."""
    url = (
        f"localhost:8080/api/v1/metrics/history?type=cpu&duration={time.time_ns() % 80000 + 3600}s"
    )
    return sh(name, f"curl -s -m 5 -o /dev/null -w '%{{http_code}}' '{url}'")


def test_an_expand_the_serving_release_cannot_read_is_reverted_before_any_switch(fleet):
    pids = {n: serving_pid(n) for n in APPS}
    with pushed_release("schema-rename", "v2.0.0-perf", RENAME) as branch:
        result = pyinfra("--data", f"app_version={branch}", *QUICK, inventory=INVENTORY)
    text = output(result)
    assert result.returncode != 0
    assert "the serving release no longer answers after 004_rename_host.sql" in text
    assert "Reverted with their down scripts: 004_rename_host.sql" in text
    assert "host" in columns() and "hostname" not in columns()
    assert [h.split("|")[0] for h in history()] == ["001", "002", "003"]
    assert {n: serving_pid(n) for n in APPS} == pids
    assert versions() == dict.fromkeys(APPS, "2.0.0-perf")
    assert {n: uncached_history(n) for n in APPS} == dict.fromkeys(APPS, "200")


TOUCH = {  # every row counts the times a backfill batch changed it
    f"{MIGRATIONS}/004_touch.sql": (
        "ALTER TABLE metrics ADD COLUMN IF NOT EXISTS touched int NOT NULL DEFAULT 0;\n"
    ),
    f"{MIGRATIONS}/004_touch.down.sql": "ALTER TABLE metrics DROP COLUMN IF EXISTS touched;\n",
    f"{MIGRATIONS}/004_touch.backfill.sql": (
        "-- deploy: backfill metrics.id\n"
        "UPDATE metrics SET touched = touched + 1 WHERE id >= :lo AND id < :hi\n"
    ),
}


def touched() -> dict[str, int]:
    counts = db(
        "SELECT count(*) FILTER (WHERE touched = 0) || '|' || count(*) FILTER (WHERE touched = 1)"
        " || '|' || count(*) FILTER (WHERE touched > 1) FROM metrics"
    )
    return dict(zip(("never", "once", "more"), map(int, counts.split("|")), strict=True))


def test_a_backfill_killed_in_the_middle_resumes_and_changes_every_row_once(fleet):
    with pushed_release("schema-touch", "v2.0.0-perf", TOUCH) as branch:
        args = ("--data", f"app_version={branch}", *QUICK, "--limit", "app1")
        proc = start(*args, inventory=INVENTORY)
        try:
            wait_for_line(proc, "backfill 004: id ", timeout=300)  # its first progress line
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        assert pyinfra(script="unlock.py", inventory=INVENTORY).returncode == 0
        killed = touched()
        assert killed["once"] > 0 and killed["never"] > 0 and killed["more"] == 0, killed

        again = pyinfra(*args, inventory=INVENTORY)
        text = output(again)
        assert again.returncode == 0, text[-3000:]
        assert "resuming after" in text
        assert touched() == {"never": 0, "once": sum(killed.values()), "more": 0}
        facts = report(again)["facts"]["migrations"]
        assert facts["backfilled_rows"] == {"004": sum(killed.values())}

    back = pyinfra(
        "--data", "rollback_mode=full", "--limit", "app1", script="rollback.py", inventory=INVENTORY
    )
    assert back.returncode == 0, output(back)[-3000:]
    assert "touched" not in columns()
    assert db("SELECT count(*) FROM schema_backfills") == "0"
