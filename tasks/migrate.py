"""Database migration (checklist step 2): pending migrations of the release, in order, recorded
with checksums; CREATE INDEX CONCURRENTLY outside transactions; INVALID leftovers rebuilt;
a database migrated by hand adopted with an explicit baseline; the result verified.

Expand before contract: a migration headed `-- deploy: contract` (it removes what an older
release uses) is held back while the others run before the rollout, and runs at the end of the
same run, under the same lock, only once every app host serves the new release and the
monitoring window passed. A run that fails or rolls back leaves it pending for the next one.
"""

from __future__ import annotations

import time
from typing import Any

from pyinfra import host, inventory
from pyinfra.api import deploy
from pyinfra.operations import python

from tasks import commands, lint
from tasks.config import seconds
from tasks.migrations import (
    Migration,
    plan_migrations,
    read_history,
    read_migrations,
    release_migrations,
)
from tasks.rollout import phase_check
from tasks.runtime import (
    APP_GROUP,
    DEPLOYMENT,
    DeployError,
    Plan,
    connected,
    deployed_by,
    put_text,
    run_for,
    say,
    sh,
)


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
    """Every index and materialized view the applied migrations create (and no later one
    drops): present and valid."""
    dropped = {n for m in migrations for n in commands.dropped_objects(m.sql)}
    names = [n for m in migrations for n in commands.created_objects(m.sql) if n not in dropped]
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
        s, [(m.version, m.name, m.checksum, m.sql, m.down, m.phase) for m in pending], invalid, by
    )
    path = f"{commands.paths(s)['state']}/migration.sql"
    put_text(h, script, path)
    say(
        h,
        f"applying {len(pending)} {pending[0].phase} migration(s): "
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
    held = [m for m in pending if m.contract]
    pending = [m for m in pending if not m.contract]
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
        say(host, "no expand migration pending")
    if held:
        say(
            host,
            f"held back until every app host serves {plan.release}: contract migration(s) "
            + ", ".join(m.filename for m in held),
        )
    applied_now = [m for m in migrations if m not in held]
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
        "contract_pending": [m.version for m in held],
        "objects": objects,
    }
    if bad:
        raise DeployError(f"after migrating, these objects are missing or invalid: {bad}")


def _not_serving(s: dict[str, Any], plan: Plan) -> list[str]:
    """Why a contract migration cannot run yet: every app host of the inventory (those
    `--limit` left out included) must serve PLAN's release, and no host of this run failed."""
    problems = []
    for h in sorted(inventory.get_group(APP_GROUP, None) or [], key=lambda h: h.name):
        run = DEPLOYMENT.runs.get(h.name)
        if run is not None:
            if run.outcome.startswith("failed"):
                problems.append(f"{h.name} failed ({run.failure})")
            elif s["release_method"] != "helm" and run.facts.get("serving") != plan.release:
                problems.append(f"{h.name} serves {run.facts.get('serving')}")
            continue
        try:
            connected(h, "to check which release it serves")
            _, current, _ = sh(h, f"readlink {commands.q(commands.paths(s)['current'])} || true")
        except Exception as exc:  # noqa: BLE001 - an unreachable host is a reason, not a crash
            problems.append(f"{h.name} could not be checked ({exc})")
            continue
        if current.strip() != plan.release_dir:
            problems.append(f"{h.name} (outside this run) serves {current.strip() or 'nothing'}")
    return problems


@phase_check("contract")
def _contract(host, s: dict[str, Any], plan: Plan) -> None:
    run = run_for(host)
    facts = run.facts.setdefault("migrations", {})
    if not facts.get("contract_pending"):  # what the migrate phase held back, under this lock
        say(host, "no contract migration pending")
        return
    migrations = read_migrations(host, s, plan.release_dir)
    held = [m for m in migrations if m.version in facts["contract_pending"]]
    names = ", ".join(m.filename for m in held)
    problems = _not_serving(s, plan)
    if problems:
        say(
            host,
            f"contract migration(s) {names} NOT run: {'; '.join(problems)}. They stay pending; "
            "the next deploy that brings every app host to this release runs them",
        )
        return
    if not run.facts.get("backup", {}).get("verified"):
        raise DeployError("no verified backup of this run: refusing to run contract migrations")
    applied = _apply(host, s, held, deployed_by(s))
    run.changed.append("contract migrations: " + ", ".join(applied))
    facts["contract_applied"] = applied
    facts["contract_pending"] = []
    objects = verify_objects(host, s, migrations)
    bad = [o["object"] for o in objects if not o["valid"]]
    if bad:
        raise DeployError(f"after the contract migrations, missing or invalid: {bad}")


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
    migrations = release_migrations(host, s, plan)
    _, size, _ = sh(
        host, commands.psql(s, "SELECT pg_size_pretty(pg_database_size(current_database()))")
    )
    has_history, has_metrics, applied = read_history(host, s)
    try:
        _, pending = plan_migrations(
            migrations, has_history, has_metrics, applied, s["migrate_baseline"]
        )
    except DeployError as exc:
        say(host, f"--dry: the deploy would stop before the backup: {exc}")
        return
    backup = (
        f"a backup would be taken first (pg_dump of a {size.strip()} database)"
        if pending or plan.release_changes
        else "no backup (nothing would change)"
    )
    say(host, f"--dry: {len(pending)} migration(s) pending; {backup}")
    result = lint.lint(pending, s["migrate_lint"], serving=has_metrics)
    say(host, f"--dry: {result.summary()}")
    for finding in result.findings:
        say(host, f"--dry: {finding.text()}")
    if result.refused:
        say(host, "--dry: the deploy would stop in pre-flight: the lint refuses the above")
    for m in pending:
        created = [
            _object_line(host, s, st.sql, name)
            for st in commands.split_statements(m.sql)
            for name in commands.created_objects(st.sql)
        ]
        when = (
            "after every app host serves the release: contract"
            if m.contract
            else "before the rollout: expand"
        )
        say(
            host,
            f"--dry:   {m.version}_{m.name} creates {'; '.join(created) or 'no index or view'}"
            f" (runs {when})",
        )


@deploy("Database migration")
def migrate(s: dict[str, Any], plan: Plan) -> None:
    if plan.is_migration_host:
        python.call(
            name="Ensure the database schema matches the release", function=_migrate, s=s, plan=plan
        )


@deploy("Contract migrations")
def contract(s: dict[str, Any], plan: Plan) -> None:
    """The migrations headed `-- deploy: contract`, once every app host serves the release."""
    if plan.is_migration_host:
        python.call(
            name=f"Ensure the contract migrations run once every app host serves {plan.release}",
            function=_contract,
            s=s,
            plan=plan,
        )
