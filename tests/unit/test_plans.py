"""Plan and apply (tasks/plans.py) as pure functions: the id depends on what the plan says and
not when it was made, each kind of difference is named, the lint verdict per migration, the
summary a reviewer reads, and pre-flight's refusal of a plan that differs."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from fake_remote import FakeRemote

from tasks import plans, preflight
from tasks.config import validate
from tasks.context import Plan, Run
from tasks.migrations import Migration

S, _ = validate(
    {"deploy_env": "prod", "app_repo_url": "git://h/r.git", "db_host": "db1"}, {"DB_PASSWORD": "x"}
)
PLAN = Plan(
    ref="v2",
    commit="c" * 40,
    release="v2-cccccccccccc",
    release_dir="/app/releases/v2-cccccccccccc",
    previous_dir="/app/releases/v1-bbbbbbbbbbbb",
    previous_version="v1-bbbbbbbbbbbb",
    is_migration_host=True,
    release_changes=True,
)
M4 = Migration("004", "add_x", "ALTER TABLE metrics ADD COLUMN x int;")
M5 = Migration("005", "drop_y", "ALTER TABLE metrics DROP COLUMN y;")
LINTED = {
    "mode": "error",
    "findings": [
        {"file": "005_drop_y.sql", "rule": "ban-drop-column", "refused": True},
        {"file": "004_add_x.sql", "rule": "prefer-bigint-over-int", "refused": False},
    ],
}


def document(tmp_path, **changes) -> dict:
    s = replace(S, artifact_dir=str(tmp_path / "artifacts"), **changes)
    doc = {
        **plans.run_entry(s, PLAN, ["app1", "app2", "app3"]),
        **plans.database_entry(s, PLAN, [M4, M5], LINTED),
        "hosts_detail": {"app1": plans.host_entry(PLAN)},
        "made": "2026-12-05T10:00:00Z",
    }
    doc["id"] = plans.plan_id(doc)
    return doc


def test_the_plan_says_the_batches_the_backup_and_each_migration_s_checksum_and_verdict(tmp_path):
    doc = document(tmp_path, rollout_canary=1, rollout_batch="1")
    assert doc["batches"] == [["app1"], ["app2"], ["app3"]]
    assert doc["backup"] == "pg_dump" and doc["artifact"] == "built by the deploy"
    assert doc["migrations"] == [
        {
            "file": "004_add_x.sql",
            "checksum": M4.checksum,
            "lint": "warnings: prefer-bigint-over-int",
        },
        {"file": "005_drop_y.sql", "checksum": M5.checksum, "lint": "refused: ban-drop-column"},
    ]
    text = plans.summary(doc)
    assert f"## Deploy plan `{doc['id']}` for prod" in text
    assert "| 005_drop_y.sql | `" + M5.checksum[:16] + "` | refused: ban-drop-column |" in text
    assert "| app1 | v1-bbbbbbbbbbbb | True |" in text


def test_the_id_follows_the_content_not_the_time(tmp_path):
    doc = document(tmp_path)
    later = {**doc, "made": "2027-01-01T00:00:00Z"}
    assert plans.plan_id(later) == doc["id"]
    assert plans.plan_id({**doc, "commit": "d" * 40}) != doc["id"]


def test_each_kind_of_difference_is_named(tmp_path):
    approved = document(tmp_path)
    m4_changed = {"file": "004_add_x.sql", "checksum": "0" * 64, "lint": "passes"}
    live = {
        "commit": "d" * 40,
        "hosts": ["app1", "app2", "app3", "app4"],
        "migrations": [
            m4_changed,
            {"file": "006_new.sql", "checksum": "1" * 64, "lint": "passes"},
        ],
        "hosts_detail": {"app1": {"serving": "v0-aaaaaaaaaaaa", "release_changes": True}},
        "backup": approved["backup"],
    }
    lines = plans.differences(approved, live)
    assert f"commit: planned {'c' * 40}, now {'d' * 40}" in lines
    assert "hosts: added ['app4'], removed none" in lines
    assert any(line.startswith("migration 004_add_x.sql: planned ") for line in lines)
    assert "migration 005_drop_y.sql: planned, no longer pending" in lines
    assert "migration 006_new.sql: new since the plan (passes)" in lines
    assert any(line.startswith("host app1: planned {'serving': 'v1-") for line in lines)
    assert len(lines) == 6  # the backup is the same: not named
    assert plans.differences(approved, {k: approved[k] for k in ("commit", "backup")}) == []


@pytest.mark.parametrize("same", [True, False])
def test_pre_flight_refuses_a_plan_that_differs_and_records_the_one_applied(
    tmp_path, monkeypatch, same
):
    monkeypatch.chdir(tmp_path)
    s = replace(S, artifact_dir=str(tmp_path / "artifacts"))
    doc = document(tmp_path)
    doc["hosts"] = ["app1"]
    doc["batches"] = [["app1"]]
    doc["id"] = plans.plan_id(doc)
    plans.write(plans.PLAN_DIR, doc)
    assert (tmp_path / "plans" / "prod.id").read_text().strip() == doc["id"]
    run = Run("app1", "prod")
    run.pending = [M4, M5] if same else [M4]
    run.facts["lint"] = LINTED
    monkeypatch.setattr(preflight, "app_hosts", lambda: [FakeRemote("app1")])
    problems, facts = preflight._approved(
        run, FakeRemote("app1"), replace(s, deploy_plan=doc["id"]), PLAN
    )
    if same:
        assert problems == [] and facts == {"deploy_plan": doc["id"]}
    else:
        assert (
            len(problems) == 1
            and "migration 005_drop_y.sql: planned, no longer pending" in problems[0]
        )
        assert facts == {}
    missing = preflight._approved(run, FakeRemote("app1"), replace(s, deploy_plan="nope"), PLAN)
    assert "deploy_plan nope: cannot read plans/prod-nope.json" in missing[0][0]
    assert (
        json.loads((tmp_path / "plans" / f"prod-{doc['id']}.json").read_text())["id"] == doc["id"]
    )
