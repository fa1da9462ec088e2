"""What the phases read from the cache and the database they share: is Redis answering, its
statistics and keys, the database's connections. Read-only."""

from __future__ import annotations

from tasks.commands import postgres, rediscli
from tasks.config import Settings
from tasks.transport import sh


def cache_address(s: Settings) -> tuple[str, int]:
    """Where redis-cli reaches the cache from an app host."""
    if s.redis_mode == "external":
        return s.redis_host, s.redis_port
    bind = s.redis_bind
    return ("127.0.0.1" if bind in ("0.0.0.0", "") else bind), s.redis_port


def ping(h, s: Settings) -> str:
    address, port = cache_address(s)
    ok, out, err = sh(
        h, rediscli.redis_cli(s, "ping", host=address, port=port), check=False, timeout=10
    )
    return out.strip() if ok else (err or out).strip()


def redis_stats(h, s: Settings) -> dict[str, int]:
    address, port = cache_address(s)
    _, out, _ = sh(h, rediscli.redis_cli(s, "info", "stats", host=address, port=port))
    stats = {}
    for line in out.splitlines():
        key, _, value = line.strip().partition(":")
        if key in ("keyspace_hits", "keyspace_misses"):
            stats[key] = int(value)
    return stats


def metrics_keys(h, s: Settings) -> int:
    address, port = cache_address(s)
    _, out, _ = sh(
        h, rediscli.redis_cli(s, "--scan", "--pattern", "metrics:*", host=address, port=port)
    )
    return len(out.split())


def db_connections(h, s: Settings) -> int:
    _, out, _ = sh(
        h,
        postgres.psql(
            s,
            f"SELECT count(*) FROM pg_stat_activity WHERE datname = "
            f"{postgres.sql_literal(s.db_name)}",
        ),
        timeout=30,
        what="counting the database's connections",
    )
    return int(out.strip())
