"""A release's migrations and the database's history of them, read the same way by every phase
that needs them (pre-flight's lint, backup, migrate, rollback).

A migration is `NNN_name.sql` in the release's `migrate_dir`, with its down script beside it
(`NNN_name.down.sql`) and, when it changes data of a table in use, a backfill
(`NNN_name.backfill.sql`: see Backfill), run in batches after it. One whose header (the
comment lines before its first statement) says `-- deploy: contract` removes what an older
release still uses: it runs only after every app host serves the new release
(tasks/migrate.py); every other migration expands the schema and runs before the first host
switches.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from tasks.commands import git, migration_sql, postgres, shell
from tasks.config import Settings
from tasks.context import Plan
from tasks.remote import DeployError
from tasks.transport import sh

VERSION = re.compile(r"^(\d+)_([A-Za-z0-9_]+)\.sql$")
FILE_MARK = "@@@ migration file "
CONTRACT_HEADER = re.compile(r"^--\s*deploy:\s*contract\s*$", re.I)
BACKFILL_HEADER = re.compile(r"^--\s*deploy:\s*backfill\s+(\w+)\.(\w+)\s*$", re.I)
BACKFILL_BOUNDS = (re.compile(r"(?<!:):lo\b"), re.compile(r"(?<!:):hi\b"))
EXPAND, CONTRACT = "expand", "contract"


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str
    down: str | None = None  # the down script beside it, if the release has one
    backfill: str | None = None  # NNN_name.backfill.sql, if the release has one

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def filename(self) -> str:
        return f"{self.version}_{self.name}.sql"

    @property
    def phase(self) -> str:
        """'contract' when the header says `-- deploy: contract`, else 'expand'."""
        for line in self.sql.splitlines():
            text = line.strip()
            if not text:
                continue
            if not text.startswith("--"):
                break
            if CONTRACT_HEADER.match(text):
                return CONTRACT
        return EXPAND

    @property
    def contract(self) -> bool:
        return self.phase == CONTRACT


@dataclass(frozen=True)
class Backfill:
    """The data change of a migration, run in batches outside any long transaction.

    Its file is a header line `-- deploy: backfill TABLE.KEY` (KEY: an integer column, the
    primary key) and one UPDATE that touches only the rows whose KEY is in [:lo, :hi). Each
    batch is a transaction of its own that also records how far the backfill got, so a run
    killed in the middle resumes where it stopped and never runs a batch twice. The range is
    fixed when the backfill starts: rows written later are the expand's business (a trigger, or
    the release writing both columns)."""

    table: str
    key: str
    statement: str


def parse_backfill(text: str) -> Backfill:
    """TEXT of a NNN_name.backfill.sql; ValueError saying what is wrong with it."""
    lines = text.splitlines()
    header = next((BACKFILL_HEADER.match(x.strip()) for x in lines if x.strip()), None)
    if header is None:
        raise ValueError("its first line must be `-- deploy: backfill TABLE.KEY`")
    body = [x for x in lines if x.strip() and not x.strip().startswith("--")]
    statement = "\n".join(body).strip().rstrip(";").strip()
    if ";" in statement:
        raise ValueError("it must hold one statement")
    if not statement.upper().startswith("UPDATE "):
        raise ValueError("its statement must be an UPDATE")
    if " RETURNING " in f" {statement.upper()} ":
        raise ValueError("its UPDATE must not have a RETURNING clause (the runner adds one)")
    if not all(bound.search(statement) for bound in BACKFILL_BOUNDS):
        raise ValueError(
            f"its UPDATE must limit the rows to {header.group(2)} >= :lo AND "
            f"{header.group(2)} < :hi (one batch)"
        )
    return Backfill(header.group(1), header.group(2), statement)


def backfill_problems(migrations: list[Migration]) -> list[str]:
    """What is wrong with the backfills of MIGRATIONS, one line per file."""
    problems = []
    for m in migrations:
        if m.backfill is not None and m.contract:
            problems.append(
                f"{m.version}_{m.name}.backfill.sql: a contract migration has no backfill (its "
                "data must be in place before the release that needs it serves: an expand's)"
            )
        elif m.backfill is not None:
            try:
                parse_backfill(m.backfill)
            except ValueError as exc:
                problems.append(f"{m.version}_{m.name}.backfill.sql: {exc}")
    return problems


def cut_after_backfills(pending: list[Migration]) -> list[list[Migration]]:
    """PENDING cut after each migration that has a backfill: its backfill runs before the
    next migration, which may rely on the data it fills."""
    groups: list[list[Migration]] = [[]]
    for m in pending:
        groups[-1].append(m)
        if m.backfill:
            groups.append([])
    return [g for g in groups if g]


def parse_migration_files(output: str) -> list[Migration]:
    """The up migrations (NNN_name.sql) with their down scripts (NNN_name.down.sql) and
    backfills (NNN_name.backfill.sql), in version order, from the output of
    `git.cat_files` with FILE_MARK."""
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
            stem = filename[: -len(".sql")]
            found.append(
                Migration(
                    match.group(1),
                    match.group(2),
                    text[filename],
                    text.get(stem + ".down.sql"),
                    text.get(stem + ".backfill.sql"),
                )
            )
    return found


def read_migrations(h, s: Settings, release_dir: str) -> list[Migration]:
    """The release's up migrations with their down scripts, in version order (one command)."""
    folder = f"{release_dir}/{s.migrate_dir}"
    _, out, _ = sh(h, git.cat_files(folder, "*.sql", FILE_MARK), what=f"reading {folder}")
    return parse_migration_files(out)


