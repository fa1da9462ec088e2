"""Drift: what changed outside the deploy, found before a deploy builds on it.

- Host drift: what the deploy manages on an app host (its files with their mode and owner,
  the release folders and links, the units, the Redis container) compared with what the
  host's last deployment record says the run left there (`left`, tasks/records.py).
- Schema drift: the schema the migration history says the database has (the applied
  migrations' up scripts, each from a release on the migration host with the recorded
  checksum, replayed into a scratch database on the database server) compared with the live
  schema, both as pg_dump prints them; and every index that is not valid.

Read-only on every live object: the scratch database (dropped first, so a killed run's is
cleared, and dropped after) is the only thing written. drift.py prints the differences and
exits non-zero; pre-flight runs the same checks under drift_policy.
"""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from pyinfra.api.host import Host
from pyinfra.operations import python

from tasks.commands import drift as d
from tasks.commands import pgbackrest as pgb
from tasks.commands import postgres
from tasks.commands.shell import paths, q
from tasks.config import Settings
from tasks.context import RunContext
from tasks.hosts import DB_GROUP, connected, database_servers
from tasks.inventory import host_order
from tasks.migrations import Migration, read_migrations
from tasks.records import left_on
from tasks.remote import DeployError, Remote, at_once
from tasks.report_html import drift_page
from tasks.transport import remote, say, sh

NO_RECORD = "no deployment record says what the deploy left here yet"
NO_HISTORY = "schema not compared: the database has no migration history yet (a deploy records it)"
REPLAY_MARK = "@@@ replaying "
# on the database server: the schema of the last history replayed (root only)
CACHE_DIR = "/var/cache/monitoring-dashboard-deploy/drift"


def recorded(h, s: Settings) -> dict[str, str] | None:
    """What host H's newest deployment record that says so says the run left there."""
    records = q(paths(s)["records"])
    _, out, _ = sh(
        h,
        f"[ -f {records} ] && grep -F '\"left\": ' {records} | tail -n 1 || true",
        what="reading the last deployment record",
    )
    if not out.strip():
        return None
    try:
        left = json.loads(out).get("left")
    except ValueError as exc:
        raise DeployError(f"the last deployment record on {h.name} is not JSON: {exc}") from None
    return left if isinstance(left, dict) else None


@dataclass
class Found:
    """What a check found on one app host: the differences, notes on what could not be
    compared, and the host as it was listed (None: the check did not get that far)."""

    differences: list[d.Difference]
    notes: list[str] = field(default_factory=list)
    listed: dict[str, str] | None = None


def host_drift(h, s: Settings) -> Found:
    """App host H against what its last record says the run left there."""
    expected, now = at_once(lambda: recorded(h, s), lambda: left_on(h, s))
    if expected is None:
        return Found([], [NO_RECORD], now)
    return Found(d.compare_hosts(expected, now), [], now)


def database_server() -> Host | None:
    found = database_servers()
    return connected(found[0], "drift: the database server") if len(found) == 1 else None


def _replay_text(s: Settings, scripts: list[tuple[str, str]]) -> str:
    """One psql input: each script after a line naming it, as the service's role."""
    parts = [f"SET ROLE {postgres.sql_ident(s.db_user)};"]
    for version, sql in scripts:
        parts += [f"\\echo {REPLAY_MARK}{version}", sql]
    return "\n".join(parts) + "\n"


