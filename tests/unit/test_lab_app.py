import pytest

from lab import apprepo, seed


def test_seed_fills_only_an_empty_table_over_the_window():
    sql = seed.seed_sql(1000, hosts=5, days=30)
    assert "FROM generate_series(0, 999) AS i" in sql
    assert "WHERE NOT EXISTS (SELECT 1 FROM metrics)" in sql
    assert "interval '30 days'" in sql and "% 5" in sql
    assert "'cpu','memory','disk','network'" in sql


def test_seed_refuses_nonsense_sizes():
    with pytest.raises(ValueError):
        seed.seed_sql(0)


def test_legacy_schema_is_migrations_001_and_002_only():
    sql = seed.legacy_schema_sql()
    assert "CREATE TABLE IF NOT EXISTS metrics" in sql
    assert "idx_metrics_recorded_at" in sql
    assert "CONCURRENTLY" not in sql


def test_releases_are_the_six_the_deploy_moves_between():
    assert [r.tag for r in apprepo.RELEASES] == [
        "v1.9.0",
        "v2.0.0-perf",
        "v2.0.1-broken",
        "v2.1.0",
        "v2.0.2-slow",
        "v2.0.3-flaky",
    ]
    v190 = apprepo.RELEASES[0].files
    assert v190[f"{apprepo.MIGRATIONS}/003_covering_indexes_optimization.sql"] is None
    assert "cacheSupported = false" in v190[apprepo.RELEASE_FILE]
    assert "metrics_v2" in apprepo.RELEASES[2].files[apprepo.RELEASE_FILE]


def test_the_source_tree_is_v2_0_0_perf():
    release = (apprepo.APP_SOURCE / apprepo.RELEASE_FILE).read_text()
    assert 'Version = "2.0.0-perf"' in release
    migration = apprepo.APP_SOURCE / apprepo.MIGRATIONS / "003_covering_indexes_optimization.sql"
    assert migration.read_text().count("\nCREATE INDEX CONCURRENTLY") == 3


def test_v2_1_0_reads_hostname_and_brings_the_migrations_that_rename_host():
    files = apprepo.RELEASES[3].files
    assert "SELECT recorded_at, hostname, value" in files["internal/store/store.go"]
    names = sorted(f.rsplit("/", 1)[1] for f in files if f.startswith(apprepo.MIGRATIONS))
    assert names == [
        "004_metrics_hostname.backfill.sql",
        "004_metrics_hostname.down.sql",
        "004_metrics_hostname.sql",
        "005_hostname_indexes.down.sql",
        "005_hostname_indexes.sql",
        "006_drop_metrics_host.down.sql",
        "006_drop_metrics_host.sql",
    ]


def test_the_subtle_regressions_differ_from_v2_0_0_perf_only_in_their_flaw():
    slow, flaky = (r.files[apprepo.RELEASE_FILE] for r in apprepo.RELEASES[4:6])
    assert "historyDelayMS = 15" in slow and "historyFailPerMille = 0" in slow
    assert "historyDelayMS = 0" in flaky and "historyFailPerMille = 8" in flaky
    for release in (slow, flaky):
        assert "cacheSupported = true" in release
    assert (
        set(apprepo.RELEASES[4].files) == set(apprepo.RELEASES[5].files) == {apprepo.RELEASE_FILE}
    )
