"""Pure builders of every non-trivial shell command the deploy runs (unit-tested, no host).

Secrets never appear in a command: psql and pg_dump read a pgpass file, redis-cli reads
REDISCLI_AUTH from a file at run time, the service reads its .env.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tasks.config import Settings

q = shlex.quote

SERVICE_BINARY = "bin/monitoring-dashboard-api"
MAIN_PACKAGE = "./cmd/monitoring-dashboard-api"
HISTORY_TABLE = "schema_migrations"
BACKFILL_TABLE = "schema_backfills"


# ----------------------------------------------------------------------------- paths


def paths(s: Settings) -> dict[str, str]:
    """Where things live on an app host."""
    app, state = s.app_dir, s.deploy_state_dir
    return {
        "releases": f"{app}/releases",
        "current": f"{app}/current",
        "env_file": f"{app}/.env",
        "repo_cache": f"{app}/repo.git",
        "state": state,
        "pgpass": f"{state}/pgpass",
        "redis_auth": f"{state}/redis_password",
        "manifests": f"{state}/manifests",
        "records": f"{state}/deployments.jsonl",
        "overrides": f"{state}/runbook-overrides.json",
        "unit": f"/etc/systemd/system/{s.app_service}.service",
    }


def release_id(ref: str, commit: str) -> str:
    """A release folder name: the ref made file-safe, then the commit's first 12 digits."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", ref).strip("._-") or "ref"
    return f"{safe}-{commit[:12]}"


# ----------------------------------------------------------------------------- git + go


def ls_remote(repo_url: str, ref: str) -> str:
    """Resolve REF on the remote: prints `<sha>\\t<name>` lines (peeled tags end in ^{})."""
    return f"git ls-remote {q(repo_url)} {q(ref)} {q('refs/tags/' + ref + '^{}')}"


