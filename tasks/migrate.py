"""Database migration (checklist step 2): pending migrations of the release, in order, recorded
with checksums; CREATE INDEX CONCURRENTLY outside transactions; INVALID leftovers rebuilt;
a database migrated by hand adopted with an explicit baseline; the result verified.

Expand before contract: a migration headed `-- deploy: contract` (it removes what an older
release uses) is held back while the others run before the rollout, and runs at the end of the
same run, under the same lock, only once every app host serves the new release and the
monitoring window passed. A run that fails or rolls back leaves it pending for the next one.

An expand migration must leave the serving release working. The lint catches what it can read;
after the expand migrations ran, every host that answered before is asked again (its health
check and `migrate_probe_path`), and if one no longer answers, the migrations of this run are
reverted with their down scripts before any host switches.
"""

from __future__ import annotations

import random
import time
from typing import Any

from gevent.pool import Pool
from pyinfra import host
from pyinfra.operations import python

from tasks import lint
from tasks.commands import migration_sql, postgres, shell
from tasks.config import Settings, seconds
from tasks.context import Migrations, Plan, Run, RunContext
from tasks.guard import Gate
from tasks.hosts import connected, inventory_app_hosts
from tasks.method import Method
from tasks.migrations import (
    Migration,
    backfill_problems,
    cut_after_backfills,
    parse_backfill,
    plan_migrations,
    read_history,
    read_migrations,
    release_migrations,
    revert_migration,
)
from tasks.operations import deploy
from tasks.outcome import phase_check
from tasks.remote import DeployError, timed_get
from tasks.settings import deployed_by
from tasks.transport import remote, say, sh


def _invalid_indexes(h, s: Settings, names: list[str]) -> list[str]:
    if not names:
        return []
    values = ", ".join(postgres.sql_literal(n) for n in names)
    _, out, _ = sh(
        h,
        postgres.psql(
            s,
            "SELECT c.relname FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid "
            f"WHERE NOT i.indisvalid AND c.relname IN ({values})",
        ),
    )
    return out.split()


def verify_objects(h, s: Settings, migrations: list[Migration]) -> list[dict[str, Any]]:
    """Every index and materialized view the applied migrations create (and no later one
    drops): present and valid."""
    dropped = {n for m in migrations for n in migration_sql.dropped_objects(m.sql)}
    names = [
        n for m in migrations for n in migration_sql.created_objects(m.sql) if n not in dropped
    ]
    if not names:
        return []
    _, out, _ = sh(h, postgres.psql(s, postgres.objects_state_sql(names)))
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


def _lock_holders(h, s: Settings) -> str:
    """Who holds a lock on metrics (pid, state, age of its transaction, query), for the
    operator's message."""
    _, out, _ = sh(h, postgres.psql(s, postgres.lock_holders_sql("metrics")), check=False)
    return "; ".join(out.splitlines()) or "nobody now"


def _run_script(gate: Gate, pending: list[Migration], by: str) -> tuple[bool, str]:
    """Apply PENDING in one psql script (INVALID leftovers of theirs dropped first), the guard
    before each step."""
    h, s = gate.h, gate.s
    names = [n for m in pending for n in migration_sql.created_objects(m.sql)]
    invalid = _invalid_indexes(h, s, names)
    if invalid:
        say(h, f"dropping INVALID index(es) left by an interrupted build: {invalid}")
    script = migration_sql.migration_script(
        s,
        [(m.version, m.name, m.checksum, m.sql, m.down, m.phase) for m in pending],
        invalid,
        by,
        gate.command,
    )
    path = f"{shell.paths(s)['state']}/migration.sql"
    remote(h).put_text(script, path)
    say(
        h,
        f"applying {len(pending)} {pending[0].phase} migration(s): "
        + ", ".join(f"{m.version}_{m.name}" for m in pending),
    )
    budget = int(seconds(s.migrate_statement_timeout)) * len(pending) + 60
    steps = sum(len(migration_sql.split_statements(m.sql)) for m in pending)  # guards, at most
    budget += steps * (int(seconds(s.deploy_guard_max_wait)) + 5)
    ok, _, err = sh(
        h, postgres.psql(s, None, path), timeout=budget, what="applying migrations", check=False
    )
    gate.report(err)
    return ok, err.strip()[-2000:]


