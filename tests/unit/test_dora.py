"""DORA's four keys from a fixture ledger of two app hosts (tasks/dora.py): every figure
counted by hand in the comments."""

from __future__ import annotations

from datetime import UTC, datetime

from tasks import dora

NOW = datetime(2026, 12, 10, tzinfo=UTC)
APP = "/app/monitoring-dashboard-api/releases"


def deploy(host, run, release, started, completed, status="success", **more) -> dict:
    return {
        "host": host,
        "run": run,
        "status": status,
        "deployed_by": "ci@runner",
        "version": release.split("-")[0],
        "release": release,
        "release_changed": True,
        "started": f"2026-{started}:00+00:00",
        "completed": f"2026-{completed}:00+00:00",
        **more,
    }


def rollback(host, source, completed) -> dict:
    return {
        "status": "rolled back",
        "host": host,
        "by": "ops",
        "completed": f"2026-{completed}:00+00:00",
        "from_release": f"{APP}/{source}",
        "to_release": f"{APP}/v1-aaa",
    }


LEDGER = [
    # outside the window (10 days before NOW): not counted
    deploy("app1", "r0", "v0-000", "11-20T10:00", "11-20T10:05"),
    # A: a deployment; lead time 10:06 - 08:00 = 7560 s
    deploy("app1", "r1", "v1-aaa", "12-01T10:00", "12-01T10:05", commit_time="2026-12-01T08:00Z"),
    deploy("app2", "r1", "v1-aaa", "12-01T10:00", "12-01T10:06", commit_time="2026-12-01T08:00Z"),
    # a run that changed nothing: no change, no deployment
    deploy("app1", "r2", "v1-aaa", "12-02T10:00", "12-02T10:01", release_changed=False),
    # C: failed on app2, which switched back: a failed change restored in 09:10 - 09:00 = 600 s
    deploy("app1", "r3", "v2-bbb", "12-03T09:00", "12-03T09:08"),
    deploy(
        "app2",
        "r3",
        "v2-bbb",
        "12-03T09:00",
        "12-03T09:10",
        status="failed",
        rolled_back=["release: v2-bbb -> v1-aaa"],
    ),
    # D: a deployment (lead 12-04 09:04 - 12-03 08:00 = 90240 s), rolled back at 12:00: a
    # failed change restored in 12:00 - 09:04 = 10560 s
    deploy("app1", "r4", "v2-bbb", "12-04T09:00", "12-04T09:03", commit_time="2026-12-03T08:00Z"),
    deploy("app2", "r4", "v2-bbb", "12-04T09:00", "12-04T09:04", commit_time="2026-12-03T08:00Z"),
    rollback("app1", "v2-bbb", "12-04T12:00"),
    rollback("app2", "v2-bbb", "12-04T12:01"),
    # E: a deployment written before records carried a run stamp (grouped by its start's
    # minute); lead 10:03 - 09:00 = 3780 s
    {
        **deploy("app1", "", "v3-ccc", "12-05T10:00", "12-05T10:02"),
        "commit_time": "2026-12-05T09:00Z",
    },
    {
        **deploy("app2", "", "v3-ccc", "12-05T10:00", "12-05T10:03"),
        "commit_time": "2026-12-05T09:00Z",
    },
    {"status": "runbook", "runbook": "redis-disable", "by": "ops", "completed": "2026-12-06T00:00"},
]


def test_the_four_keys_of_a_fixture_ledger_are_exact():
    found = dora.figures(LEDGER, NOW, 10)
    assert (found.deployments, found.changes, found.failed_changes) == (3, 4, 2)  # A D E; A C D E
    assert found.deploys_per_day == 0.3
    assert found.lead_time_s == 7560  # median of 7560, 90240, 3780
    assert found.change_failure_rate == 0.5  # C and D of four changes
    assert found.time_to_restore_s == 5580  # median of 600 and 10560


def test_the_window_and_an_empty_ledger():
    assert dora.figures(LEDGER, NOW, 1).changes == 0  # nothing ended after 12-09
    empty = dora.figures([], NOW, 30)
    assert (empty.deploys_per_day, empty.lead_time_s, empty.change_failure_rate) == (0, None, None)
    assert empty.lines()[2] == "change failure rate      -"


def test_the_lines_the_operator_reads():
    assert dora.figures(LEDGER, NOW, 10).lines() == [
        "deployment frequency     0.30/day (3 in 10 days)",
        "lead time for changes    2.1 h (median, commit to serving)",
        "change failure rate      50% (2 of 4)",
        "time to restore service  1.6 h (median)",
    ]


def test_a_failure_not_yet_restored_has_no_time_to_restore():
    failed = deploy("app1", "r9", "v9-999", "12-09T10:00", "12-09T10:05", status="failed")
    found = dora.figures([failed], NOW, 10)
    assert (found.failed_changes, found.time_to_restore_s) == (1, None)
