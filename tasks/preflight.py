"""Pre-flight checks (the checklist's prerequisites). Variables were validated before pyinfra
connected; here: the deploy's secret files, then every check on every host, all problems
reported together before anything that matters changes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pyinfra import inventory
from pyinfra.operations import python

from tasks import archive, drift, lint, lock, operations, plans, promotion, windows
from tasks.commands import postgres, shell
from tasks.config import Settings
from tasks.context import Plan, Run, RunContext
from tasks.hosts import app_hosts, builds_here
from tasks.method import Method
from tasks.operations import deploy
from tasks.outcome import phase_check
from tasks.probes import ping
from tasks.remote import DeployError, at_once
from tasks.settings import secret
from tasks.transport import say, sh

BACKUP_SIZE_MARGIN = 1.2  # a custom-format dump is smaller than the database; keep margin
INDEX_SIZE_RATIO = 0.6  # new covering indexes, estimated from the table's size


def _database_facts(h, s: Settings) -> dict[str, int]:
    sql = (
        "SELECT current_setting('max_connections')::int, "
        "(SELECT count(*) FROM pg_stat_activity), pg_database_size(current_database()), "
        "coalesce(pg_total_relation_size(to_regclass('metrics')), 0)"
    )
    _, out, _ = sh(h, postgres.psql(s, sql), timeout=20, what="connecting to the database")
    max_conn, active, db_size, table_size = (int(v) for v in out.strip().split("|"))
    return {
        "max_connections": max_conn,
        "connections": active,
        "database_bytes": db_size,
        "metrics_table_bytes": table_size,
    }


def _free_bytes(h, path: str) -> int:
    _, out, _ = sh(
        h,
        f"mkdir -p {shell.q(path)} && df -PB1 {shell.q(path)} | awk 'NR==2 {{print $4}}'",
        what=f"free space of {path}",
    )
    return int(out.strip())


def _lint_problems(run: Run, h, s: Settings, plan: Plan) -> list[str]:
    """The lint's refusals as pre-flight problems (its result goes in the report)."""
    try:
        result, run.pending = lint.lint_pending(h, s, plan)
    except DeployError as exc:
        return [str(exc)]
    run.facts["lint"] = result.as_record()
    say(h, result.summary())
    for finding in result.findings:
        if not finding.refused or result.mode != "error":
            say(h, finding.text())
    return [
        f"{f.text()}\n      (a reviewed exception: `-- squawk-ignore {f.rule}` above the "
        "statement; or --data migrate_lint=warn)"
        for f in result.refused
    ]


def _tools(host, tools: list[str]) -> list[str]:
    _, out, _ = sh(host, shell.missing_tools(tools), what="looking for the tools")
    return [f"{tool} is not installed" for tool in out.split()]


def _database(host, s: Settings) -> tuple[list[str], dict[str, Any]]:
    try:
        return [], _database_facts(host, s)
    except DeployError as exc:
        where = f"{s.db_user}@{s.db_host}:{s.db_port}/{s.db_name}"
        return [f"database {where} not reachable: {exc}"], {}


def _cache(host, s: Settings, method: Method) -> tuple[list[str], dict[str, Any]]:
    """The Redis the release will use: Docker Engine for the container, or the endpoint's PING
    (a cluster's cache is not reachable from here: the method's facts say so)."""
    if not method.on_hosts:
        return [], {}
    if s.redis_mode == "container":
        ok, out, _ = sh(host, "docker info --format '{{.ServerVersion}}'", check=False)
        problem = [] if ok else ["Docker Engine is not running (redis_mode: container)"]
        return problem, {"docker": out.strip()}
    answer = ping(host, s)
    if answer != "PONG":
        where = f"{s.redis_host}:{s.redis_port}"
        return [f"Redis endpoint {where} does not answer PING: {answer[-300:]}"], {}
    return [], {}


def _archiving(s: Settings) -> tuple[list[str], dict[str, Any]]:
    """backup_method pgbackrest: archiving proven and a recent backup (taken now if needed),
    the one a restore of this deploy's restore point starts from."""
    try:
        return [], {"backup_set": archive.ready(archive.servers(s), s)}
    except DeployError as exc:
        return [str(exc)], {}


