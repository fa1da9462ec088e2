"""The SQL of the migration runner: statements split and classified, the history table,
the psql scripts that apply migrations and backfill in batches."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from tasks.commands.postgres import BACKFILL_TABLE, HISTORY_TABLE, pg_duration, sql_literal
from tasks.config import Settings


@dataclass(frozen=True)
class Statement:
    sql: str
    concurrent: bool  # CREATE/DROP/REINDEX ... CONCURRENTLY: must run outside any transaction


_CREATE_INDEX = re.compile(
    r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+(CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", re.I
)
_CREATE_MATVIEW = re.compile(r"CREATE\s+MATERIALIZED\s+VIEW\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", re.I)
_OUTSIDE_TRANSACTION = re.compile(
    r"^\s*(?:CREATE\s+(?:UNIQUE\s+)?INDEX|DROP\s+INDEX|REINDEX\s+\w+)\s+CONCURRENTLY\b", re.I
)


def split_statements(sql: str) -> list[Statement]:
    """Split a migration into statements (on `;` at a line's end; `--` comments dropped)."""
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    statements, current = [], []
    for line in lines:
        current.append(line)
        if line.rstrip().endswith(";"):
            text = "\n".join(current).strip()
            current = []
            if text.strip(";").strip():
                statements.append(Statement(text, bool(_OUTSIDE_TRANSACTION.search(text))))
    if "\n".join(current).strip():
        raise ValueError("the last statement does not end with ';'")
    return statements


def created_objects(sql: str) -> list[str]:
    """Indexes and materialized views a migration creates, in order (comments ignored)."""
    names = []
    for statement in split_statements(sql):
        match = _CREATE_INDEX.search(statement.sql) or _CREATE_MATVIEW.search(statement.sql)
        if match:
            names.append(match.group(match.lastindex or 1))
    return names


_DROP = re.compile(
    r"DROP\s+(?:INDEX|MATERIALIZED\s+VIEW)\s+(?:CONCURRENTLY\s+)?(?:IF\s+EXISTS\s+)?(\w+)", re.I
)


def dropped_objects(sql: str) -> list[str]:
    """Indexes and materialized views a migration drops by name (comments ignored)."""
    return [m.group(1) for st in split_statements(sql) for m in [_DROP.search(st.sql)] if m]


INDEX_ON = re.compile(r"\bON\s+(\w+)\s*\(([^)]*)\)(?:\s*INCLUDE\s*\(([^)]*)\))?", re.I)


def index_columns(statement: str) -> tuple[str, list[str]] | None:
    """The table and the columns (key and INCLUDE) a CREATE INDEX statement stores."""
    match = INDEX_ON.search(statement)
    if not match or not _CREATE_INDEX.search(statement):
        return None
    columns = ",".join(x for x in match.groups()[1:] if x)
    names = [c.split()[0] for c in columns.split(",") if c.strip()]
    return match.group(1), names


def index_inputs_sql(table: str, columns: list[str]) -> str:
    """rows of TABLE (planner estimate, -1 when absent) | summed average width of COLUMNS |
    how many of them have statistics."""
    names = ", ".join(sql_literal(c) for c in columns)
    return (
        "SELECT coalesce(max(c.reltuples), -1)::bigint, coalesce(sum(st.avg_width), 0)::int, "
        "count(st.attname) FROM (SELECT 1) one LEFT JOIN pg_class c ON c.relname = "
        f"{sql_literal(table)} AND pg_table_is_visible(c.oid) LEFT JOIN pg_stats st ON "
        f"st.tablename = c.relname AND st.attname IN ({names})"
    )


def index_estimate_bytes(rows: float, widths: list[int]) -> int:
    """A B-tree's size for ROWS entries of columns this wide: each entry's data, an 8-byte
    tuple header and a 4-byte line pointer, leaf pages 90% full (the default fillfactor)."""
    return int(rows * (sum(widths) + 8 + 4) / 0.9)


def history_table_sql() -> list[str]:
    """The migration history; `down_sql` keeps each migration's down script as the release
    that applied it had it, so a full rollback never depends on a release still on disk. And
    the progress of the backfills (backfill_start_sql)."""
    return [
        f"CREATE TABLE IF NOT EXISTS {BACKFILL_TABLE} (version text PRIMARY KEY, "
        "next_key bigint NOT NULL, end_key bigint NOT NULL, rows_done bigint NOT NULL DEFAULT 0,"
        " started_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz, "
        "finished_at timestamptz)",
        f"CREATE TABLE IF NOT EXISTS {HISTORY_TABLE} ("
        "version text PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, "
        "applied_at timestamptz NOT NULL DEFAULT now(), applied_by text NOT NULL, "
        "baseline boolean NOT NULL DEFAULT false, reverted_at timestamptz, down_sql text)",
        f"ALTER TABLE {HISTORY_TABLE} ADD COLUMN IF NOT EXISTS down_sql text",
        f"ALTER TABLE {HISTORY_TABLE} ADD COLUMN IF NOT EXISTS phase text NOT NULL "
        "DEFAULT 'expand'",
    ]


def record_migration_sql(
    version: str,
    name: str,
    checksum: str,
    by: str,
    down: str | None,
    baseline: bool = False,
    phase: str = "expand",
) -> str:
    down_sql = "NULL" if down is None else sql_literal(down)
    return (
        f"INSERT INTO {HISTORY_TABLE} "
        "(version, name, checksum, applied_by, baseline, down_sql, phase) "
        f"VALUES ({sql_literal(version)}, {sql_literal(name)}, {sql_literal(checksum)}, "
        f"{sql_literal(by)}, {'true' if baseline else 'false'}, {down_sql}, "
        f"{sql_literal(phase)}) "
        "ON CONFLICT (version) DO UPDATE SET name = EXCLUDED.name, checksum = EXCLUDED.checksum,"
        " applied_at = now(), applied_by = EXCLUDED.applied_by, baseline = EXCLUDED.baseline, "
        "reverted_at = NULL, down_sql = EXCLUDED.down_sql, phase = EXCLUDED.phase"
    )


def revert_migration_sql(version: str) -> str:
    """VERSION marked reverted, and its backfill's progress forgotten (a migration applied
    again backfills again)."""
    v = sql_literal(version)
    return (
        f"UPDATE {HISTORY_TABLE} SET reverted_at = now() WHERE version = {v}; "
        f"DELETE FROM {BACKFILL_TABLE} WHERE version = {v}"
    )


def backfill_start_sql(version: str, table: str, key: str) -> list[str]:
    """Statements recording where VERSION's backfill works (TABLE's KEY range now; kept as it
    is when the backfill started before) and printing `next|end|rows done|finished (t/f)`.
    TABLE and KEY are plain identifiers (migrations.parse_backfill)."""
    v = sql_literal(version)
    return [
        *history_table_sql(),
        f"INSERT INTO {BACKFILL_TABLE} (version, next_key, end_key) "
        f"SELECT {v}, coalesce(min({key}), 0), coalesce(max({key}), -1) + 1 FROM {table} "
        "ON CONFLICT (version) DO NOTHING",
        f"SELECT next_key, end_key, rows_done, finished_at IS NOT NULL FROM {BACKFILL_TABLE} "
        f"WHERE version = {v}",
    ]


def guard_lines(guard: Callable[[str], str | None] | None, before: str) -> list[str]:
    """psql lines running the deploy guard (tasks/guard.py) on the client before the step
    BEFORE: `\\set` runs its command, and when it answers `f` a raised error stops the script
    (ON_ERROR_STOP) before that step. None when there is no guard."""
    command = guard(before) if guard else None
    if command is None:
        return []
    return [
        f"\\set guard_go `{command}`",
        "\\if :guard_go",
        "\\else",
        "DO $$BEGIN RAISE EXCEPTION 'deploy guard: stopped before "
        + before.replace("'", "")
        + ", the serving release stayed slow (deploy_guard_on_timeout: stop)'; END$$;",
        "\\endif",
    ]


def backfill_batch_script(
    s: Settings,
    version: str,
    statement: str,
    guard: Callable[[str], str | None] | None = None,
) -> str:
    """A psql script running one batch [:lo, :hi) (psql variables) of VERSION's backfill: in one
    transaction, STATEMENT and the progress, printed as the rows done so far. The batch runs
    only when the progress stands at :lo, so a batch never runs twice; the last one marks the
    backfill finished. GUARD (see guard_lines) runs first."""
    v = sql_literal(version)
    return "\n".join(
        [
            "\\set ON_ERROR_STOP on",
            *guard_lines(guard, f"a batch of backfill {version}"),
            f"SET lock_timeout = {sql_literal(pg_duration(s.migrate_lock_timeout))};",
            f"SET statement_timeout = {sql_literal(pg_duration(s.migrate_statement_timeout))};",
            "BEGIN;",
            f"SELECT next_key = :lo AS at_lo FROM {BACKFILL_TABLE} WHERE version = {v} "
            "AND finished_at IS NULL FOR UPDATE \\gset",
            "\\if :at_lo",
            f"WITH batch AS (\n{statement}\nRETURNING 1)",
            f"UPDATE {BACKFILL_TABLE} SET next_key = :hi, "
            "rows_done = rows_done + (SELECT count(*) FROM batch), updated_at = now(), "
            f"finished_at = CASE WHEN :hi >= end_key THEN now() END WHERE version = {v} "
            "RETURNING rows_done;",
            "COMMIT;",
            "\\else",
            "ROLLBACK;",
            f"\\warn backfill {version}: its progress is not at :lo (another run moved it)",
            "\\endif",
            "",
        ]
    )


def migration_script(
    s: Settings,
    migrations: list[tuple[str, str, str, str, str | None, str]],
    drop_invalid: list[str],
    by: str,
    guard: Callable[[str], str | None] | None = None,
) -> str:
    """One psql script applying MIGRATIONS [(version, name, checksum, sql, down sql, phase)]
    in order.

    It takes an advisory lock (one migrator at a time), sets the timeouts, drops indexes an
    interrupted CONCURRENTLY build left INVALID, then runs each migration: its CONCURRENTLY
    statements on their own (PostgreSQL refuses them in a transaction), each run of other
    statements between them in one transaction, the last one with the history row. A
    migration without CONCURRENTLY is thus one transaction, and no one sees the state between
    two statements that follow each other (a trigger dropped, the column it filled not yet).
    GUARD (see guard_lines) runs before each CONCURRENTLY statement and each transaction.
    """
    out = [
        "\\set ON_ERROR_STOP on",
        "SELECT pg_advisory_lock(hashtext('monitoring-dashboard-migrations'));",
        f"SET lock_timeout = {sql_literal(pg_duration(s.migrate_lock_timeout))};",
        f"SET statement_timeout = {sql_literal(pg_duration(s.migrate_statement_timeout))};",
        f"SET maintenance_work_mem = {sql_literal(s.migrate_maintenance_work_mem)};",
        *(st + ";" for st in history_table_sql()),
    ]
    out += [f"DROP INDEX CONCURRENTLY IF EXISTS {name};" for name in drop_invalid]
    for version, name, checksum, sql, down, phase in migrations:
        statements = split_statements(sql)
        record = record_migration_sql(version, name, checksum, by, down, phase=phase) + ";"

        def step(sqls: list[str], version: str = version) -> list[str]:
            return (
                guard_lines(guard, f"migration {version}, {_first_line(sqls[0])}") if sqls else []
            )

        out.append(f"\\echo applying migration {version} {name}")
        block: list[str] = []
        for st in statements:
            if st.concurrent:
                out += [*step(block), "BEGIN;", *block, "COMMIT;"] if block else []
                out += [*step([st.sql]), st.sql]
                block = []
            else:
                block.append(st.sql)
        out += [*step(block), "BEGIN;", *block, record, "COMMIT;"]
    out.append("SELECT pg_advisory_unlock(hashtext('monitoring-dashboard-migrations'));")
    return "\n".join(out) + "\n"


def _first_line(sql: str, width: int = 70) -> str:
    """A statement's first line, short, without the characters psql or a label would trip on."""
    line = " ".join(sql.split("\n", 1)[0].split())
    return "".join(c for c in line if c not in ":'`").rstrip(";")[:width]
