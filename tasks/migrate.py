"""Database migration (checklist step 2): pending migrations of the release, in order, recorded
with checksums; CREATE INDEX CONCURRENTLY outside transactions; INVALID leftovers rebuilt;
a database migrated by hand adopted with an explicit baseline; the result verified."""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from typing import Any

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import python

from tasks import commands
from tasks.config import seconds
from tasks.rollout import phase_check
from tasks.runtime import DeployError, Plan, deployed_by, put_text, run_for, say, sh

VERSION = re.compile(r"^(\d+)_([A-Za-z0-9_]+)\.sql$")
FILE_MARK = "@@@ migration file "


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str
    down: str | None = None  # the down script beside it, if the release has one

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def parse_migration_files(output: str) -> list[Migration]:
    """The up migrations (NNN_name.sql) with their down scripts (NNN_name.down.sql), in
    version order, from the output of `commands.cat_files` with FILE_MARK."""
    files: dict[str, list[str]] = {}
    lines: list[str] = []
    for line in output.splitlines():
        if line.startswith(FILE_MARK):
            lines = files.setdefault(line[len(FILE_MARK) :], [])
        else:
            lines.append(line)
    text = {name: "\n".join(body) + "\n" for name, body in files.items()}
    found = []
    for filename in sorted(text):
        match = VERSION.match(filename)
        if match:  # NNN_name.down.sql does not match: its name has a dot
            down = text.get(filename[: -len(".sql")] + ".down.sql")
            found.append(Migration(match.group(1), match.group(2), text[filename], down))
    return found


def read_migrations(h, s: dict[str, Any], release_dir: str) -> list[Migration]:
    """The release's up migrations with their down scripts, in version order (one command)."""
    folder = f"{release_dir}/{s['migrate_dir']}"
    _, out, _ = sh(h, commands.cat_files(folder, "*.sql", FILE_MARK), what=f"reading {folder}")
    return parse_migration_files(out)


def read_history(h, s: dict[str, Any]) -> tuple[bool, bool, dict[str, str]]:
    """(history table exists, metrics exists, {version: checksum} of applied migrations)."""
    _, out, _ = sh(
        h,
        commands.psql(
            s,
            f"SELECT to_regclass('{commands.HISTORY_TABLE}') IS NOT NULL, "
            "to_regclass('metrics') IS NOT NULL",
        ),
        what="reading the migration history",
    )
    has_history, has_metrics = (v == "t" for v in out.strip().split("|"))
    applied: dict[str, str] = {}
    if has_history:
        _, out, _ = sh(
            h,
            commands.psql(
                s,
                f"SELECT version, checksum FROM {commands.HISTORY_TABLE} "
                "WHERE reverted_at IS NULL ORDER BY version",
            ),
        )
        applied = dict(line.split("|", 1) for line in out.splitlines() if line)
    return has_history, has_metrics, applied


def plan_migrations(
    migrations: list[Migration],
    has_history: bool,
    has_metrics: bool,
    applied: dict[str, str],
    baseline: str,
) -> tuple[list[Migration], list[Migration]]:
    """(baseline rows to record, migrations to apply); raises DeployError on a conflict."""
    adopt: list[Migration] = []
    if not has_history and has_metrics:
        if not baseline:
            raise DeployError(
                "the database has table metrics but no migration history: it was migrated by "
                "hand. Set migrate_baseline to the last migration already applied (e.g. 002) "
                "after checking the schema; the deploy never guesses it"
            )
        if baseline not in {m.version for m in migrations}:
            raise DeployError(f"migrate_baseline {baseline!r} is not a migration of this release")
        adopt = [m for m in migrations if m.version <= baseline]
        applied = {m.version: m.checksum for m in adopt}
    changed = [
        m.version
        for m in migrations
        if m.version in applied and applied[m.version] != m.checksum and m not in adopt
    ]
    if changed:
        raise DeployError(
            f"applied migration(s) {', '.join(changed)} changed since they were "
            "applied (checksum differs): write a new migration instead"
        )
    pending = [m for m in migrations if m.version not in applied]
    newest = max(applied, default="")
    late = [m.version for m in pending if m.version < newest]
    if late:
        raise DeployError(
            f"migration(s) {', '.join(late)} are older than the newest applied "
            f"({newest}) but were never applied: resolve by hand"
        )
    return adopt, pending


def pending_migrations(h, s: dict[str, Any], plan: Plan) -> list[Migration]:
    migrations = read_migrations(h, s, plan.release_dir)
    _, pending = plan_migrations(migrations, *read_history(h, s), s["migrate_baseline"])
    return pending


