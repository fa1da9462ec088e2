from dataclasses import replace

from tasks.commands import postgres
from tasks.config import size_bytes, validate
from tasks.runbooks import new_overrides, terminate_idle_sql

BASE, _ = validate(
    {"deploy_env": "t", "app_repo_url": "git://h/r.git", "db_host": "db1"}, {"DB_PASSWORD": "x"}
)


def test_redis_disable_and_enable_flip_one_override_and_keep_the_others():
    kept = {"db_max_open_conns": 10}
    off = new_overrides("redis-disable", BASE, kept)
    assert off == {"db_max_open_conns": 10, "redis_enabled": False}
    assert new_overrides("redis-disable", BASE, off) == off  # a second run: no change
    assert new_overrides("redis-enable", BASE, off) == kept
    assert new_overrides("redis-enable", replace(BASE, redis_enabled=False), {}) == {
        "redis_enabled": True
    }


def test_reduce_memory_halves_the_pools_and_lowers_maxmemory():
    values = new_overrides("reduce-memory", BASE, {})
    assert values == {
        "redis_maxmemory": "512mb",
        "db_max_open_conns": BASE.db_max_open_conns // 2,
        "db_max_idle_conns": BASE.db_max_idle_conns // 2,
        "redis_pool_size": BASE.redis_pool_size // 2,
        "redis_min_idle_conns": BASE.redis_min_idle_conns // 2,
    }
    assert new_overrides("reduce-memory", BASE, values) == values


def test_terminate_idle_lowers_the_pool_only_when_asked_and_reset_clears_everything():
    assert new_overrides("terminate-idle", BASE, {}) == {}
    lowered = new_overrides("terminate-idle", replace(BASE, runbook_max_open_conns=30), {})
    assert lowered == {"db_max_open_conns": 30, "db_max_idle_conns": 30}
    assert new_overrides("reset", BASE, lowered) == {}
    assert new_overrides("migration-memory", BASE, lowered) == lowered


def test_terminate_idle_sql_spares_its_own_session_and_quotes_the_database():
    sql = terminate_idle_sql("it's", 5)
    assert "datname = 'it''s' AND state = 'idle'" in sql
    assert "interval '5 minutes'" in sql and "pid <> pg_backend_pid()" in sql
    assert postgres.sql_ident('a"b') == '"a""b"'


def test_sizes_are_counted_as_redis_counts_them():
    assert size_bytes("512mb") == 536870912 and size_bytes("1GB") == 1 << 30