def _applied_scripts(
    mig: Remote, s: Settings
) -> tuple[list[tuple[str, str]], list[d.Difference]] | None:
    """The up scripts of the applied migrations in the order they were applied, each from a
    release on the migration host whose script has the checksum the history recorded (after a
    quick rollback the serving release may predate some); a difference for each it cannot
    replay. None: the database has no migration history yet."""
    (_, out, _), (_, listed, _) = at_once(
        lambda: mig.run(
            postgres.history(s, order="applied_at, version"), what="reading the migration history"
        ),
        lambda: mig.run(f"ls -1d {q(paths(s)['releases'])}/*/ 2>/dev/null || true"),
    )
    first, *rows = out.splitlines() or [""]
    if first.split()[:1] != ["t"]:  # `<has history> <has metrics>`
        return None
    applied = [line.split("|", 1) for line in rows if "|" in line]

    def held(release: str) -> list[Migration]:
        try:
            return read_migrations(mig, s, release.rstrip("/"))
        except DeployError:  # a release without the migrations folder
            return []

    scripts = {
        (m.version, m.checksum): m.sql
        for found in at_once(*(partial(held, r) for r in listed.split()))
        for m in found
    }
    found, problems = [], []
    for version, checksum in applied:
        sql = scripts.get((version, checksum))
        if sql is None:
            problems.append(
                d.Difference(
                    f"migration {version}",
                    f"its script (checksum {checksum[:12]}) in a release on {mig.name}",
                    "none",
                )
            )
        else:
            found.append((version, sql))
    return found, problems


def _psql(db: Remote, s: Settings, sql: str, what: str, database: str = "postgres") -> str:
    _, out, _ = db.run(pgb.superuser_psql(sql, database, s.db_port), what=what)
    return out


def _replayed_schema(db: Remote, s: Settings, replay: str) -> str:
    """pg_dump's schema of REPLAY (a psql script) run in a new scratch database, dropped
    again whatever happened."""
    scratch = d.scratch_name(s)
    say(db, f"replaying the applied migrations into {scratch}")
    try:
        _psql(
            db,
            s,
            f"CREATE DATABASE {postgres.sql_ident(scratch)} OWNER {postgres.sql_ident(s.db_user)}",
            "creating the scratch database",
        )
        upload = f"/root/.{scratch}.sql"
        db.put_text(replay, upload)
        ok, out, err = db.run(
            f"{d.replay(scratch, s.db_port)} < {q(upload)}; status=$?; rm -f {q(upload)}; "
            "exit $status",
            timeout=300,
            check=False,
        )
        if not ok:
            marks = [x for x in out.splitlines() if x.startswith(REPLAY_MARK)]
            which = marks[-1][len(REPLAY_MARK) :] if marks else "?"
            raise DeployError(
                "the migration history does not replay into an empty database: migration "
                f"{which} failed: {err.strip()[-300:]}"
            )
        _, dump, _ = db.run(d.schema_dump(scratch, s.db_port), timeout=120)
        return dump
    finally:
        _psql(db, s, d.drop_scratch_sql(scratch), "dropping the scratch database")


def schema_drift(mig: Remote, db: Remote, s: Settings) -> tuple[list[d.Difference], list[str]]:
    """(the schema differences, notes): live against the applied migrations replayed; then
    every invalid index; a note instead when there is no history to replay. A replay's schema
    is kept on the database server (CACHE_DIR) under the digest of its script: the next check
    with the same history and the same PostgreSQL (pg_dump's header names both versions)
    reads it instead of replaying. A scratch database a killed run left is dropped first."""
    drop = pgb.superuser_psql(d.drop_scratch_sql(d.scratch_name(s)), port=s.db_port)

    def history() -> tuple[list[d.Difference], str, str, str] | None:
        found = _applied_scripts(mig, s)
        if found is None:
            return None
        scripts, problems = found
        replay = _replay_text(s, scripts)
        kept = f"{CACHE_DIR}/{hashlib.sha256(replay.encode()).hexdigest()}.sql"
        _, cached, _ = db.run(f"{drop} >/dev/null && cat {q(kept)} 2>/dev/null || true")
        return problems, replay, kept, cached

    read, (_, live, _), invalid = at_once(  # independent reads
        history,
        lambda: db.run(d.schema_dump(s.db_name, s.db_port), timeout=120),
        lambda: _psql(db, s, d.invalid_indexes_sql(), "looking for invalid indexes", s.db_name),
    )
    if read is None:
        return [], [NO_HISTORY]
    problems, replay, kept, cached = read
    if cached and d.dumped_versions(cached) == d.dumped_versions(live):
        expected = cached
    else:
        expected = _replayed_schema(db, s, replay)
        db.run(f"mkdir -p -m 700 {q(CACHE_DIR)} && rm -f {q(CACHE_DIR)}/*.sql")
        db.put_text(expected, kept)
    found = problems + d.compare_schemas(d.schema_objects(expected), d.schema_objects(live))
    found += [d.Difference(f"INDEX {name}", "valid", "INVALID") for name in invalid.split()]
    return found, []


