"""The failure paths of the database work, on an in-memory host: the deploy guard told to stop
(tasks/guard.py), and a full rollback whose down script fails (tasks/rollback.py)."""

from __future__ import annotations

import pytest
from fake_remote import FakeRemote

from tasks import guard, lock, rollback
from tasks.config import validate
from tasks.context import Run, RunContext
from tasks.method import method_for
from tasks.remote import DeployError

BASE = {"deploy_env": "t", "app_repo_url": "git://h/r.git", "db_host": "db1"}
GUARD = {"deploy_guard_p99_ms": 10, "deploy_guard_over_baseline": 0}
OVER = "guard: over p99=42.0 requests=480 waited=3 before the backup (pg_dump)\n"


def settings(**more):
    s, problems = validate({**BASE, **more}, {"DB_PASSWORD": "x"})
    assert problems == []
    return s


def gate(host: FakeRemote, **more) -> guard.Gate:
    s = settings(**{**GUARD, **more})
    return guard.Gate(Run(host="app1", env="t"), host, s, method_for(s))


def test_a_guard_told_to_stop_stops_before_the_step_and_says_why():
    host = FakeRemote("app1").answer(r"show events access", (True, "f\n", OVER))
    g = gate(host, deploy_guard_on_timeout="stop", deploy_guard_max_wait="3s")
    with pytest.raises(DeployError) as exc:
        g.wait("the backup (pg_dump)")
    assert str(exc.value).startswith(
        "stopped before the backup (pg_dump): the serving release's p99 stayed over 10 ms for 3s"
    )
    assert g.run.facts["guard"] == [
        {"before": "the backup (pg_dump)", "state": "over", "p99_ms": "42.0", "waited_s": 3}
    ]


def test_a_guard_told_to_continue_lets_the_step_run_and_keeps_the_wait():
    host = FakeRemote("app1").answer(r"show events access", (True, "t\n", OVER))
    g = gate(host, deploy_guard_on_timeout="continue")
    g.wait("the backup (pg_dump)")
    assert [w["state"] for w in g.run.facts["guard"]] == ["over"]
    assert any("still over: deploy_guard_on_timeout decides" in line for line in host.said)


def test_a_guard_that_is_off_asks_nothing_of_the_host():
    host = FakeRemote("app1")
    gate(host, deploy_guard_p99_ms=0).wait("the backup (pg_dump)")
    assert host.commands == []


def test_a_down_script_that_fails_stops_the_rollback_before_the_switch(monkeypatch, capsys):
    host = FakeRemote("app1")
    host.answer(r"SELECT version, name, down_sql", (True, "006|drop_host|t\n005|hostname|t\n"))
    host.answer(r"revert_006\.sql' -c|-f .*revert_006", (False, "", "ERROR: column missing"))
    monkeypatch.setattr(lock, "app_hosts", lambda: [host])
    s = settings(rollback_mode="full")
    ctx = RunContext("rollback", [])
    ctx.lock_holder = "ops@laptop pid 1 run 1"
    target = rollback.Target(
        "/state/manifests/1.json",
        {},
        "/app/releases/v2.0.0-a",
        "/app/releases/v2.1.0-b",
        True,
        {"001", "002", "003"},
    )
    assert rollback._revert_contract(None, host, ctx, s, target) is False
    err = capsys.readouterr().err
    assert "--> ROLLBACK FAILED on app1 in database" in err
    assert "reverting 006 failed on app1: ERROR: column missing" in err
    assert "`current` is /app/releases/v2.1.0-b; nothing after this step was done" in err
    assert host.ran(r"revert_005") == [] and target.reverted == []  # 005 never touched
    assert host.ran(r"DELETE FROM deploy_lock") and ctx.lock_holder == ""
