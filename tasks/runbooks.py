"""The checklist's "Common Issues & Solutions" as runbooks:
`pyinfra -y inventories/<env>.py runbook.py --data runbook=NAME`.

Each is idempotent (a second run changes nothing and says so), takes the deploy lock, and is
recorded in the deployment records and a local report. What a runbook changes in `.env`
(Redis off, smaller pools) is kept on each host as an override
(`<deploy_state_dir>/runbook-overrides.json`) that every later deploy applies and announces,
so no deploy undoes a runbook silently; `runbook=reset` removes the overrides.
"""

from __future__ import annotations

import json
from typing import Any

from pyinfra import host
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import python

from tasks import recovery, runbook_steps, slots
from tasks.commands import postgres, rediscli, shell
from tasks.config import Settings, login_roles, size_bytes
from tasks.context import RunContext
from tasks.hosts import migration_host_name
from tasks.operations import deploy
from tasks.probes import cache_address
from tasks.records import now_iso
from tasks.remote import DeployError
from tasks.settings import deployed_by
from tasks.strategy import Strategy
from tasks.transport import remote, sh

q = shell.q

RUNBOOKS = {
    "redis-disable": "REDIS_ENABLED=false in .env, zero-downtime restart (Issue 1)",
    "redis-enable": "REDIS_ENABLED back on, zero-downtime restart",
    "migration-memory": "maintenance_work_mem raised for the migration role (Issue 2)",
    "terminate-idle": "idle database connections terminated; DB_MAX_OPEN_CONNS lowered when "
    "runbook_max_open_conns is set (Issue 3)",
    "reduce-memory": "Redis maxmemory lowered live, pool sizes halved in .env (Issue 4)",
    "maintenance-on": "every path but the health path answers 503 with Retry-After (the local "
    "proxy; a deploy keeps it)",
    "maintenance-off": "maintenance mode ended: the service answers again",
    "reset": "every runbook override removed, .env back to group_vars, zero-downtime restart",
    "backup-setup": "pgBackRest: WAL archived to backup_repo_host, the stanza, a first full "
    "backup (a PostgreSQL restart when archive_mode needs one, said first)",
    "restore-drill": "the backup restored to drill_target into a scratch cluster on the "
    "repository host, checked, removed: verdict, RTO and RPO recorded",
    "restore-latest": "a database server that lost its data directory restored to the newest "
    "archived WAL, the service held in maintenance meanwhile",
}
ARCHIVE_RUNBOOKS = ("backup-setup", "restore-drill", "restore-latest")