def _drift(run: Run, h, s: Settings, migration_host: bool) -> tuple[list[str], dict[str, Any]]:
    """What changed outside the deploy (tasks/drift.py): with drift_policy fail and no
    drift_accept, a problem listing every difference; else warnings, and the differences (and
    the reason they were accepted) in the record."""
    found = drift.check(h, s, migration_host)
    run.listed = found.listed
    if not found.differences:
        return [], {}
    lines = [x.line() for x in found.differences]
    facts: dict[str, Any] = {"drift": lines}
    if s.drift_policy == "fail" and not s.drift_accept:
        listed = "".join(f"\n      {line}" for line in lines)
        return [
            f"drift: {len(lines)} difference(s) from what the last run left (drift_policy fail: "
            f'review them, then deploy with --data drift_accept="reason"):{listed}'
        ], facts
    if s.drift_accept:
        facts["drift_accepted"] = s.drift_accept
    for line in lines:
        say(h, f"WARNING: drift: {line}")
    return [], facts


def _window(ctx: RunContext, h, s: Settings) -> tuple[list[str], dict[str, Any]]:
    """deploy_windows and deploy_freeze (tasks/windows.py), at the moment the run started:
    a problem naming the rule and the next opening, or with deploy_override a warning and the
    reason in the record."""
    started = datetime.fromtimestamp(ctx.started, UTC)
    refused = windows.refusal(started, s.deploy_windows, s.deploy_freeze, s.deploy_timezone)
    if refused is None:
        return [], {}
    if not s.deploy_override:
        return [f'{refused} (--data deploy_override="reason" deploys anyway)'], {}
    say(h, f"WARNING: {refused}; deploying anyway (deploy_override: {s.deploy_override})")
    return [], {"deploy_window": refused, "deploy_override": s.deploy_override}


def _promotion(ctx: RunContext, h, s: Settings, plan: Plan) -> tuple[list[str], dict[str, Any]]:
    """promote_from (tasks/promotion.py), decided once per run: the tarball a passed deploy
    there shipped becomes the one every app host receives, or a problem saying what was
    looked for and what that environment passed."""
    if not s.promote_from or not plan.release_changes:
        return [], {}
    if ctx.deploy.promotion is None:
        try:
            found = promotion.choose(s, plan.release)
        except DeployError as exc:
            ctx.deploy.promotion = [str(exc)], {}
        else:
            ctx.deploy.release_artifact = (str(found.path), found.sha256)
            facts: dict[str, Any] = {"promoted_from": s.promote_from, "artifact": found.sha256}
            if found.passed:
                facts["promoted_run"] = found.passed.run
            else:
                facts["promote_override"] = s.promote_override
            ctx.deploy.promotion = [], facts
    problems, facts = ctx.deploy.promotion
    if facts.get("promote_override"):
        say(
            h,
            f"WARNING: no deploy of {s.promote_from} passed with {facts['artifact']}; shipping it "
            f"anyway (promote_override: {s.promote_override})",
        )
    return problems, facts


def _approved(run: Run, h, s: Settings, plan: Plan) -> tuple[list[str], dict[str, Any]]:
    """deploy_plan (tasks/plans.py): this host's part of the plan read live (the migration
    host's holds the release, batches and database work) against the approved one."""
    if not s.deploy_plan:
        return [], {}
    live: dict[str, Any] = {"hosts_detail": {h.name: plans.host_entry(plan)}}
    if plan.is_migration_host:
        live.update(plans.run_entry(s, plan, [x.name for x in app_hosts()]))
        if "lint" in run.facts:
            live.update(plans.database_entry(s, plan, run.pending or [], run.facts["lint"]))
    problems = plans.check_approved(s, live)
    return problems, {} if problems else {"deploy_plan": s.deploy_plan}


