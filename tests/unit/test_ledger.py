"""The release ledger's verdicts and the rollback's choice of target, from deployment records
as the hosts write them (tasks/ledger.py), and the one command that reads a host's state."""

from __future__ import annotations

import json
import subprocess

from tasks import ledger, releases
from tasks.config import validate

R = "/app/monitoring-dashboard-api/releases"


def deploy(release: str, status: str = "success", failure: str | None = None, **more) -> dict:
    return {
        "status": status,
        "deployed_by": "ops@laptop",
        "completed": more.pop("completed", "2026-11-29T10:00:00Z"),
        "release": release,
        "commit": "5ad8973f1f1819012a079412d5edc5fe0e3ee665",
        "failure": failure,
        "rolled_back": more.pop("rolled_back", []),
        **more,
    }


def rollback(source: str, target: str) -> dict:
    return {
        "status": "rolled back",
        "by": "ops@laptop",
        "completed": "2026-11-29T11:00:00Z",
        "from_release": f"{R}/{source}",
        "to_release": f"{R}/{target}",
    }


def test_each_release_gets_its_last_judgement():
    records = [
        deploy("v1"),
        deploy("v2"),
        rollback("v2", "v1"),
        deploy("v3", "failed, rolled back", "verify: p95 800 ms", rolled_back=["release: v3"]),
        deploy("v4", "failed", "build: go build failed"),  # never tried: judges nothing
        deploy("v5", "failed", "monitor: error rate 2%"),  # auto_rollback off: still bad
        {"status": "runbook", "runbook": "redis-disable", "by": "ops"},
        {"status": "lock broken", "by": "ops"},
    ]
    found = {r: v.verdict for r, v in ledger.verdicts(records).items()}
    assert found == {
        "v1": "served",
        "v2": "rolled back",
        "v3": "failed health",
        "v5": "failed health",
    }


def test_a_bad_release_deployed_again_successfully_is_served_again():
    records = [deploy("v1"), deploy("v2"), rollback("v2", "v1"), deploy("v2")]
    assert not ledger.verdicts(records)["v2"].bad


def test_a_release_the_canary_analysis_rejected_is_bad():
    records = [
        deploy("v1"),
        deploy(
            "v2",
            "failed, rolled back",
            "analysis: canary analysis: fail (worse: latency)",
            rolled_back=["release: v2"],
        ),
    ]
    found = ledger.verdicts(records)
    assert found["v2"].verdict == "rejected" and found["v2"].bad
    assert not found["v1"].bad


def test_only_a_rolled_back_release_is_bad():
    records = [
        deploy("v1"),
        deploy("v2", "failed, rolled back", "monitor: the database did not answer"),
        deploy("v3"),
        rollback("v3", "v1"),
    ]
    assert {r for r, v in ledger.verdicts(records).items() if v.bad} == {"v3"}


def test_a_rollback_skips_a_bad_release_and_says_why():
    bad = {"v2": ledger.Verdict("rolled back", "2026-11-29T10:00:00Z", "ops")}
    target, skipped = ledger.implicit_target([f"{R}/v2", f"{R}/v1"], bad, f"{R}/v3")
    assert target == f"{R}/v1"
    assert skipped == ["v2: rolled back (2026-11-29T10:00:00Z, ops)"]


def test_without_a_bad_release_the_rollback_target_is_what_it_always_was():
    candidates = [f"{R}/v2", f"{R}/v1"]
    assert ledger.implicit_target(candidates, {}, f"{R}/v3") == (f"{R}/v2", [])
    # run again after it: already there, whatever the ledger says of the current one
    bad = {"v2": ledger.Verdict("rolled back", "t", "ops")}
    assert ledger.implicit_target(candidates, bad, f"{R}/v2") == (f"{R}/v2", [])
    assert ledger.implicit_target([None], {}, f"{R}/v1") == (None, [])
    # only bad releases before the current one: nothing to go back to
    assert ledger.implicit_target([f"{R}/v2", f"{R}/v1"], bad, f"{R}/v1") == (
        None,
        ["v2: rolled back (t, ops)"],
    )


def test_the_ledger_lists_every_release_on_disk_newest_deploy_first():
    records = [
        deploy("v1", completed="2026-11-28T09:00:00Z"),
        deploy("v2", completed="2026-11-29T09:00:00Z"),
        rollback("v2", "v1"),
    ]
    rows = ledger.rows(["v1", "v2", "v9-0123456789ab"], "v1", {"v1": "002", "v2": "003"}, records)
    assert [(r["release"], r["serves"], r["schema"], r["verdict"]) for r in rows] == [
        ("v2", "", "003", "rolled back (bad)"),
        ("v1", "*", "002", "served"),
        ("v9-0123456789ab", "", "-", "never deployed"),
    ]
    assert rows[0]["by"] == "ops@laptop" and rows[0]["commit"] == "5ad8973f1f18"
    assert rows[2]["commit"] == "0123456789ab"  # from the folder's name
    lines = ledger.table(rows)
    assert lines[0].split() == [
        "release",
        "serves",
        "deployed",
        "by",
        "commit",
        "schema",
        "verdict",
    ]
    assert len(lines) == 4


def test_torn_record_lines_are_skipped():
    text = json.dumps(deploy("v1")) + "\n{not json\n" + '"a string"\n'
    assert [r["release"] for r in ledger.parse_records(text)] == ["v1"]


def test_one_command_reads_the_releases_their_schemas_current_and_the_records(tmp_path):
    s, problems = validate(
        {
            "deploy_env": "t",
            "app_repo_url": "git://x/r.git",
            "db_host": "db",
            "app_dir": str(tmp_path / "app"),
            "deploy_state_dir": str(tmp_path / "state"),
        },
        environ={"DB_PASSWORD": "pw"},
    )
    assert problems == []
    for release, files in {
        "v1-aaaaaaaaaaaa": ["001_init.sql", "001_init.down.sql", "002_idx.sql"],
        "v2-bbbbbbbbbbbb": ["001_init.sql", "002_idx.sql", "003_cover.sql", "003_cover.down.sql"],
        "v3-cccccccccccc.partial": ["001_init.sql"],
        "v0-dddddddddddd": [],
    }.items():
        folder = tmp_path / "app/releases" / release / s.migrate_dir
        folder.mkdir(parents=True)
        for name in files:
            (folder / name).write_text("SELECT 1;\n")
    (tmp_path / "app/current").symlink_to(tmp_path / "app/releases/v2-bbbbbbbbbbbb")
    (tmp_path / "state").mkdir()
    (tmp_path / "state/deployments.jsonl").write_text(json.dumps(deploy("v2-bbbbbbbbbbbb")) + "\n")
    out = subprocess.run(
        ["sh", "-c", releases.state_command(s)], capture_output=True, text=True, check=True
    ).stdout
    schemas, current, records = releases.parse_state(out)
    assert schemas == {"v0-dddddddddddd": "", "v1-aaaaaaaaaaaa": "002", "v2-bbbbbbbbbbbb": "003"}
    assert current == str(tmp_path / "app/releases/v2-bbbbbbbbbbbb")
    assert [r["release"] for r in records] == ["v2-bbbbbbbbbbbb"]
    (tmp_path / "app/current").unlink()
    schemas, current, _ = releases.parse_state(
        subprocess.run(
            ["sh", "-c", releases.state_command(s)], capture_output=True, text=True, check=True
        ).stdout
    )
    assert current is None and len(schemas) == 3