def parse_ls_remote(output: str, ref: str) -> str | None:
    """The commit REF names: a peeled tag first, then an exact tag or branch, then a SHA."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 2:
            found[parts[1]] = parts[0]
    for name in (f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}", f"refs/heads/{ref}", ref):
        if name in found:
            return found[name]
    if re.fullmatch(r"[0-9a-f]{40}", ref):
        return ref
    return None


def build_release(repo_url: str, commit: str, cache: str, target: str, user: str) -> str:
    """Fetch COMMIT into a bare cache, export it into TARGET and `go build` there.

    The cache follows the repository, tags too (a tag moved there moves here: git refuses
    that without --force). The release appears under its final name only when the build
    succeeded; a failed build leaves no partial folder behind.
    """
    partial = f"{target}.partial"
    gocache = f"{cache}/gocache"
    return " && ".join(
        [
            "set -e",
            f"partial={q(partial)}",
            "trap 'rm -rf \"$partial\"' EXIT",  # a failed build (a full disk) leaves nothing
            f"test -d {q(cache)} || git init -q --bare {q(cache)}",
            f"git -C {q(cache)} fetch -q --force --tags {q(repo_url)} '+refs/heads/*:refs/heads/*'",
            f"git -C {q(cache)} cat-file -e {q(commit + '^{commit}')}",
            f"rm -rf {q(partial)}",
            f"mkdir -p {q(partial)}",
            f"git -C {q(cache)} archive {q(commit)} | tar -x -C {q(partial)}",
            f"echo {q(commit)} > {q(partial + '/REVISION')}",
            f"cd {q(partial)}",
            f"CGO_ENABLED=0 GOFLAGS=-mod=vendor GOPROXY=off GOCACHE={q(gocache)} "
            f"go build -trimpath -o {SERVICE_BINARY} {MAIN_PACKAGE}",
            f"chown -R root:{q(user)} {q(partial)}",
            f"mv -T {q(partial)} {q(target)}",
        ]
    )


def pack_release(release_dir: str, tarball: str) -> str:
    """The built release folder as one gzipped tarball (its name inside: the folder's)."""
    parent, name = release_dir.rsplit("/", 1)
    return f"umask 077 && tar -C {q(parent)} -czf {q(tarball)} {q(name)}"


def unpack_release(tarball: str, sha256: str, target: str, user: str) -> str:
    """Check TARBALL against SHA256, unpack it as TARGET (under a .partial name until
    complete), owned like a release built here; the tarball is removed either way."""
    partial = f"{target}.partial"
    return " && ".join(
        [
            "set -e",
            f"tarball={q(tarball)}",
            "trap 'rm -f \"$tarball\"' EXIT",
            f"echo {q(sha256 + '  ' + tarball)} | sha256sum -c --quiet",
            f"rm -rf {q(partial)}",
            f"mkdir -p {q(partial)}",
            f"tar -xzf {q(tarball)} -C {q(partial)} --strip-components=1",
            f"chown -R root:{q(user)} {q(partial)}",
            f"mv -T {q(partial)} {q(target)}",
        ]
    )


def cat_files(folder: str, pattern: str, mark: str) -> str:
    """Every file of FOLDER matching PATTERN, each after a line `MARK<file name>` and ending
    in exactly one newline (one round trip instead of one per file); fails if FOLDER is
    missing."""
    return (
        f'cd {q(folder)} && for f in {pattern}; do [ -f "$f" ] || continue; '
        f"printf '%s%s\\n' {q(mark)} \"$f\"; sed -e '$a\\' -- \"$f\"; done"
    )


def git_cat_files(repo_url: str, cache: str, commit: str, folder: str, mark: str) -> str:
    """Like cat_files, for the *.sql files of FOLDER at COMMIT: read from the bare repository
    CACHE when it has COMMIT, else fetched into a temporary repository (borrowing CACHE's
    objects) that is removed afterwards. Nothing on the host changes: what a release would
    hold, before it is built."""
    spec = f'"$commit":{q(folder)}'
    return "; ".join(
        [
            "set -e",
            f"commit={q(commit)}",
            f"repo={q(cache)}",
            "tmp=$(mktemp -d) && trap 'rm -rf \"$tmp\"' EXIT",
            f'if ! git -C "$repo" cat-file -e "$commit^{{commit}}" 2>/dev/null; then '
            'git init -q --bare "$tmp/repo"; '
            f'if [ -d "$repo/objects" ]; then echo "$repo/objects" '
            '> "$tmp/repo/objects/info/alternates"; fi; '
            f"git -C \"$tmp/repo\" fetch -q --tags {q(repo_url)} '+refs/heads/*:refs/heads/*'; "
            'repo="$tmp/repo"; fi',
            f"git -C \"$repo\" ls-tree --name-only {spec} | grep '\\.sql$' | while read -r f; do "
            f"printf '%s%s\\n' {q(mark)} \"$f\"; "
            f'git -C "$repo" show "$commit":{q(folder)}/"$f" | sed -e \'$a\\\'; done',
        ]
    )


def switch_current(current: str, target: str) -> str:
    """Point CURRENT at TARGET atomically (a new link renamed over the old one)."""
    tmp = f"{current}.new"
    return f"ln -sfn {q(target)} {q(tmp)} && mv -T {q(tmp)} {q(current)}"


def prune_releases(releases: str, keep: int, protect: list[str]) -> str:
    """Remove all but the KEEP newest releases, never one named in PROTECT, and any .partial."""
    excludes = " ".join(f"-e {q(p)}" for p in protect)
    return (
        f"cd {q(releases)} && rm -rf -- *.partial && ls -1t | grep -v -x -F {excludes} "
        f"| tail -n +{max(1, keep - len(protect) + 1)} | xargs -r rm -rf --"
    )


# ----------------------------------------------------------------------------- PostgreSQL


def pgpass_line(s: Settings, password: str) -> str:
    """One ~/.pgpass line; ':' and '\\' in fields are escaped as libpq requires."""

    def esc(value: Any) -> str:
        return str(value).replace("\\", "\\\\").replace(":", "\\:")

    return ":".join(esc(v) for v in (s.db_host, s.db_port, s.db_name, s.db_user, password)) + "\n"


def _pg_env(s: Settings) -> str:
    return f"PGPASSFILE={q(paths(s)['pgpass'])} PGSSLMODE={q(s.db_sslmode)} PGCONNECT_TIMEOUT=5"


def _pg_target(s: Settings) -> str:
    return f"-h {q(s.db_host)} -p {int(s.db_port)} -U {q(s.db_user)} -d {q(s.db_name)}"


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


def pg_dump(s: Settings, dest: str) -> str:
    """A custom-format (pg_restore-able) dump to DEST, mode 0600 from the first byte.

    The deploy's own bookkeeping (the lock, the migration history, the backfills) is left
    out, so that a restore keeps the record of what was done to the database. A failed dump
    (an error, a full disk) leaves no file behind.
    """
    partial = q(dest + ".partial")
    return (
        f"umask 077 && {{ {_pg_env(s)} pg_dump -Fc --no-owner --exclude-table=deploy_lock "
        f"--exclude-table={HISTORY_TABLE} --exclude-table={BACKFILL_TABLE} {_pg_target(s)} "
        f"-f {partial} && "
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


# ----------------------------------------------------------------------------- migrations


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


def pg_duration(duration: str) -> str:
    """A group_vars duration (30m) in PostgreSQL's units (30min)."""
    return re.sub(r"(\d+)m$", r"\1min", duration)


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def sql_ident(name: str) -> str:
    """NAME as a quoted SQL identifier (a role, a table)."""
    return '"' + name.replace('"', '""') + '"'


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


def backfill_batch_script(s: Settings, version: str, statement: str) -> str:
    """A psql script running one batch [:lo, :hi) (psql variables) of VERSION's backfill: in one
    transaction, STATEMENT and the progress, printed as the rows done so far. The batch runs
    only when the progress stands at :lo, so a batch never runs twice; the last one marks the
    backfill finished."""
    v = sql_literal(version)
    return "\n".join(
        [
            "\\set ON_ERROR_STOP on",
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
) -> str:
    """One psql script applying MIGRATIONS [(version, name, checksum, sql, down sql, phase)]
    in order.

    It takes an advisory lock (one migrator at a time), sets the timeouts, drops indexes an
    interrupted CONCURRENTLY build left INVALID, then runs each migration: its CONCURRENTLY
    statements on their own (PostgreSQL refuses them in a transaction), each run of other
    statements between them in one transaction, the last one with the history row. A
    migration without CONCURRENTLY is thus one transaction, and no one sees the state between
    two statements that follow each other (a trigger dropped, the column it filled not yet).
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
        out.append(f"\\echo applying migration {version} {name}")
        block: list[str] = []
        for st in statements:
            if st.concurrent:
                out += ["BEGIN;", *block, "COMMIT;"] if block else []
                out.append(st.sql)
                block = []
            else:
                block.append(st.sql)
        out += ["BEGIN;", *block, record, "COMMIT;"]
    out.append("SELECT pg_advisory_unlock(hashtext('monitoring-dashboard-migrations'));")
    return "\n".join(out) + "\n"


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


# ----------------------------------------------------------------------------- Redis


def redis_server_args(s: Settings, with_password_file: bool) -> list[str]:
    """The checklist's redis-server flags (a password comes from a mounted config file)."""
    args = ["redis-server"]
    if with_password_file:
        args.append(REDIS_AUTH_IN_CONTAINER)
    args += [
        "--maxmemory",
        s.redis_maxmemory,
        "--maxmemory-policy",
        s.redis_maxmemory_policy,
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    return args


REDIS_AUTH_IN_CONTAINER = "/usr/local/etc/redis/auth.conf"


def redis_run(s: Settings, spec_hash: str, auth_conf: str | None) -> str:
    """Create the redis-cache container (labelled with the hash of its spec), copy the password
    file in as the user the image runs redis-server as (`redis_uid`, mode 0400: an image that
    drops root, like the official one, can read it; nothing else can), then start it."""
    name = s.redis_container
    create = [
        "docker",
        "create",
        "--name",
        name,
        "--restart",
        "unless-stopped",
        "-p",
        f"{s.redis_bind}:{s.redis_port}:6379",
        "--label",
        f"monitoring-dashboard.spec={spec_hash}",
        s.redis_image,
        *redis_server_args(s, auth_conf is not None),
    ]
    steps = [shlex.join(create) + " >/dev/null"]
    if auth_conf:
        folder, file = auth_conf.rsplit("/", 1)
        uid = int(s.redis_uid)
        rename = f"s|^{re.escape(file)}$|{REDIS_AUTH_IN_CONTAINER.lstrip('/')}|"
        steps.append(
            f"tar -C {q(folder)} --owner={uid} --group={uid} --numeric-owner --mode=0400 "
            f"--transform {q(rename)} -cf - {q(file)} | docker cp -a - {q(name + ':/')}"
        )
    steps.append(f"docker start {q(name)} >/dev/null")
    return " && ".join(steps)


def redis_cli(s: Settings, *args: str, host: str | None = None, port: int | None = None) -> str:
    """redis-cli against the cache; the password (if any) is read from the deploy's file."""
    auth = paths(s)["redis_auth"]
    tls = " --tls" if s.redis_mode == "external" and s.redis_tls else ""
    target = f"-h {q(host or s.redis_host)} -p {int(port or s.redis_port)}"
    return (
        f'a="$(cat {q(auth)} 2>/dev/null)"; [ -z "$a" ] || export REDISCLI_AUTH="$a"; '
        f"redis-cli --no-auth-warning{tls} {target} " + " ".join(q(a) for a in args)
    )


# ----------------------------------------------------------------------------- the service


ENV_SECRETS = ("DB_PASSWORD", "REDIS_PASSWORD")


def env_values(s: Settings, db_password: str, redis_password: str) -> list[tuple[str, Any]]:
    """The service's environment in the .env's order: (KEY, value), or (comment, None)."""
    redis_host = s.redis_host if s.redis_mode == "external" else "localhost"
    return [
        ("# Managed by monitoring-dashboard-deploy; changes are overwritten.", None),
        ("LISTEN_ADDR", f":{s.app_port}"),
        ("LOG_FILE", s.app_log_file),
        ("# Database", None),
        ("DB_HOST", s.db_host),
        ("DB_PORT", s.db_port),
        ("DB_NAME", s.db_name),
        ("DB_USER", s.db_user),
        ("DB_PASSWORD", db_password),
        ("DB_SSLMODE", s.db_sslmode),
        ("# Database Connection Pool", None),
        ("DB_MAX_OPEN_CONNS", s.db_max_open_conns),
        ("DB_MAX_IDLE_CONNS", s.db_max_idle_conns),
        ("# Redis Cache", None),
        ("REDIS_ENABLED", "true" if s.redis_enabled else "false"),
        ("REDIS_HOST", redis_host),
        ("REDIS_PORT", s.redis_port),
        ("REDIS_PASSWORD", redis_password),
        ("REDIS_DB", s.redis_db),
        ("REDIS_CACHE_TTL", s.redis_cache_ttl),
        ("REDIS_POOL_SIZE", s.redis_pool_size),
        ("REDIS_MIN_IDLE_CONNS", s.redis_min_idle_conns),
        ("REDIS_DIAL_TIMEOUT", s.redis_dial_timeout),
        ("REDIS_READ_TIMEOUT", s.redis_read_timeout),
        ("REDIS_WRITE_TIMEOUT", s.redis_write_timeout),
        ("# Server Timeouts", None),
        ("SERVER_READ_TIMEOUT", s.server_read_timeout),
        ("SERVER_WRITE_TIMEOUT", s.server_write_timeout),
        ("SERVER_IDLE_TIMEOUT", s.server_idle_timeout),
    ]


def env_file_content(s: Settings, db_password: str, redis_password: str) -> str:
    """The .env of the checklist's step 4, plus the database connection and the log file."""
    lines = []
    for key, value in env_values(s, db_password, redis_password):
        if value is None:
            lines.append(key)
        else:
            text = str(value)
            if "\n" in text:
                raise ValueError(f"{key} must be one line")
            lines.append(f"{key}={text}")
    return "\n".join(lines) + "\n"


def http_probe(url: str, timeout: float = 5) -> str:
    """curl printing `<status> <seconds>` then the body on the next line."""
    return (
        f"curl -s -m {timeout:g} -o /tmp/.mdd-probe -w '%{{http_code}} %{{time_total}}\\n' "
        f"{q(url)}; cat /tmp/.mdd-probe 2>/dev/null; rm -f /tmp/.mdd-probe"
    )


def wait_healthy(url: str, expect: str, timeout: int) -> str:
    """Poll URL until it answers 200 with EXPECT in the body; bounded by TIMEOUT seconds of
    wall time (a server that accepts and never answers costs 2 s a try, not more)."""
    return (
        f"end=$(($(date +%s) + {timeout})); while :; do "
        f"body=$(curl -s -m 2 -w ' (HTTP %{{http_code}})' {q(url)} | tr -d '\\n'); "
        f'case "$body" in *{q(expect)}*" (HTTP 200)") echo "${{body% (HTTP 200)}}"; exit 0;; '
        f'esac; [ "$(date +%s)" -lt "$end" ] || break; sleep 0.25; done; '
        f'echo "no healthy answer from {url} within {timeout}s; last answer: $body" >&2; exit 1'
    )


def k6_run(script: str, summary: str, env: Mapping[str, Any]) -> list[str]:
    """The local k6 invocation (an argument list: k6 runs on the deploying machine)."""
    cmd = ["k6", "run", "--quiet", "--no-color", f"--summary-export={summary}"]
    for key, value in sorted(env.items()):
        cmd += ["-e", f"{key}={value}"]
    return [*cmd, script]


# ----------------------------------------------------------------------------- Docker (Option B)

CONTAINER_ENV_FILE = "/run/monitoring-dashboard/.env"  # where a container sees the .env


def image_build(dockerfile: str, context: str, image: str, labels: dict[str, str]) -> str:
    """Build IMAGE from DOCKERFILE (a file on the host) with CONTEXT as the build context,
    LABELS on it; prints nothing but errors."""
    label_args = " ".join(f"--label {q(f'{k}={v}')}" for k, v in sorted(labels.items()))
    return (
        f"docker build -q --network none -t {q(image)} {label_args} "
        f"-f {q(dockerfile)} {q(context)} >/dev/null"
    )


def container_run(
    s: Settings, name: str, image: str, publish: str, user: str, redis_host: str | None
) -> str:
    """Replace container NAME by one running IMAGE as the checklist's Option B runs it
    (restart unless-stopped, the .env, the service's port published as PUBLISH), on the
    user-defined network `docker_network` instead of the deprecated --link, as USER's uid and
    gid, read-only, without capabilities. The .env is mounted, not passed with --env-file:
    its secrets stay out of `docker inspect`. REDIS_HOST, when given, overrides the .env's
    (the cache's container name on the network, where the .env says localhost)."""
    log_dir = s.app_log_file.rsplit("/", 1)[0]
    run = [
        "docker",
        "run",
        "-d",
        "--name",
        name,
        "--restart",
        "unless-stopped",
        "--network",
        s.docker_network,
        "-p",
        f"{publish}:{s.app_port}",
        "-v",
        f"{paths(s)['env_file']}:{CONTAINER_ENV_FILE}:ro",
        "-v",
        f"{log_dir}:{log_dir}",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
    ]
    if redis_host:
        run += ["-e", f"REDIS_HOST={redis_host}"]
    user_arg = f'--user "$(id -u {q(user)}):$(id -g {q(user)})"'
    return (
        f"{container_remove(name)}; "
        f"{shlex.join(run)} {user_arg} {q(image)} --env-file {CONTAINER_ENV_FILE} >/dev/null"
    )


def _on_network(network: str, container: str) -> str:
    key = q(f'"{network}":')  # in the JSON of the container's networks
    return (
        f"docker inspect -f '{{{{json .NetworkSettings.Networks}}}}' {q(container)} 2>/dev/null "
        f"| grep -qF {key}"
    )


def network_state(network: str, container: str | None) -> str:
    """Prints `ready` when NETWORK exists and CONTAINER (if any) is connected to it."""
    check = f"docker network inspect {q(network)} >/dev/null 2>&1"
    if container:
        check += f" && {_on_network(network, container)}"
    return f"if {check}; then echo ready; else echo missing; fi"


def network_ready(network: str, container: str | None) -> str:
    """Create NETWORK if missing, and connect CONTAINER to it if it is not."""
    steps = [
        f"(docker network inspect {q(network)} >/dev/null 2>&1 || "
        f"docker network create {q(network)} >/dev/null)"
    ]
    if container:
        steps.append(
            f"({_on_network(network, container)} || "
            f"docker network connect {q(network)} {q(container)})"
        )
    return " && ".join(steps)


def prune_images(image: str, releases: str) -> str:
    """Remove the tags of IMAGE whose release folder under RELEASES is gone (an image is kept
    as long as its release: app_keep_releases of them); one in use stays. Nothing to do on a
    host without Docker."""
    return (
        f"if command -v docker >/dev/null; then docker images --format '{{{{.Tag}}}}' {q(image)} "
        f'| while read -r tag; do [ -d {q(releases)}/"$tag" ] || '
        f'docker rmi {q(image)}:"$tag" >/dev/null 2>&1 || true; done; fi'
    )


# ----------------------------------------------------------------------------- instances


def instance_form(unit: str, container: str) -> str:
    """Print one line: `systemd` when UNIT is active, `docker` when CONTAINER runs, else
    nothing (a host without Docker has no container)."""
    running = "'{{.State.Running}}'"
    return (
        f"if systemctl is-active -q {q(unit)}; then echo systemd; "
        f"elif command -v docker >/dev/null && "
        f'[ "$(docker inspect -f {running} {q(container)} 2>/dev/null)" = true ]; '
        "then echo docker; else echo; fi"
    )


def unit_stop(unit: str) -> str:
    """UNIT stopped and disabled (nothing to do when it is not there)."""
    return f"systemctl disable --now {q(unit)} >/dev/null 2>&1"


def container_remove(container: str) -> str:
    """CONTAINER removed (nothing to do when it, or Docker, is not there); always succeeds."""
    return (
        "if command -v docker >/dev/null; then "
        f"docker rm -f {q(container)} >/dev/null 2>&1; fi; true"
    )


def instance_stop(unit: str, container: str) -> str:
    """Stop an instance in both forms: the unit stopped and disabled, the container removed."""
    return f"{unit_stop(unit)}; {container_remove(container)}"


# ----------------------------------------------------------------------------- HAProxy


def slot_state(
    active_file: str, links: list[str], instances: list[tuple[str, str]], proxy: str
) -> str:
    """Print, one per line: the active slot's name (or nothing), where each of LINKS points
    (or nothing), the form each (unit, container) instance runs in (see instance_form), then
    `systemctl is-active` of the PROXY unit."""
    return "; ".join(
        [
            f"(cat {q(active_file)} 2>/dev/null || echo)",
            *(f"(readlink {q(link)} || echo)" for link in links),
            *(f"({instance_form(unit, container)})" for unit, container in instances),
            f"systemctl is-active {q(proxy)} || true",
        ]
    )


def haproxy_api(socket: str, *commands: str) -> str:
    """Send COMMANDS (one line, `;`-separated) to HAProxy's admin socket; prints its answer."""
    line = "; ".join(commands)
    return f"echo {q(line)} | socat -t 5 stdio {q('UNIX-CONNECT:' + socket)}"


def haproxy_wait(socket: str, backend: str, server: str, until: str, timeout: float) -> str:
    """Poll `show stat` until SERVER of BACKEND is UP (UNTIL='up') or has no request left in
    flight or queued (UNTIL='drained'); bounded by TIMEOUT seconds. Prints the last reading
    (`status current-sessions queued`); exits 1 when time ran out."""
    if until not in ("up", "drained"):
        raise ValueError(f"until must be 'up' or 'drained', got {until!r}")
    done = '[ "$status" = UP ]' if until == "up" else '[ "$cur" = 0 ] && [ "$queued" = 0 ]'
    # show stat columns: 1 pxname, 2 svname, 3 qcur, 5 scur, 18 status
    stat = (
        f"{haproxy_api(socket, 'show stat')} | "
        f"awk -F, -v b={q(backend)} -v s={q(server)} "
        "'$1 == b && $2 == s {print $18, $5, $3}'"
    )
    tries = max(1, int(timeout * 10))
    return (
        f"for i in $(seq {tries}); do set -- $({stat}); status=$1 cur=$2 queued=$3; "
        f'if {done}; then echo "$status $cur $queued"; exit 0; fi; sleep 0.1; done; '
        f'echo "$status $cur $queued"; exit 1'
    )