def _apply(gate: Gate, pending: list[Migration], by: str) -> list[str]:
    """Apply PENDING; a migration that meets lock_timeout is retried after a doubling wait,
    at most migrate_lock_retries times (the history decides what is still pending: what
    committed stays). Returns the versions applied."""
    h, s = gate.h, gate.s
    tries = s.migrate_lock_retries + 1
    wait = seconds(s.migrate_lock_backoff)
    first = [m.version for m in pending]
    attempt = 0
    while True:
        attempt += 1
        ok, err = _run_script(gate, pending, by)
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
                f"{s.migrate_lock_timeout} in {tries} attempt(s); lock on metrics held by: "
                f"{_lock_holders(h, s)}. Not applied (nothing of it recorded): "
                f"{', '.join(m.version for m in pending)}; applied: "
                f"{', '.join(v for v in first if v in applied) or 'none'}. Run the deploy again "
                "when that transaction has ended"
            )
        say(
            h,
            f"migration {blocked} met lock_timeout ({s.migrate_lock_timeout}; lock held by "
            f"{_lock_holders(h, s)}): attempt {attempt}/{tries}, next in {wait:g}s",
        )
        time.sleep(wait)
        wait *= 2


PROBES_AT_ONCE = 16  # app hosts asked at the same time (one SSH channel each)


def _probe(h, s: Settings) -> str | None:
    """None when the service on H answers its health check and `migrate_probe_path` with 200
    (through app_port, a number no cache has seen in the probe path); else what it answered."""
    base = f"http://127.0.0.1:{s.app_port}"
    probe = s.migrate_probe_path.replace("{n}", str(random.randrange(3600, 86400)))
    for path in (s.app_health_path, probe):
        code, _, body = timed_get(remote(h), base + path)
        if code != 200:
            return f"{path} answered {code or 'nothing'} {body.strip()[:160]}".strip()
    return None


def _answering(s: Settings, method: Method) -> list[tuple[Any, str]]:
    """The app hosts of the inventory (those `--limit` left out included) whose service
    answers now, with the release each serves. Empty when the service runs elsewhere (Helm)."""
    if not method.on_hosts:
        return []

    def ask(h) -> tuple[Any, str] | None:
        connected(h, "to ask the release it serves")
        _, current, _ = sh(h, shell.read_link(shell.paths(s)["current"]))
        if current.strip() and _probe(h, s) is None:
            return h, current.strip().rsplit("/", 1)[-1]
        return None

    return [found for found in Pool(PROBES_AT_ONCE).imap(ask, inventory_app_hosts()) if found]


def _still_answering(
    run: Run, host, s: Settings, applied: list[Migration], serving: list[tuple[Any, str]]
) -> None:
    """After the expand migrations APPLIED: every host of SERVING (see _answering) answers
    again, or APPLIED are reverted, newest first, and the deploy stops before any switch."""
    answers = Pool(PROBES_AT_ONCE).imap(lambda pair: (*pair, _probe(pair[0], s)), serving)
    broken = [f"{h.name} ({release}): {why}" for h, release, why in answers if why]
    names = ", ".join(m.filename for m in applied)
    if not broken:
        if serving:
            say(host, f"the serving release still answers after {names} on {len(serving)} host(s)")
        return
    what = f"the serving release no longer answers after {names} ({'; '.join(broken)})"
    say(host, what)
    reverted = []
    for m in reversed(applied):
        say(host, f"reverting migration {m.version}_{m.name} (it breaks the serving release)")
        try:
            revert_migration(host, s, m.version, m.name, recorded=m.down is not None)
        except DeployError as exc:
            raise DeployError(
                f"{what}; reverting {m.filename} failed: {exc}. Still applied: "
                f"{', '.join(x.filename for x in applied if x.version not in reverted)}; no "
                "host was switched"
            ) from None
        reverted.append(m.version)
    run.migrations = Migrations(applied=[], reverted=reverted)
    raise DeployError(
        f"{what}. Reverted with their down scripts: {names}; no host was switched. Write the "
        "change as expand + contract (docs/design.md: Schema changes the serving release survives)"
    )