@phase_check("preflight")
def _checks(ctx: RunContext, host, s: Settings, plan: Plan, method: Method) -> None:
    # The checks only read, and none needs another's answer: they run at once, each on its
    # own SSH channel (the lint's result counts only when the database answered).
    migration_host = plan.is_migration_host
    dumps = s.backup_method == "pg_dump"
    go = ["go"] if builds_here(host, s) else []
    tools, on_method, database, cache, free, lint_found, archiving, drifted = at_once(
        lambda: _tools(host, ["git", *go, "psql", "pg_dump", *method.tools]),
        lambda: method.problems(host),
        lambda: _database(host, s),
        lambda: _cache(host, s, method),
        lambda: _free_bytes(host, s.backup_dir) if migration_host and dumps else None,
        lambda: _lint_problems(ctx.run(host), host, s, plan) if migration_host else [],
        lambda: _archiving(s) if migration_host and not dumps else ([], {}),
        lambda: _drift(ctx.run(host), host, s, migration_host),
    )
    window, promoted = _window(ctx, host, s), _promotion(ctx, host, s, plan)
    approved = _approved(ctx.run(host), host, s, plan)
    problems: list[str] = window[0] + approved[0] + promoted[0] + tools + on_method[0] + database[0]
    problems += archiving[0] + drifted[0]
    facts: dict[str, Any] = {
        **window[1],
        **approved[1],
        **promoted[1],
        **on_method[1],
        **database[1],
        **archiving[1],
        **drifted[1],
    }
    if "max_connections" in facts:
        app_hosts = max(1, len(inventory.get_group("app_servers", default=[])) or len(inventory))
        processes, clients = method.clients(app_hosts)
        needed = s.db_max_open_conns * processes + s.db_connections_headroom
        facts["connections_needed"] = needed
        if facts["max_connections"] < needed:
            problems.append(
                f"max_connections is {facts['max_connections']}, needs {needed} "
                f"(DB_MAX_OPEN_CONNS {s.db_max_open_conns} x {clients} + "
                f"{s.db_connections_headroom} headroom): raise it or lower db_max_open_conns"
            )
    if migration_host and "database_bytes" in facts:
        if dumps:  # a restore point needs no room on the migration host
            need = int(facts["database_bytes"] * BACKUP_SIZE_MARGIN)
            facts.update({"backup_free_bytes": free, "backup_needed_bytes": need})
            if free < need:
                problems.append(
                    f"{s.backup_dir} has {free} bytes free, the backup needs about {need}"
                )
        facts["index_estimate_bytes"] = int(facts["metrics_table_bytes"] * INDEX_SIZE_RATIO)
        problems += lint_found
    problems += cache[0]
    facts.update(cache[1])
    ctx.run(host).facts["preflight"] = facts
    if problems:
        raise DeployError(
            f"{len(problems)} pre-flight problem(s):\n" + "\n".join(f"  - {p}" for p in problems)
        )
    say(host, "pre-flight passed: " + ", ".join(f"{k}={v}" for k, v in facts.items()))


def secret_files(s: Settings) -> None:
    """The deploy's own state folder and secret files on each host (root only)."""
    p = shell.paths(s)
    operations.folders(
        name=f"Ensure {p['state']} and its manifests exist (0700)",
        wanted=((p["state"], 700, "root", "root"), (p["manifests"], 700, "root", "root")),
    )
    operations.secret_file(
        name="Ensure the database password file is current (0600)",
        path=p["pgpass"],
        content=postgres.pgpass_line(s, secret(s, "DB_PASSWORD")),
    )
    operations.secret_file(
        name="Ensure the Redis password file is current (0600)",
        path=p["redis_auth"],
        content=secret(s, "REDIS_PASSWORD"),
    )


@deploy("Pre-flight")
def preflight(ctx: RunContext, s: Settings, plan: Plan, method: Method) -> None:
    secret_files(s)
    lock.acquire(ctx, s, plan.is_migration_host)
    python.call(
        name="Check prerequisites on every host",
        function=_checks,
        ctx=ctx,
        s=s,
        plan=plan,
        method=method,
    )