def new_overrides(name: str, base: Settings, current: dict[str, Any]) -> dict[str, Any]:
    """The overrides host should keep after runbook NAME: BASE is the settings from group_vars,
    CURRENT the overrides already there."""
    values = dict(current)
    if name == "redis-disable":
        values["redis_enabled"] = False
    elif name == "redis-enable":
        values.pop("redis_enabled", None)
        if not base.redis_enabled:
            values["redis_enabled"] = True
    elif name == "reduce-memory":
        values["redis_maxmemory"] = base.runbook_redis_maxmemory
        for key in ("db_max_open_conns", "db_max_idle_conns", "redis_pool_size"):
            values[key] = max(1, getattr(base, key) // 2)
        values["redis_min_idle_conns"] = base.redis_min_idle_conns // 2
    elif name == "terminate-idle" and base.runbook_max_open_conns:
        values["db_max_open_conns"] = base.runbook_max_open_conns
        values["db_max_idle_conns"] = min(base.db_max_idle_conns, base.runbook_max_open_conns)
    elif name == "reset":
        values = {}
    return values


def terminate_idle_sql(db_name: str, minutes: int) -> str:
    """Terminate sessions of DB_NAME idle for more than MINUTES; prints how many."""
    return (
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        f"WHERE datname = {postgres.sql_literal(db_name)} AND state = 'idle' "
        f"AND state_change < now() - interval '{int(minutes)} minutes' "
        "AND pid <> pg_backend_pid()"
    )


def _keep_overrides(state, host, s: Settings, values: dict[str, Any], runbook: str) -> bool:
    path = shell.paths(s)["overrides"]
    if values:
        document = {"runbook": runbook, "at": now_iso(), "by": deployed_by(s), "values": values}
        remote(host).put_text(json.dumps(document, indent=2) + "\n", path)
    else:
        sh(host, f"rm -f {q(path)}")
    return True


def _database_work(h, s: Settings, name: str) -> list[str]:
    """What the runbook does on the database (from the migration host only)."""
    if name == "terminate-idle":
        minutes = s.runbook_idle_minutes
        _, out, _ = sh(h, postgres.psql(s, terminate_idle_sql(s.db_name, minutes)))
        return [
            f"terminated {int(out.strip())} connection(s) idle for more than {minutes} minute(s)"
        ]
    if name != "migration-memory":
        return []
    wanted = s.runbook_maintenance_work_mem
    value = postgres.sql_literal(wanted)
    # a role's settings apply to sessions that log in as it: the login roles too, once used
    roles = [s.db_user, *(login_roles(s.db_user) if s.db_login_role else ())]
    _, size, _ = sh(
        h,
        postgres.psql(
            s,
            "SELECT pg_size_pretty(pg_table_size('metrics')), "
            f"pg_table_size('metrics') > pg_size_bytes({value})",
        ),
    )
    size, larger = size.strip().split("|")
    _, now, _ = sh(
        h,
        postgres.psql(
            s,
            "SELECT current_setting('maintenance_work_mem'), pg_size_bytes("
            f"current_setting('maintenance_work_mem')) = pg_size_bytes({value})",
        ),
    )
    now, same = now.strip().split("|")
    if same == "t":
        return []
    alter = "; ".join(
        f"ALTER ROLE {postgres.sql_ident(r)} SET maintenance_work_mem = {value}" for r in roles
    )
    ok, _, err = sh(h, postgres.psql(s, alter), check=False)
    if not ok:
        raise DeployError(
            f"the database refused `{alter}` ({err.strip()[-200:]}): on a managed database set "
            f"maintenance_work_mem = {wanted} in its parameter group (RDS) or flags (Cloud SQL), "
            "or set migrate_maintenance_work_mem, which each migration session sets for itself"
        )
    return [
        f"maintenance_work_mem for role {', '.join(roles)}: {now} -> {wanted}; metrics is "
        f"{size}, "
        + (
            f"more than {wanted}: its index builds will still sort on disk, raise it further"
            if larger == "t"
            else f"within {wanted}: its index builds sort in memory"
        )
    ]


def _set_maxmemory(h, s: Settings) -> list[str]:
    """CONFIG SET maxmemory to what S says, live (no restart, the cache is kept), unless the
    cache already has it."""
    address, port = cache_address(s)
    maxmemory = s.redis_maxmemory
    _, now, _ = sh(h, rediscli.redis_cli(s, "config", "get", "maxmemory", host=address, port=port))
    if now.split()[-1:] == [str(size_bytes(maxmemory))]:
        return []
    sh(h, rediscli.redis_cli(s, "config", "set", "maxmemory", maxmemory, host=address, port=port))
    if s.redis_mode == "external":
        return [f"Redis {address}:{port} maxmemory {maxmemory} (live)"]
    return [
        f"{s.redis_container} maxmemory {maxmemory} (live; a deploy recreates the container "
        "when that differs from its flags, emptying the cache once)"
    ]


def _run(
    state,
    host,
    ctx: RunContext,
    s: Settings,
    strategy: Strategy,
    env_op: OperationMeta | None,
) -> bool:
    name, done = s.runbook, []
    found: dict[str, Any] = {}
    try:
        once = host.name == migration_host_name(s)  # the database and an external cache
        if once:
            done += _database_work(host, s, name)
        if once and name in ARCHIVE_RUNBOOKS:
            done, found = _archive_work(host, s, name)
        if name in ("reduce-memory", "reset") and (once or s.redis_mode == "container"):
            done += _set_maxmemory(host, s)
        if name.startswith("maintenance-") and slots.set_maintenance(
            host, s, name == "maintenance-on"
        ):
            done.append(
                f"maintenance mode on: every path but {s.app_health_path} answers 503, "
                f"Retry-After {s.runbook_maintenance_retry_after}"
                if name == "maintenance-on"
                else "maintenance mode off: the service answers every path"
            )
        if env_op is not None and env_op.did_change():
            done.append(f".env updated; {runbook_steps.restart(host, s, strategy)}")
    except DeployError as exc:
        return runbook_steps.fail(ctx, host, s, exc, done)
    runbook_steps.record(ctx, host, s, name, done, found)
    drill = found.get("drill")
    if drill and not drill["passed"]:
        return runbook_steps.fail(
            ctx, host, s, f"the restore drill failed: {drill['problem']}", done
        )
    return True


def _archive_work(h, s: Settings, name: str) -> tuple[list[str], dict[str, Any]]:
    """The backup and restore runbooks (tasks/recovery.py): what they did, what they found."""
    r = remote(h)
    if name == "backup-setup":
        return recovery.backup_setup(r, s), {}
    if name == "restore-drill":
        return recovery.restore_drill(r, s)
    return recovery.restore_latest(r, s), {}


@deploy("Runbook overrides")
def keep_overrides(s: Settings, values: dict[str, Any]) -> None:
    """Ensure the host keeps VALUES as its runbook overrides (S: the settings it has now)."""
    python.call(
        name=f"Ensure the runbook overrides are {values or 'none'}",
        function=_keep_overrides,
        s=s,
        values=values,
        runbook=s.runbook,
    )


@deploy("Runbook")
def runbook(ctx: RunContext, s: Settings, strategy: Strategy, env_op: OperationMeta | None) -> None:
    """Runbook `runbook` on this host, S the settings with the overrides it leaves; STRATEGY
    restarts the service when the .env changed (ENV_OP). Any operation that fails ends the
    host's runbook the way a failed step does."""
    ctx.on_failure(host, lambda error: runbook_steps.fail(ctx, host, s, error, None))
    python.call(
        name=f"Runbook {s.runbook}: {RUNBOOKS[s.runbook]}",
        function=_run,
        ctx=ctx,
        s=s,
        strategy=strategy,
        env_op=env_op,
    )
