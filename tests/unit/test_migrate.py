import pytest

from tasks.migrations import (
    Backfill,
    Migration,
    backfill_problems,
    cut_after_backfills,
    parse_backfill,
    parse_migration_files,
    plan_migrations,
)
from tasks.remote import DeployError
from tasks.rollback import named_release

M1 = Migration("001", "create_metrics", "CREATE TABLE metrics (id int);\n")
M2 = Migration("002", "time_index", "CREATE INDEX i ON metrics (id);\n")
M3 = Migration("003", "covering", "CREATE INDEX CONCURRENTLY c ON metrics (id);\n")
ALL = [M1, M2, M3]


def test_an_empty_database_gets_every_migration():
    assert plan_migrations(ALL, False, False, {}, "") == ([], ALL)


def test_a_hand_migrated_database_needs_an_explicit_baseline():
    with pytest.raises(DeployError, match="migrated by hand. Set migrate_baseline"):
        plan_migrations(ALL, False, True, {}, "")
    with pytest.raises(DeployError, match="'009' is not a migration of this release"):
        plan_migrations(ALL, False, True, {}, "009")


def test_the_baseline_is_recorded_and_the_rest_applied():
    assert plan_migrations(ALL, False, True, {}, "002") == ([M1, M2], [M3])


def test_only_unapplied_migrations_are_pending():
    applied = {m.version: m.checksum for m in (M1, M2)}
    assert plan_migrations(ALL, True, True, applied, "002") == ([], [M3])


def test_an_applied_migration_that_changed_is_an_error():
    applied = {"001": M1.checksum, "002": "0" * 64}
    with pytest.raises(DeployError, match=r"applied migration\(s\) 002 changed"):
        plan_migrations(ALL, True, True, applied, "")


def test_a_gap_below_the_newest_applied_is_an_error():
    applied = {"001": M1.checksum, "003": M3.checksum}
    with pytest.raises(DeployError, match=r"002 are older than the newest applied \(003\)"):
        plan_migrations(ALL, True, True, applied, "")


def test_migration_files_come_with_their_down_scripts_byte_for_byte():
    mark = "@@@ migration file "
    output = "\n".join(
        [
            f"{mark}001_a.down.sql",
            "DROP TABLE a;",
            f"{mark}001_a.sql",
            "",
            "CREATE TABLE a (id int);",
            "",
            f"{mark}002_b.sql",
            "CREATE INDEX b ON a (id);",
            f"{mark}002_b.backfill.sql",
            "-- deploy: backfill a.id",
            "UPDATE a SET id = id WHERE id >= :lo AND id < :hi",
            f"{mark}notes.txt.sql",
            "ignored",
        ]
    )
    assert parse_migration_files(output) == [
        Migration("001", "a", "\nCREATE TABLE a (id int);\n\n", "DROP TABLE a;\n"),
        Migration(
            "002",
            "b",
            "CREATE INDEX b ON a (id);\n",
            None,
            "-- deploy: backfill a.id\nUPDATE a SET id = id WHERE id >= :lo AND id < :hi\n",
        ),
    ]


def test_rollback_to_names_a_release_by_folder_or_by_ref():
    releases = ["v1.9.0-aaaaaaaaaaaa", "v2.0.0-perf-bbbbbbbbbbbb", "main-cccccccccccc"]
    assert named_release(releases, "v1.9.0") == "v1.9.0-aaaaaaaaaaaa"
    assert named_release(releases, "v2.0.0-perf") == "v2.0.0-perf-bbbbbbbbbbbb"
    assert named_release(releases, "main-cccccccccccc") == "main-cccccccccccc"
    with pytest.raises(DeployError, match="no such release on the host"):
        named_release(releases, "v2.0.0")
    with pytest.raises(DeployError, match="several releases match"):
        named_release([*releases, "v1.9.0-dddddddddddd"], "v1.9.0")


CONTRACT = Migration(
    "004",
    "drop_old",
    "-- v2.1.0: the old column goes\n-- deploy: contract\nALTER TABLE t DROP c;\n",
)
EXPAND_5 = Migration("005", "add", "ALTER TABLE t ADD d int;\n")


def test_a_migration_is_a_contract_only_when_its_header_says_so():
    assert CONTRACT.phase == "contract" and CONTRACT.contract
    assert M3.phase == "expand"
    late_mention = Migration("006", "x", "SELECT 1;\n-- deploy: contract\n")
    assert late_mention.phase == "expand"  # after the first statement it is not a header


def test_a_contract_may_wait_behind_newer_expand_migrations_but_nothing_else_may():
    applied = {m.version: m.checksum for m in [*ALL, EXPAND_5]}
    assert plan_migrations([*ALL, CONTRACT, EXPAND_5], True, True, applied, "") == ([], [CONTRACT])
    plain = Migration("004", "plain", "ALTER TABLE t ADD e int;\n")
    with pytest.raises(DeployError, match=r"004 are older than the newest applied \(005\)"):
        plan_migrations([*ALL, plain, EXPAND_5], True, True, applied, "")


FILL = "UPDATE metrics SET hostname = host WHERE id >= :lo AND id < :hi"


def test_a_backfill_names_its_table_and_key_and_one_bounded_update():
    text = f"-- keep hostname filled\n-- deploy: backfill metrics.id\n{FILL};\n"
    with pytest.raises(ValueError, match="first line must be `-- deploy: backfill TABLE.KEY`"):
        parse_backfill(text)
    assert parse_backfill(text.split("\n", 1)[1]) == Backfill("metrics", "id", FILL)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (f"{FILL};\nUPDATE metrics SET x = 1 WHERE id >= :lo AND id < :hi", "one statement"),
        ("DELETE FROM metrics WHERE id >= :lo AND id < :hi", "must be an UPDATE"),
        (f"{FILL} RETURNING id", "must not have a RETURNING clause"),
        ("UPDATE metrics SET hostname = host WHERE id >= :lo", "id >= :lo AND id < :hi"),
        ("UPDATE metrics SET hostname = host::text WHERE id >= ::lo AND id < :hi", ":lo AND"),
    ],
)
def test_a_backfill_that_the_runner_cannot_batch_is_refused(body, problem):
    bad = Migration("004", "x", "SELECT 1;\n", None, f"-- deploy: backfill metrics.id\n{body}\n")
    assert problem in backfill_problems([M1, bad])[0]
    assert backfill_problems([M1, bad])[0].startswith("004_x.backfill.sql: ")


def test_a_contract_migration_has_no_backfill():
    contract = Migration("006", "drop", "-- deploy: contract\nDROP TABLE t;\n", None, "x")
    assert "a contract migration has no backfill" in backfill_problems([contract])[0]


def test_each_backfill_runs_before_the_next_migration():
    fill = "-- deploy: backfill metrics.id\nUPDATE metrics SET a = b WHERE id >= :lo AND id < :hi\n"
    m4, m5 = Migration("004", "a", "SELECT 1;\n", None, fill), Migration("005", "b", "SELECT 1;\n")
    assert cut_after_backfills([M3, m4, m5]) == [[M3, m4], [m5]]
    assert cut_after_backfills([M3, m5]) == [[M3, m5]]
    assert cut_after_backfills([m4]) == [[m4]]