def _invalid_indexes(h, s: dict[str, Any], names: list[str]) -> list[str]:
    if not names:
        return []
    values = ", ".join(commands.sql_literal(n) for n in names)
    _, out, _ = sh(
        h,
        commands.psql(
            s,
            "SELECT c.relname FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid "
            f"WHERE NOT i.indisvalid AND c.relname IN ({values})",
        ),
    )
    return out.split()


def verify_objects(h, s: dict[str, Any], migrations: list[Migration]) -> list[dict[str, Any]]:
    """Every index and materialized view the applied migrations create: present and valid."""
    names = [n for m in migrations for n in commands.created_objects(m.sql)]
    if not names:
        return []
    _, out, _ = sh(h, commands.psql(s, commands.objects_state_sql(names)))
    found = {}
    for line in out.splitlines():
        name, kind, valid, size = line.split("|")
        found[name] = {
            "object": name,
            "kind": {"i": "index", "m": "materialized view"}.get(kind, kind),
            "valid": valid == "t",
            "bytes": int(size),
        }
    return [
        found.get(n, {"object": n, "kind": "missing", "valid": False, "bytes": 0}) for n in names
    ]


LOCK_TIMEOUT = "canceling statement due to lock timeout"


def _lock_holders(h, s: dict[str, Any]) -> str:
    """Who holds a lock on metrics (pid, state, age of its transaction, query), for the
    operator's message."""
    _, out, _ = sh(h, commands.psql(s, commands.lock_holders_sql("metrics")), check=False)
    return "; ".join(out.splitlines()) or "nobody now"


def _run_script(h, s: dict[str, Any], pending: list[Migration], by: str) -> tuple[bool, str]:
    """Apply PENDING in one psql script (INVALID leftovers of theirs dropped first)."""
    names = [n for m in pending for n in commands.created_objects(m.sql)]
    invalid = _invalid_indexes(h, s, names)
    if invalid:
        say(h, f"dropping INVALID index(es) left by an interrupted build: {invalid}")
    script = commands.migration_script(
        s, [(m.version, m.name, m.checksum, m.sql, m.down) for m in pending], invalid, by
    )
    path = f"{commands.paths(s)['state']}/migration.sql"
    put_text(h, script, path)
    say(
        h,
        f"applying {len(pending)} migration(s): "
        + ", ".join(f"{m.version}_{m.name}" for m in pending),
    )
    budget = int(seconds(s["migrate_statement_timeout"])) * len(pending) + 60
    ok, _, err = sh(
        h, commands.psql(s, None, path), timeout=budget, what="applying migrations", check=False
    )
    return ok, err.strip()[-2000:]


def _apply(h, s: dict[str, Any], pending: list[Migration], by: str) -> list[str]:
    """Apply PENDING; a migration that meets lock_timeout is retried after a doubling wait,
    at most migrate_lock_retries times (the history decides what is still pending: what
    committed stays). Returns the versions applied."""
    tries = s["migrate_lock_retries"] + 1
    wait = seconds(s["migrate_lock_backoff"])
    first = [m.version for m in pending]
    attempt = 0
    while True:
        attempt += 1
        ok, err = _run_script(h, s, pending, by)
        if ok:
            return first
        _, _, applied = read_history(h, s)
        pending = [m for m in pending if m.version not in applied]
        if LOCK_TIMEOUT not in err:
            raise DeployError(f"applying migrations failed: {err}")
        blocked = pending[0].version if pending else "?"
        if attempt == tries:
            raise DeployError(
                f"migration {blocked} could not take its lock within "
                f"{s['migrate_lock_timeout']} in {tries} attempt(s); lock on metrics held by: "
                f"{_lock_holders(h, s)}. Not applied (nothing of it recorded): "
                f"{', '.join(m.version for m in pending)}; applied: "
                f"{', '.join(v for v in first if v in applied) or 'none'}. Run the deploy again "
                "when that transaction has ended"
            )
        say(
            h,
            f"migration {blocked} met lock_timeout ({s['migrate_lock_timeout']}; lock held by "
            f"{_lock_holders(h, s)}): attempt {attempt}/{tries}, next in {wait:g}s",
        )
        time.sleep(wait)
        wait *= 2


