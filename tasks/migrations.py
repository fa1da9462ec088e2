"""A release's migrations and the database's history of them, read the same way by every phase
that needs them (pre-flight's lint, backup, migrate, rollback).

A migration is `NNN_name.sql` in the release's `migrate_dir`, with its down script beside it
(`NNN_name.down.sql`). One whose header (the comment lines before its first statement) says
`-- deploy: contract` removes what an older release still uses: it runs only after every app
host serves the new release (tasks/migrate.py); every other migration expands the schema and
runs before the first host switches.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from tasks import commands
from tasks.runtime import DeployError, Plan, sh

VERSION = re.compile(r"^(\d+)_([A-Za-z0-9_]+)\.sql$")
FILE_MARK = "@@@ migration file "
CONTRACT_HEADER = re.compile(r"^--\s*deploy:\s*contract\s*$", re.I)
EXPAND, CONTRACT = "expand", "contract"


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str
    down: str | None = None  # the down script beside it, if the release has one

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


def release_migrations(h, s: dict[str, Any], plan: Plan) -> list[Migration]:
    """The migrations the release holds, from its commit (built or not: the repository cache,
    or a fetch that changes nothing on the host)."""
    read = commands.git_cat_files(
        s["app_repo_url"],
        commands.paths(s)["repo_cache"],
        plan.commit,
        s["migrate_dir"],
        FILE_MARK,
    )
    _, out, _ = sh(h, read, timeout=120, what=f"reading the migrations of {plan.release}")
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


def pending_migrations(h, s: dict[str, Any], plan: Plan) -> list[Migration]:
    migrations = release_migrations(h, s, plan)
    _, pending = plan_migrations(migrations, *read_history(h, s), s["migrate_baseline"])
    return pending


def applied_contracts(h, s: dict[str, Any]) -> dict[str, str]:
    """{version: name} of the contract migrations applied and not reverted (read-only: no
    history, or one from before phases were recorded, has none)."""
    _, exists, _ = sh(
        h, commands.psql(s, f"SELECT to_regclass('{commands.HISTORY_TABLE}') IS NOT NULL")
    )
    if exists.strip() != "t":
        return {}
    _, out, _ = sh(
        h,
        commands.psql(
            s,
            f"SELECT version, name FROM {commands.HISTORY_TABLE} m WHERE reverted_at IS NULL "
            f"AND to_jsonb(m)->>'phase' = {commands.sql_literal(CONTRACT)} "
            "ORDER BY version",
        ),
        what="reading the contract migrations applied",
    )
    return dict(line.split("|", 1) for line in out.splitlines() if line)
