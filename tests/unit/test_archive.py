"""pgBackRest's builders and the decisions around them, against in-memory hosts."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from fake_remote import FakeRemote

from tasks import archive
from tasks.archive import Servers
from tasks.commands import pgbackrest as pgb
from tasks.config import validate
from tasks.remote import DeployError

BASE = {
    "deploy_env": "t",
    "app_repo_url": "git://h/r.git",
    "db_host": "db1",
    "backup_method": "pgbackrest",
    "backup_repo_host": "repo1",
}


def settings(**extra):
    s, problems = validate({**BASE, **extra}, {"DB_PASSWORD": "x"})
    assert not problems, problems
    return s


def problems(**extra) -> list[str]:
    return validate({**BASE, **extra}, {"DB_PASSWORD": "x"})[1]


def info_json(*stops: int) -> str:
    backups = [
        {
            "label": f"set{n}",
            "type": "full" if n == 0 else "incr",
            "timestamp": {"start": stop - 5, "stop": stop},
            "archive": {"start": f"0000000100000000000000{10 + n:02X}"},
        }
        for n, stop in enumerate(stops)
    ]
    return json.dumps([{"name": "monitoring", "backup": backups, "status": {"code": 0}}])


def test_pgbackrest_needs_a_repository_host_and_drill_targets_are_checked():
    assert any(p.startswith("backup_repo_host:") for p in problems(backup_repo_host=""))
    assert problems(drill_target="2026-12-05 10:00:00+00") == []
    assert problems(drill_target="mdd_lab_20261205-101500") == []
    bad = problems(drill_target="x'; DROP TABLE metrics")
    assert bad and bad[0].startswith("drill_target:")


def test_configurations_point_each_host_at_the_other():
    s = settings(backup_retention_full=3)
    db = pgb.db_config(s, "10.0.0.13")
    assert "repo1-host=10.0.0.13" in db and "[monitoring]\npg1-path=/var/lib/postgresql" in db
    repo = pgb.repo_config(s, "10.0.0.12")
    assert "pg1-host=10.0.0.12" in repo and "repo1-retention-full=3" in repo


def test_a_restore_target_is_a_time_a_name_or_the_newest_wal():
    assert pgb.target_options("latest") == []
    assert pgb.target_options("mdd_t_20261205-101500", "set1") == [
        "--set=set1",
        "--type=name",
        "--target=mdd_t_20261205-101500",
        "--target-action=promote",
    ]
    assert pgb.target_options("2026-12-05 10:00:00+00")[0] == "--type=time"


def test_our_restore_points_carry_their_time():
    name = archive.point_name("lab", "20261205-101500")
    assert name == "mdd_lab_20261205-101500"
    assert archive.point_time(name) == datetime(2026, 12, 5, 10, 15, tzinfo=UTC)
    assert archive.point_time("drill_between") is None


def test_the_archive_listing_names_a_corrupted_file_and_a_missing_segment():
    listing = "\n".join(
        [
            "000000010000000000000010 ok ./15-1/x/000000010000000000000010-aa.gz",
            "000000010000000000000011 ok ./15-1/x/000000010000000000000011-bb.gz",
            "000000010000000000000012 corrupt ./15-1/x/000000010000000000000012-cc.gz",
            "000000010000000000000014 ok ./15-1/x/000000010000000000000014-dd.gz",
            "0000000100000000000000FF ok ./15-1/x/0000000100000000000000FF-ee.gz",
            "000000010000000100000000 ok ./15-1/x/000000010000000100000000-ff.gz",
            "newest 12",
        ]
    )
    found, age = pgb.wal_problems(listing, "000000010000000000000011")
    assert age == 12
    assert (
        found[0]
        == "./15-1/x/000000010000000000000012-cc.gz: does not match its checksum (corrupted)"
    )
    assert "WAL segment 000000010000000000000013: missing from the archive" in found
    assert "WAL segment 000000010000000000000015: missing from the archive" in found
    assert len(found) == 3  # ...FF then the next log file's 00 follow each other


def servers() -> Servers:
    return Servers(FakeRemote("db1"), FakeRemote("repo1"), "10.0.0.12", "10.0.0.13")


def test_pre_flight_refuses_a_server_that_does_not_archive_and_names_the_runbook():
    sv = servers()
    sv.db.answer("pg_settings", (True, "f|f"))
    sv.db.answer(r"pgbackrest .* check", (False, "", "ERROR: [087]: archive_mode must be enabled"))
    with pytest.raises(DeployError, match="runbook=backup-setup") as refused:
        archive.ready(sv, settings())
    assert "archive_mode must be enabled" in str(refused.value)
    assert not sv.repo.ran("backup")


def test_pre_flight_takes_an_incremental_backup_when_the_newest_is_too_old():
    sv = servers()
    sv.db.answer("pg_settings", (True, "t|f"))
    old = int(time.time()) - 3 * 3600
    sv.repo.answer("info", (True, info_json(old)))

    def incremental(_command: str) -> tuple[bool, str]:
        sv.repo.answer("info", (True, info_json(old, int(time.time()))))
        return True, ""

    sv.repo.answer("--type=incr backup", incremental)
    assert archive.ready(sv, settings(backup_max_age="1h")) == "set1"
    assert sv.repo.ran("--type=incr backup")


def test_pre_flight_keeps_a_recent_backup():
    sv = servers()
    sv.db.answer("pg_settings", (True, "t|f"))
    sv.repo.answer("info", (True, info_json(int(time.time()) - 60)))
    assert archive.ready(sv, settings()) == "set0"
    assert not sv.repo.ran("--type=")


def test_a_restore_point_waits_until_its_segment_is_archived():
    db = FakeRemote("db1")
    db.answer("pg_create_restore_point", (True, "42|000000010000000000000020|t"))
    answers = iter(["00000001000000000000001F|0||3", "000000010000000000000020|0||0"])
    db.answer("pg_stat_archiver", lambda _c: (True, next(answers)))
    max_id, segment, _ = archive.restore_point(db, settings(), "mdd_t_x")
    assert (max_id, segment) == (42, "000000010000000000000020")


def test_a_segment_never_archived_fails_with_what_postgresql_says():
    db = FakeRemote("db1")
    db.answer("pg_create_restore_point", (True, "42|000000010000000000000020|t"))
    db.answer("pg_stat_archiver", (True, "00000001000000000000001F|3|000000010000000000000020|9"))
    with pytest.raises(DeployError, match="3 failure"):
        archive.wait_archived(db, settings(backup_archive_wait=5), "000000010000000000000020")


def test_a_drill_with_a_corrupted_segment_fails_naming_it_and_leaves_no_scratch_cluster():
    repo = FakeRemote("repo1")
    repo.answer("info", (True, info_json(int(time.time()) - 60)))
    repo.answer(
        "find",
        (
            True,
            "000000010000000000000010 corrupt ./15-1/x/000000010000000000000010-aa.gz\nnewest 3",
        ),
    )
    result = archive.drill(repo, settings(), "latest", lambda: None)
    assert not result.passed and "000000010000000000000010-aa.gz" in result.problem
    assert result.rpo_seconds == 3
    assert not repo.ran("pgbackrest .*restore")
    assert repo.ran("rm -rf /var/lib/mdd-drill")[-1] == repo.commands[-1]


def test_a_dump_drill_without_a_dump_says_so_and_leaves_nothing():
    app1 = FakeRemote("app1")
    result = archive.dump_drill(app1, settings(backup_method="pg_dump"), lambda: None)
    assert not result.passed
    assert result.problem == (
        "no dump in /var/backups/monitoring-dashboard on app1: nothing to drill"
    )
    assert not app1.ran("initdb")
    assert app1.ran("rm -rf /var/lib/mdd-drill")[-1] == app1.commands[-1]


def test_a_dump_reaches_the_scratch_server_through_a_pipe_root_reads():
    command = pgb.dump_restore(settings(), "/d/cluster", "/var/backups/x/backup_1.dump")
    assert command.startswith("cd / && cat /var/backups/x/backup_1.dump | runuser -u postgres")
    assert "pg_restore --no-owner --no-acl --exit-on-error -h /d/cluster -p 5499" in command


def test_a_restore_to_a_point_starts_from_the_newest_backup_taken_before_it():
    found = json.loads(info_json(1000, 2000, 3000))[0]["backup"]
    assert archive.backup_before(found, datetime.fromtimestamp(2500, UTC))["label"] == "set1"
    assert archive.backup_before(found, None)["label"] == "set2"
    with pytest.raises(DeployError, match="no backup in the repository ended before"):
        archive.backup_before(found, datetime.fromtimestamp(500, UTC))