@phase_check("migrate")
def _migrate(host, s: dict[str, Any], plan: Plan) -> None:
    run = run_for(host)
    migrations = read_migrations(host, s, plan.release_dir)
    adopt, pending = plan_migrations(migrations, *read_history(host, s), s["migrate_baseline"])
    if pending and not run.facts.get("backup", {}).get("verified"):
        raise DeployError("no verified backup of this run: refusing to migrate")
    by = deployed_by(s)
    if adopt:
        say(host, f"adopting a hand-migrated database at baseline {s['migrate_baseline']}")
        rows = [
            commands.record_migration_sql(m.version, m.name, m.checksum, by, m.down, True)
            for m in adopt
        ]
        sh(
            host,
            commands.psql(s, None, None, *commands.history_table_sql(), *rows),
            what="recording the baseline",
        )
    if pending:
        applied = _apply(host, s, pending, by)
        run.changed.append("migrations: " + ", ".join(applied))
    else:
        say(host, "no migration pending")
    applied_now = [m for m in migrations if m not in pending] + pending
    objects = verify_objects(host, s, applied_now)
    bad = [o["object"] for o in objects if not o["valid"]]
    for o in objects:
        run.metric(
            f"{o['kind']} {o['object']}",
            "exists and valid",
            f"{'valid' if o['valid'] else 'MISSING/INVALID'}, {o['bytes']} bytes",
            o["valid"],
        )
    run.facts["migrations"] = {
        "applied": [m.version for m in pending],
        "baseline": [m.version for m in adopt],
        "objects": objects,
    }
    if bad:
        raise DeployError(f"after migrating, these objects are missing or invalid: {bad}")


def _release_migrations(h, s: dict[str, Any], plan: Plan) -> list[Migration] | None:
    """The migrations the release holds: from its folder when built, else from the host's
    repository cache at its commit; None when the host has not fetched that commit yet."""
    try:
        return read_migrations(h, s, plan.release_dir)
    except DeployError:  # not built yet
        pass
    cache = commands.paths(s)["repo_cache"]
    read = commands.git_cat_files(cache, plan.commit, s["migrate_dir"], FILE_MARK)
    _, out, _ = sh(h, read, check=False)
    return parse_migration_files(out) if out.strip() else None


def _object_line(h, s: dict[str, Any], statement: str, name: str) -> str:
    stored = commands.index_columns(statement)
    if stored is None:
        return f"{name} (materialized view: its size is its query's result)"
    table, columns = stored
    _, out, _ = sh(h, commands.psql(s, commands.index_inputs_sql(table, columns)))
    rows, width, known = (int(x) for x in out.strip().split("|"))
    if rows < 0:
        return f"{name} (index on {table}, which does not exist yet: size unknown)"
    width += 8 * (len(columns) - known)  # a column without statistics: taken as 8 bytes
    size = commands.index_estimate_bytes(rows, [width])
    return f"{name} (index on {table} ({', '.join(columns)}), about {size / 2**20:.0f} MiB)"


def preview(s: dict[str, Any], plan: Plan) -> None:
    """--dry, on the migration host: the database work this deploy would do (read-only). A
    database it cannot read yet (no deploy has written the credentials file on this host) is
    said, not an error: a dry run changes nothing, that file included."""
    if not plan.is_migration_host:
        return
    try:
        _preview(s, plan)
    except DeployError as exc:
        say(host, f"--dry: the database work cannot be shown: {str(exc)[-300:]}")


def _preview(s: dict[str, Any], plan: Plan) -> None:
    migrations = _release_migrations(host, s, plan)
    _, size, _ = sh(
        host, commands.psql(s, "SELECT pg_size_pretty(pg_database_size(current_database()))")
    )
    if migrations is None:
        say(
            host,
            f"--dry: the migrations of {plan.release} are not known yet (commit "
            f"{plan.commit[:12]} is not on this host; the build fetches it)",
        )
        return
    try:
        _, pending = plan_migrations(migrations, *read_history(host, s), s["migrate_baseline"])
    except DeployError as exc:
        say(host, f"--dry: the deploy would stop before the backup: {exc}")
        return
    backup = (
        f"a backup would be taken first (pg_dump of a {size.strip()} database)"
        if pending or plan.release_changes
        else "no backup (nothing would change)"
    )
    say(host, f"--dry: {len(pending)} migration(s) pending; {backup}")
    for m in pending:
        created = [
            _object_line(host, s, st.sql, name)
            for st in commands.split_statements(m.sql)
            for name in commands.created_objects(st.sql)
        ]
        say(
            host,
            f"--dry:   {m.version}_{m.name} creates {'; '.join(created) or 'no index or view'}",
        )


@deploy("Database migration")
def migrate(s: dict[str, Any], plan: Plan) -> None:
    if plan.is_migration_host:
        python.call(
            name="Ensure the database schema matches the release", function=_migrate, s=s, plan=plan
        )