PROGRESS_EVERY = 5  # seconds between two progress lines of a backfill


def _backfill(gate: Gate, m: Migration) -> int:
    """Run M's backfill to its end, batch by batch (the guard before each), or resume it where
    an earlier run stopped; nothing when it finished before. Returns the rows it changed in
    all."""
    host, s = gate.h, gate.s
    try:
        fill = parse_backfill(m.backfill or "")
    except ValueError as exc:
        raise DeployError(f"{m.version}_{m.name}.backfill.sql: {exc}") from None
    start = migration_sql.backfill_start_sql(m.version, fill.table, fill.key)
    _, out, _ = sh(host, postgres.psql(s, None, None, *start), what="reading a backfill's state")
    fields = out.split()[-1].split("|")
    if fields[3] == "t":
        return int(fields[2])
    lo, end, rows = (int(x) for x in fields[:3])
    path = f"{shell.paths(s)['state']}/backfill_{m.version}.sql"
    script = migration_sql.backfill_batch_script(s, m.version, fill.statement, gate.command)
    remote(host).put_text(script, path)
    size, pause = s.migrate_backfill_batch, seconds(s.migrate_backfill_pause)
    resumed = f", resuming after {rows} rows" if rows else ""
    say(
        host,
        f"backfill {m.version}_{m.name}: {fill.table}.{fill.key} from {lo} to {end}, "
        f"{size} per batch, {pause:g}s apart{resumed}",
    )
    first, started = lo, time.monotonic()
    shown = started
    budget = int(seconds(s.migrate_statement_timeout)) + int(seconds(s.deploy_guard_max_wait)) + 60
    while lo < end:
        hi = min(lo + size, end)
        _, out, err = sh(
            host,
            postgres.psql(s, None, path, variables={"lo": lo, "hi": hi}),
            timeout=budget,
            what=f"backfill {m.version} ({fill.key} {lo} to {hi})",
        )
        gate.report(err)
        if not out.strip().isdigit():
            raise DeployError(f"backfill {m.version} stopped at {fill.key} {lo}: {err.strip()}")
        rows, lo = int(out), hi
        now = time.monotonic()
        if now - shown >= PROGRESS_EVERY or lo >= end:
            share = (lo - first) / (end - first)
            left = (now - started) * (1 - share) / share
            say(
                host,
                f"backfill {m.version}: {fill.key} {lo} of {end} ({share:.0%}), {rows} rows, "
                f"{now - started:.0f}s, about {left:.0f}s left",
            )
            shown = now
        if lo < end:
            time.sleep(pause)
    return rows


def _adopt(host, s: Settings, adopt: list[Migration], by: str) -> None:
    """Record ADOPT, the migrations a hand-migrated database has, as applied at the baseline."""
    say(host, f"adopting a hand-migrated database at baseline {s.migrate_baseline}")
    rows = [
        migration_sql.record_migration_sql(m.version, m.name, m.checksum, by, m.down, True)
        for m in adopt
    ]
    sh(
        host,
        postgres.psql(s, None, None, *migration_sql.history_table_sql(), *rows),
        what="recording the baseline",
    )


def _verified_objects(run: Run, host, s: Settings, migrations: list[Migration]) -> list[dict]:
    """Every index and view MIGRATIONS create, checked to exist and be valid, each a success
    metric of the run."""
    objects = verify_objects(host, s, migrations)
    for o in objects:
        run.metric(
            f"{o['kind']} {o['object']}",
            "exists and valid",
            f"{'valid' if o['valid'] else 'MISSING/INVALID'}, {o['bytes']} bytes",
            o["valid"],
        )
    return objects


