import pytest

from tasks.migrate import Migration, plan_migrations
from tasks.runtime import DeployError

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
