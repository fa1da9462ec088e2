"""The migration lint: squawk (a PostgreSQL migration linter) on every pending migration, before
anything changes, judged by what a release that still serves would meet.

Rules our runner already makes safe are off (it sets lock_timeout and statement_timeout itself,
runs a CONCURRENTLY migration outside a transaction and any other inside one) and so are rules
of taste that break nothing (column types, IDENTITY). What is left either removes what an older
release uses (allowed only in a contract migration, which runs after every host serves the new
release) or locks a table the serving release reads and writes (refused anywhere). squawk's own
`-- squawk-ignore RULE` comments mark a reviewed exception.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tasks.config import Settings
from tasks.context import Plan
from tasks.migrations import (
    Migration,
    backfill_problems,
    plan_migrations,
    read_history,
    release_migrations,
)
from tasks.remote import DeployError

SQUAWK_VERSION = "2.70.0"  # pinned in pyproject.toml (PyPI squawk-cli)

EXCLUDED = (
    "require-lock-timeout",  # the runner sets migrate_lock_timeout
    "require-statement-timeout",  # the runner sets migrate_statement_timeout
    "require-timeout-settings",
    "prefer-robust-stmts",  # a non-concurrent migration runs in one transaction with its record
    "ban-concurrent-index-creation-in-transaction",  # CONCURRENTLY runs outside a transaction
    "prefer-identity",
    "prefer-bigint-over-int",
    "prefer-bigint-over-smallint",
    "prefer-text-field",
    "prefer-timestamptz",
    "ban-char-field",
)

# what each rule would break while an older release serves, and how to write it instead
CONTRACT_ONLY = {
    "ban-drop-column": (
        "hosts still serving the old release read this column: every query that names it "
        "fails until the last host is switched",
        "stop reading and writing the column in this release; drop it in a later migration "
        "headed `-- deploy: contract` (it runs after every host serves the release)",
    ),
    "ban-drop-table": (
        "hosts still serving the old release query this table: they fail until switched",
        "stop using the table in this release; drop it in a migration headed `-- deploy: contract`",
    ),
    "ban-drop-view": (
        "hosts still serving the old release may query this view: they fail until switched",
        "stop using the view in this release; drop it in a migration headed `-- deploy: contract`",
    ),
    "ban-drop-function": (
        "the old release, or a trigger it relies on, may call this function",
        "stop calling it in this release; drop it in a migration headed `-- deploy: contract`",
    ),
    "renaming-column": (
        "the old release names the column by its old name: its queries fail from the rename on",
        "expand: add the new column, a trigger that fills it from the old one for writers "
        "that still write the old name, and a backfill; this release reads the new column; "
        "contract (`-- deploy: contract`): drop the trigger and the old column",
    ),
    "renaming-table": (
        "the old release names the table by its old name: its queries fail from the rename on",
        "expand: create the new table (or a view under the new name) kept in step with the "
        "old one; this release uses the new name; contract (`-- deploy: contract`): drop the "
        "old one",
    ),
    "changing-column-type": (
        "the table is rewritten under an ACCESS EXCLUSIVE lock and the old release reads a "
        "type it was not built for",
        "expand: add a column of the new type filled by a trigger and a backfill; this "
        "release reads it; contract (`-- deploy: contract`): drop the old column",
    ),
    "adding-required-field": (
        "the old release inserts rows without this column: every insert fails",
        "expand: add the column nullable or with a default; contract (`-- deploy: "
        "contract`): add NOT NULL once every writer fills it",
    ),
    "adding-not-nullable-field": (
        "SET NOT NULL scans the table under an ACCESS EXCLUSIVE lock, and the old release "
        "may write NULL there",
        "expand: a CHECK (col IS NOT NULL) NOT VALID constraint, then VALIDATE CONSTRAINT; "
        "contract (`-- deploy: contract`): SET NOT NULL (cheap once validated)",
    ),
    "ban-drop-not-null": (
        "the old release may not expect NULL in this column",
        "drop NOT NULL in a migration headed `-- deploy: contract`",
    ),
}
SYNTAX = (
    "squawk cannot parse the statement: psql would most likely stop at it in mid-deploy",
    "fix the statement (run it against a copy of the database to see PostgreSQL's error)",
)
LOCKING = (
    "the statement locks a table the serving release reads and writes for as long as it runs",
    "use the non-blocking form (CREATE/DROP INDEX CONCURRENTLY, a constraint added NOT VALID "
    "and validated in a second statement), or add `-- squawk-ignore RULE` above it once a "
    "review found the table small",
)

_INDEX_ON = re.compile(r"CREATE\s+(?:UNIQUE\s+)?INDEX\b.*?\bON\s+(?:ONLY\s+)?(\w+)", re.I | re.S)


@dataclass(frozen=True)
class Finding:
    file: str
    line: int  # 1-based
    rule: str
    message: str
    statement: str  # the statement's text, on one line
    refused: bool
    breaks: str
    instead: str

    def text(self) -> str:
        what = "REFUSED" if self.refused else "warning"
        return (
            f"{what}: {self.file}:{self.line}: {self.rule}: `{self.statement}`\n"
            f"      would break: {self.breaks}\n"
            f"      instead:     {self.instead}"
        )


@dataclass(frozen=True)
class LintResult:
    mode: str
    files: list[str]
    findings: list[Finding]
    seconds: float

    @property
    def refused(self) -> list[Finding]:
        return [f for f in self.findings if f.refused] if self.mode == "error" else []

    def summary(self) -> str:
        if self.mode == "off":
            return "migration lint off (migrate_lint: off)"
        if not self.files:
            return "migration lint: no migration pending"
        bad = [f for f in self.findings if f.refused]
        verdict = (
            f"{len(bad)} statement(s) would break the serving release"
            if bad
            else "nothing breaks the serving release"
        )
        notes = len(self.findings) - len(bad)
        return (
            f"migration lint (squawk {SQUAWK_VERSION}) of {', '.join(self.files)}: {verdict}"
            + (f", {notes} note(s)" if notes else "")
            + f" ({self.seconds:.2f}s)"
        )

    def as_record(self) -> dict:
        return {
            "mode": self.mode,
            "files": self.files,
            "seconds": round(self.seconds, 3),
            "findings": [asdict(f) for f in self.findings],
        }


def squawk_binary() -> str:
    """squawk beside this Python (the project's virtualenv), else on PATH."""
    beside = Path(sys.executable).parent / "squawk"
    found = str(beside) if beside.exists() else shutil.which("squawk")
    if not found:
        raise DeployError(
            f"squawk is not installed (pip install squawk-cli=={SQUAWK_VERSION}); or set "
            "migrate_lint: off"
        )
    return found


def squawk_command(binary: str, files: list[str]) -> list[str]:
    return [binary, "--reporter", "json", "--exclude", ",".join(EXCLUDED), *files]


def _statement(sql: str, first: int, last: int) -> str:
    """The lines FIRST..LAST (0-based) of SQL on one line, comments left out."""
    lines = sql.splitlines()[first : last + 1]
    text = " ".join(line.split("--", 1)[0].strip() for line in lines)
    return " ".join(text.split())[:200]


def _on_new_relation(statement: str, sql: str) -> bool:
    """STATEMENT builds an index on a table or materialized view that the same migration
    creates (nothing serves from it yet, so nothing waits on the lock)."""
    match = _INDEX_ON.search(statement)
    if not match:
        return False
    created = re.compile(
        rf"CREATE\s+(?:TABLE|MATERIALIZED\s+VIEW)\s+(?:IF\s+NOT\s+EXISTS\s+)?{match.group(1)}\b",
        re.I,
    )
    return bool(created.search(sql))


def judge(raw: list[dict], migrations: list[Migration], serving: bool) -> list[Finding]:
    """squawk's JSON findings as Findings: refused when a release serving now would meet them
    (SERVING: the database is in use; a new one has nothing to break)."""
    by_file = {m.filename: m for m in migrations}
    findings = []
    for item in raw:
        migration = by_file.get(Path(item["file"]).name)
        if migration is None or item["rule_name"] in EXCLUDED:
            continue
        statement = _statement(migration.sql, item["line"], item.get("line_end", item["line"]))
        rule = item["rule_name"]
        if rule == "require-concurrent-index-creation" and _on_new_relation(
            statement, migration.sql
        ):
            continue
        breaks, instead = CONTRACT_ONLY.get(rule, SYNTAX if rule == "syntax-error" else LOCKING)
        allowed = migration.contract and rule in CONTRACT_ONLY
        findings.append(
            Finding(
                file=migration.filename,
                line=item["line"] + 1,
                rule=rule,
                message=item["message"],
                statement=statement,
                refused=serving and not allowed,
                breaks=breaks if serving else "nothing serves from this database yet",
                instead=instead.replace("RULE", rule),
            )
        )
    return findings


def lint(migrations: list[Migration], mode: str, serving: bool) -> LintResult:
    """Run squawk on MIGRATIONS (their files as the release has them) and judge the findings."""
    files = [m.filename for m in migrations]
    if mode == "off" or not migrations:
        return LintResult(mode, files, [], 0.0)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mdd-lint-") as tmp:
        for m in migrations:
            (Path(tmp) / m.filename).write_text(m.sql)
        try:
            done = subprocess.run(
                squawk_command(squawk_binary(), files),
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=120,
            )
        except subprocess.TimeoutExpired:
            raise DeployError("squawk did not finish within 120s") from None
    if done.returncode not in (0, 1):
        raise DeployError(f"squawk failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    try:
        raw = json.loads(done.stdout or "[]")
    except ValueError:
        raise DeployError(f"squawk's output is not JSON: {done.stdout[:300]}") from None
    return LintResult(mode, files, judge(raw, migrations, serving), time.monotonic() - started)


def lint_pending(h, s: Settings, plan: Plan) -> tuple[LintResult, list[Migration]]:
    """squawk on the migrations this deploy would apply on host H's database, judged against
    the release serving now, and those migrations; raises DeployError for a history the
    migrate phase refuses."""
    migrations = release_migrations(h, s, plan)
    has_history, has_metrics, applied = read_history(h, s)
    _, pending = plan_migrations(migrations, has_history, has_metrics, applied, s.migrate_baseline)
    bad_backfills = backfill_problems(pending)
    if bad_backfills:
        raise DeployError("; ".join(bad_backfills))
    return lint(pending, s.migrate_lint, serving=has_metrics), pending