def check(h, s: Settings, migration_host: bool) -> Found:
    """Every difference on app host H and, from the migration host, in the schema. A check
    that could not finish (the history does not replay, the database server does not answer)
    is a difference of its own: nothing unknown passes."""
    try:
        found = host_drift(h, s)
        if migration_host:
            db = database_server()
            if db is None:
                found.notes.append(
                    f"schema not compared: the inventory has no host in group {DB_GROUP} (the "
                    "check replays the migrations into a scratch database there)"
                )
            else:
                differences, notes = schema_drift(remote(h), remote(db), s)
                found.differences += differences
                found.notes += notes
        return found
    except DeployError as exc:
        return Found([d.Difference("drift check", "to complete", str(exc))])


def _drift(state, host, ctx: RunContext, s: Settings, migration_host: bool) -> bool:
    found = check(host, s, migration_host)
    differences, notes = found.differences, found.notes
    for note in notes:
        say(host, f"drift: {note}")
    for diff in differences:
        say(host, f"DRIFT {diff.line()}")
    if not differences:
        say(host, "no drift: every managed object is as the last run left it")
    ctx.drift[host.name] = {"differences": [asdict(x) for x in differences], "notes": notes}
    say(host, f"report: {write_report(s.report_dir, s.deploy_env, ctx.stamp, ctx.drift)}")
    return not differences


def report_drift(ctx: RunContext, s: Settings, migration_host: bool) -> None:
    """drift.py on an app host: the differences printed and reported; the host fails (the run
    exits non-zero) when there is any."""
    python.call(
        name="Compare with what the last run left (host, and schema from the migration host)",
        function=_drift,
        ctx=ctx,
        s=s,
        migration_host=migration_host,
    )


def junit(env: str, hosts: dict[str, dict[str, Any]]) -> str:
    """The check as JUnit XML: per host a test suite, one failing test case per difference
    (one passing case when there is none)."""
    suites = ET.Element("testsuites", name=f"drift {env}")
    for name, found in sorted(hosts.items(), key=lambda item: host_order(item[0])):
        suite = ET.SubElement(suites, "testsuite", name=f"{env}.{name}")
        for diff in found["differences"]:
            case = ET.SubElement(suite, "testcase", classname=f"{env}.{name}", name=diff["object"])
            message = f"expected {diff['expected']}, found {diff['found']}"
            ET.SubElement(case, "failure", message=message)
        if not found["differences"]:
            ET.SubElement(suite, "testcase", classname=f"{env}.{name}", name="no drift")
        suite.set("tests", str(max(1, len(found["differences"]))))
        suite.set("failures", str(len(found["differences"])))
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def write_report(folder: str, env: str, stamp: str, hosts: dict[str, dict[str, Any]]) -> Path:
    """reports/<env>-<stamp>-drift.json, with the same as JUnit XML and as a page beside it."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{env}-{stamp}-drift.json"
    data = {"environment": env, "run": stamp, "hosts": hosts}
    path.write_text(json.dumps(data, indent=2) + "\n")
    path.with_suffix(".xml").write_text(junit(env, hosts))
    path.with_suffix(".html").write_text(drift_page(env, stamp, hosts))
    return path