@phase_check("migrate")
def _migrate(ctx: RunContext, host, s: Settings, plan: Plan, method: Method) -> None:
    run = ctx.run(host)
    gate = Gate(run, host, s, method)
    migrations = read_migrations(host, s, plan.release_dir)
    adopt, pending = plan_migrations(migrations, *read_history(host, s), s.migrate_baseline)
    bad_backfills = backfill_problems(pending)
    if bad_backfills:
        raise DeployError("nothing migrated: " + "; ".join(bad_backfills))
    held = [m for m in pending if m.contract]
    pending = [m for m in pending if not m.contract]
    if pending and not (run.backup and run.backup.verified):
        raise DeployError("no verified backup of this run: refusing to migrate")
    by = deployed_by(s)
    if adopt:
        _adopt(host, s, adopt, by)
    # a backfill an earlier run left unfinished (killed) resumes before anything newer runs
    backfilled = {
        m.version: _backfill(gate, m)
        for m in migrations
        if m.backfill and m not in pending and m not in held
    }
    if pending:
        serving = _answering(s, method)
        applied: list[Migration] = []
        for group in cut_after_backfills(pending):
            _apply(gate, group, by)
            applied += group
            _still_answering(run, host, s, applied, serving)
            if group[-1].backfill:
                backfilled[group[-1].version] = _backfill(gate, group[-1])
        run.changed.append("migrations: " + ", ".join(m.version for m in applied))
    else:
        say(host, "no expand migration pending")
    if held:
        say(
            host,
            f"held back until every app host serves {plan.release}: contract migration(s) "
            + ", ".join(m.filename for m in held),
        )
    objects = _verified_objects(run, host, s, [m for m in migrations if m not in held])
    bad = [o["object"] for o in objects if not o["valid"]]
    run.migrations = Migrations(
        applied=[m.version for m in pending],
        baseline=[m.version for m in adopt],
        contract_pending=[m.version for m in held],
        backfilled_rows=backfilled,
        objects=objects,
    )
    if bad:
        raise DeployError(f"after migrating, these objects are missing or invalid: {bad}")


def _not_serving(ctx: RunContext, s: Settings, plan: Plan, method: Method) -> list[str]:
    """Why a contract migration cannot run yet: every app host of the inventory (those
    `--limit` left out included) must serve PLAN's release, and no host of this run failed."""
    problems = []
    for h in inventory_app_hosts():
        run = ctx.runs.get(h.name)
        if run is not None:
            if run.outcome.startswith("failed"):
                problems.append(f"{h.name} failed ({run.failure})")
            elif method.on_hosts and run.facts.get("serving") != plan.release:
                problems.append(f"{h.name} serves {run.facts.get('serving')}")
            continue
        try:
            connected(h, "to check which release it serves")
            _, current, _ = sh(h, shell.read_link(shell.paths(s)["current"]))
        except Exception as exc:  # noqa: BLE001 - an unreachable host is a reason, not a crash
            problems.append(f"{h.name} could not be checked ({exc})")
            continue
        if current.strip() != plan.release_dir:
            problems.append(f"{h.name} (outside this run) serves {current.strip() or 'nothing'}")
    return problems


@phase_check("contract")
def _contract(ctx: RunContext, host, s: Settings, plan: Plan, method: Method) -> None:
    run = ctx.run(host)
    if run.migrations is None:
        run.migrations = Migrations()
    handed = run.migrations
    if not handed.contract_pending:  # what the migrate phase held back, under this lock
        say(host, "no contract migration pending")
        return
    migrations = read_migrations(host, s, plan.release_dir)
    held = [m for m in migrations if m.version in handed.contract_pending]
    names = ", ".join(m.filename for m in held)
    problems = _not_serving(ctx, s, plan, method)
    if problems:
        say(
            host,
            f"contract migration(s) {names} NOT run: {'; '.join(problems)}. They stay pending; "
            "the next deploy that brings every app host to this release runs them",
        )
        return
    if not (run.backup and run.backup.verified):
        raise DeployError("no verified backup of this run: refusing to run contract migrations")
    applied = _apply(Gate(run, host, s, method), held, deployed_by(s))
    run.changed.append("contract migrations: " + ", ".join(applied))
    handed.contract_applied = applied
    handed.contract_pending = []
    objects = verify_objects(host, s, migrations)
    bad = [o["object"] for o in objects if not o["valid"]]
    if bad:
        raise DeployError(f"after the contract migrations, missing or invalid: {bad}")


