"""The deploy lock's SQL (tasks/lock.py decides when): one row per environment in table
deploy_lock, which backups leave out."""

from __future__ import annotations

from tasks.commands.postgres import sql_literal as lit

TABLE = "deploy_lock"


def create_sql() -> list[str]:
    return [
        f"CREATE TABLE IF NOT EXISTS {TABLE} (env text PRIMARY KEY, holder text NOT NULL, "
        "since timestamptz NOT NULL DEFAULT now(), command text NOT NULL, "
        "heartbeat timestamptz NOT NULL DEFAULT now())",
        f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS heartbeat timestamptz NOT NULL "
        "DEFAULT now()",
    ]


def acquire_sql(env: str, who: str, command: str) -> str:
    return (
        f"INSERT INTO {TABLE} (env, holder, command) VALUES ({lit(env)}, {lit(who)}, "
        f"{lit(command)}) ON CONFLICT (env) DO NOTHING RETURNING 'acquired'"
    )


def heartbeat_sql(env: str, who: str) -> str:
    return f"UPDATE {TABLE} SET heartbeat = now() WHERE env = {lit(env)} AND holder = {lit(who)}"


def holder_sql(env: str) -> str:
    """seconds since its last heartbeat | holder | since | command (which may hold `|`)."""
    return (
        "SELECT extract(epoch FROM now() - heartbeat)::int, holder, "
        f"to_char(since, 'YYYY-MM-DD HH24:MI:SS TZ'), command FROM {TABLE} "
        f"WHERE env = {lit(env)}"
    )


def release_sql(env: str, who: str) -> str:
    """The lock of ENV deleted, if WHO holds it."""
    return f"DELETE FROM {TABLE} WHERE env = {lit(env)} AND holder = {lit(who)}"


def take_over_sql(env: str, who: str, command: str) -> list[str]:
    """The lock of ENV held by WHO again, whoever the table says holds it: after a restore
    brought the table back to a moment another run held it."""
    return [f"DELETE FROM {TABLE} WHERE env = {lit(env)}", acquire_sql(env, who, command)]
