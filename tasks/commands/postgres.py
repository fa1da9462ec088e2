"""psql and pg_dump against the environment's database (credentials from a pgpass file, never
the command line), and the SQL of the checks around them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tasks.commands.shell import LOW_PRIORITY, paths, q
from tasks.config import Settings

HISTORY_TABLE = "schema_migrations"
BACKFILL_TABLE = "schema_backfills"


def pgpass_line(s: Settings, password: str) -> str:
    """One ~/.pgpass line; ':' and '\\' in fields are escaped as libpq requires."""

    def esc(value: Any) -> str:
        return str(value).replace("\\", "\\\\").replace(":", "\\:")

    fields = (s.db_host, s.db_port, s.db_name, login_role(s), password)
    return ":".join(esc(v) for v in fields) + "\n"


def login_role(s: Settings) -> str:
    """The role the service and the deploy log in as: db_login_role (kept with the password
    by rotate-db-password), else db_user. A login role's sessions act as db_user (its
    `role` setting), so what they create belongs to db_user."""
    return s.db_login_role or s.db_user


CLIENTS = "/usr/lib/postgresql"  # Debian's and Ubuntu's: one <version>/bin per client version


def client_path(clients: str) -> str:
    """A PATH assignment that puts the newest PostgreSQL client's bin folder under CLIENTS
    first (PATH unchanged when there is none): psql and pg_dump then start as themselves, not
    through Debian's Perl wrapper, which picks that same newest client for a remote server and
    costs about 15 ms a call (33 ms a psql, 18 ms without it, on the lab)."""
    pick = (
        f"b= m=0; for d in {q(clients)}/*/bin; do v=${{d#{q(clients)}/}}; v=${{v%%[!0-9]*}}; "
        '[ -x "$d/psql" ] && [ "$v" -ge "$m" ] 2>/dev/null && m=$v b=$d; done; '
        '[ -n "$b" ] && echo "$b:"'
    )
    return f'PATH="$({pick})$PATH"'


def _pg_env(s: Settings) -> str:
    return (
        f"{client_path(CLIENTS)} PGPASSFILE={q(paths(s)['pgpass'])} PGSSLMODE={q(s.db_sslmode)} "
        "PGCONNECT_TIMEOUT=5"
    )


def _pg_target(s: Settings) -> str:
    return f"-h {q(s.db_host)} -p {int(s.db_port)} -U {q(login_role(s))} -d {q(s.db_name)}"


def psql(
    s: Settings,
    sql: str | None = None,
    file: str | None = None,
    *statements: str,
    variables: Mapping[str, int] | None = None,
) -> str:
    """psql that stops at the first error, prints bare values (-At) and reads no ~/.psqlrc.

    Each of STATEMENTS is its own -c (its own transaction), so a CREATE INDEX CONCURRENTLY
    stays outside any transaction block. VARIABLES (numbers) are psql variables for FILE.
    """
    cmd = f"{_pg_env(s)} psql -X -q -At -v ON_ERROR_STOP=1 {_pg_target(s)}"
    cmd += "".join(f" -v {name}={int(value)}" for name, value in (variables or {}).items())
    if sql is not None:
        cmd += f" -c {q(sql)}"
    cmd += "".join(f" -c {q(st)}" for st in statements)
    if file is not None:
        cmd += f" -f {q(file)}"
    return cmd


def history(s: Settings, order: str = "version") -> str:
    """One psql for the migration history: `<has history> <has metrics>` (t or f) on the first
    line, then `version|checksum` of each migration applied and not reverted, by ORDER."""
    script = (
        f"SELECT to_regclass('{HISTORY_TABLE}') IS NOT NULL AS has_history, "
        "to_regclass('metrics') IS NOT NULL AS has_metrics \\gset\n"
        "\\echo :has_history :has_metrics\n"
        "\\if :has_history\n"
        f"SELECT version, checksum FROM {HISTORY_TABLE} WHERE reverted_at IS NULL "
        f"ORDER BY {order};\n"
        "\\endif\n"
    )
    return f"{psql(s, file='-')} <<'SQL'\n{script}SQL"


def pg_dump(s: Settings, dest: str) -> str:
    """A custom-format (pg_restore-able) dump to DEST, mode 0600 from the first byte, at the
    lowest CPU and I/O priority (its compression runs on a host that may serve).

    The deploy's own bookkeeping (the lock, the migration history, the backfills) is left
    out, so that a restore keeps the record of what was done to the database. A failed dump
    (an error, a full disk) leaves no file behind.
    """
    partial = q(dest + ".partial")
    return (
        f"umask 077 && {{ {_pg_env(s)} {LOW_PRIORITY} pg_dump -Fc --no-owner "
        f"--exclude-table=deploy_lock --exclude-table={HISTORY_TABLE} "
        f"--exclude-table={BACKFILL_TABLE} {_pg_target(s)} -f {partial} && "
        f"mv {partial} {q(dest)}; }} || {{ rc=$?; rm -f {partial}; exit $rc; }}"
    )


def table_fingerprint_sql(table: str = "metrics") -> str:
    """Row count, highest id and a checksum of every (id, value): equal before and after a
    restore, or rows were lost or changed."""
    return (
        f"SELECT count(*), coalesce(max(id), 0), md5(coalesce(string_agg(id::text || ':' "
        f"|| value::text, ',' ORDER BY id), '')) FROM {table}"
    )


def pg_restore(s: Settings, dump: str) -> str:
    """Restore a custom-format dump over the database (objects in it are dropped first)."""
    return (
        f"{_pg_env(s)} pg_restore --clean --if-exists --no-owner --single-transaction "
        f"{_pg_target(s)} {q(dump)}"
    )


def pg_restore_list(dest: str) -> str:
    """Fails unless DEST is a readable dump; prints its table of contents' entry count."""
    return f"pg_restore --list {q(dest)} | grep -c -v '^;'"


def prune_backups(backup_dir: str, keep: int) -> str:
    return (
        f"ls -1t {q(backup_dir)}/backup_*.dump 2>/dev/null | tail -n +{keep + 1} "
        "| xargs -r rm -f --"
    )


def pg_duration(duration: str) -> str:
    """A group_vars duration (30m) in PostgreSQL's units (30min)."""
    return re.sub(r"(\d+)m$", r"\1min", duration)


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def sql_ident(name: str) -> str:
    """NAME as a quoted SQL identifier (a role, a table)."""
    return '"' + name.replace('"', '""') + '"'


def lock_holders_sql(table: str) -> str:
    """One line per other session holding a granted lock on TABLE: pid, lock mode, state, age
    of its transaction, the start of its query."""
    return (
        "SELECT a.pid || ' ' || l.mode || ' ' || coalesce(a.state, '?') || ' for ' || "
        "coalesce(date_trunc('second', now() - a.xact_start)::text, '?') || ': ' || "
        "left(regexp_replace(a.query, '\\s+', ' ', 'g'), 80) "
        "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        f"WHERE l.granted AND l.relation = to_regclass({sql_literal(table)}) "
        "AND a.pid <> pg_backend_pid()"
    )


def objects_state_sql(names: list[str]) -> str:
    """For each name: kind, valid, size (bytes); absent names give no row."""
    values = ", ".join(sql_literal(n) for n in names)
    return (
        "SELECT c.relname, c.relkind, coalesce(i.indisvalid, true), "
        "pg_relation_size(c.oid) FROM pg_class c "
        "LEFT JOIN pg_index i ON i.indexrelid = c.oid "
        f"WHERE c.relname IN ({values}) AND pg_table_is_visible(c.oid) ORDER BY c.relname"
    )