def _object_line(h, s: Settings, statement: str, name: str) -> str:
    stored = migration_sql.index_columns(statement)
    if stored is None:
        return f"{name} (materialized view: its size is its query's result)"
    table, columns = stored
    _, out, _ = sh(h, postgres.psql(s, migration_sql.index_inputs_sql(table, columns)))
    rows, width, known = (int(x) for x in out.strip().split("|"))
    if rows < 0:
        return f"{name} (index on {table}, which does not exist yet: size unknown)"
    width += 8 * (len(columns) - known)  # a column without statistics: taken as 8 bytes
    size = migration_sql.index_estimate_bytes(rows, [width])
    return f"{name} (index on {table} ({', '.join(columns)}), about {size / 2**20:.0f} MiB)"


def preview(s: Settings, plan: Plan) -> None:
    """--dry, on the migration host: the database work this deploy would do (read-only). A
    database it cannot read yet (no deploy has written the credentials file on this host) is
    said, not an error: a dry run changes nothing, that file included."""
    if not plan.is_migration_host:
        return
    try:
        _preview(s, plan)
    except DeployError as exc:
        say(host, f"--dry: the database work cannot be shown: {str(exc)[-300:]}")


def _preview(s: Settings, plan: Plan) -> None:
    migrations = release_migrations(host, s, plan)
    _, size, _ = sh(
        host, postgres.psql(s, "SELECT pg_size_pretty(pg_database_size(current_database()))")
    )
    has_history, has_metrics, applied = read_history(host, s)
    try:
        _, pending = plan_migrations(
            migrations, has_history, has_metrics, applied, s.migrate_baseline
        )
    except DeployError as exc:
        say(host, f"--dry: the deploy would stop before the backup: {exc}")
        return
    backup = (
        (
            f"a backup would be taken first (pg_dump of a {size.strip()} database)"
            if s.backup_method == "pg_dump"
            else "a named restore point would be archived first (pgbackrest)"
        )
        if pending or plan.release_changes
        else "no backup (nothing would change)"
    )
    say(host, f"--dry: {len(pending)} migration(s) pending; {backup}")
    result = lint.lint(pending, s.migrate_lint, serving=has_metrics)
    say(host, f"--dry: {result.summary()}")
    for finding in result.findings:
        say(host, f"--dry: {finding.text()}")
    if result.refused:
        say(host, "--dry: the deploy would stop in pre-flight: the lint refuses the above")
    for problem in backfill_problems(pending):
        say(host, f"--dry: the deploy would stop in pre-flight: {problem}")
    for m in pending:
        created = [
            _object_line(host, s, st.sql, name)
            for st in migration_sql.split_statements(m.sql)
            for name in migration_sql.created_objects(st.sql)
        ]
        when = (
            "after every app host serves the release: contract"
            if m.contract
            else "before the rollout: expand"
        )
        if m.backfill and not backfill_problems([m]):
            fill = parse_backfill(m.backfill)
            when += f", then its backfill of {fill.table} by {fill.key}"
            when += f", {s.migrate_backfill_batch} per batch"
        say(
            host,
            f"--dry:   {m.version}_{m.name} creates {'; '.join(created) or 'no index or view'}"
            f" (runs {when})",
        )


@deploy("Database migration")
def migrate(ctx: RunContext, s: Settings, plan: Plan, method: Method) -> None:
    """The expand migrations, on the migration host, checked against the serving release."""
    if plan.is_migration_host:
        python.call(
            name="Ensure the database schema matches the release",
            function=_migrate,
            ctx=ctx,
            s=s,
            plan=plan,
            method=method,
        )


@deploy("Contract migrations")
def contract(ctx: RunContext, s: Settings, plan: Plan, method: Method) -> None:
    """The migrations headed `-- deploy: contract`, once every app host serves the release."""
    if plan.is_migration_host:
        python.call(
            name=f"Ensure the contract migrations run once every app host serves {plan.release}",
            function=_contract,
            ctx=ctx,
            s=s,
            plan=plan,
            method=method,
        )