def release_migrations(h, s: Settings, plan: Plan) -> list[Migration]:
    """The migrations the release holds, from its commit (built or not: the repository cache,
    or a fetch that changes nothing on the host)."""
    read = git.git_cat_files(
        s.app_repo_url,
        shell.paths(s)["repo_cache"],
        plan.commit,
        s.migrate_dir,
        FILE_MARK,
    )
    _, out, _ = sh(h, read, timeout=120, what=f"reading the migrations of {plan.release}")
    return parse_migration_files(out)


def read_history(h, s: Settings) -> tuple[bool, bool, dict[str, str]]:
    """(history table exists, metrics exists, {version: checksum} of applied migrations)."""
    _, out, _ = sh(h, postgres.history(s), what="reading the migration history")
    first, *rows = out.splitlines()
    has_history, has_metrics = (v == "t" for v in first.split())
    return has_history, has_metrics, dict(row.split("|", 1) for row in rows if row)


def plan_migrations(
    migrations: list[Migration],
    has_history: bool,
    has_metrics: bool,
    applied: dict[str, str],
    baseline: str,
) -> tuple[list[Migration], list[Migration]]:
    """(baseline rows to record, migrations to apply); raises DeployError on a conflict.

    A contract migration may stay pending behind newer expand migrations (it waits for a
    rollout that reaches every host); any other gap in the history is an error."""
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
    late = [m.version for m in pending if m.version < newest and not m.contract]
    if late:
        raise DeployError(
            f"migration(s) {', '.join(late)} are older than the newest applied "
            f"({newest}) but were never applied: resolve by hand"
        )
    return adopt, pending


def pending_migrations(h, s: Settings, plan: Plan) -> list[Migration]:
    migrations = release_migrations(h, s, plan)
    _, pending = plan_migrations(migrations, *read_history(h, s), s.migrate_baseline)
    return pending


def applied_contracts(h, s: Settings) -> dict[str, str]:
    """{version: name} of the contract migrations applied and not reverted (read-only: no
    history, or one from before phases were recorded, has none)."""
    _, exists, _ = sh(
        h, postgres.psql(s, f"SELECT to_regclass('{postgres.HISTORY_TABLE}') IS NOT NULL")
    )
    if exists.strip() != "t":
        return {}
    _, out, _ = sh(
        h,
        postgres.psql(
            s,
            f"SELECT version, name FROM {postgres.HISTORY_TABLE} m WHERE reverted_at IS NULL "
            f"AND to_jsonb(m)->>'phase' = {postgres.sql_literal(CONTRACT)} "
            "ORDER BY version",
        ),
        what="reading the contract migrations applied",
    )
    return dict(line.split("|", 1) for line in out.splitlines() if line)


def _down_script(h, s: Settings, version: str, name: str, recorded: bool) -> str:
    """A file on H holding the down script of VERSION: the one recorded when it was
    applied, or (history written before down scripts were recorded) the newest release on the
    host that has it."""
    path = f"{shell.paths(s)['state']}/revert_{version}.sql"
    if recorded:
        query = (
            f"SELECT down_sql FROM {postgres.HISTORY_TABLE} "
            f"WHERE version = {postgres.sql_literal(version)}"
        )
        sh(
            h,
            f"umask 077 && {postgres.psql(s, query)} > {shell.q(path)}",
            what="reading " + path,
        )
        return path
    pattern = f"{shell.paths(s)['releases']}/*/{s.migrate_dir}/{version}_{name}.down.sql"
    _, found, _ = sh(h, f"ls -1t {pattern} 2>/dev/null | head -n 1 || true")
    if not found.strip():
        raise DeployError(
            f"no down script for migration {version}_{name}: none was recorded and no release "
            "on the host has one; revert it by hand"
        )
    return found.strip()


def revert_migration(h, s: Settings, version: str, name: str, recorded: bool) -> None:
    """Run VERSION's down script (see _down_script) and mark it reverted in the history."""
    down = _down_script(h, s, version, name, recorded)
    sh(h, postgres.psql(s, None, down), timeout=600, what=f"reverting {version}")
    record = postgres.psql(
        s,
        None,
        None,
        *migration_sql.history_table_sql(),
        migration_sql.revert_migration_sql(version),
    )
    sh(h, record, what="recording the revert")
