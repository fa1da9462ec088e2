"""The deployment checklist as code: `pyinfra -y inventories/<env>.py deploy.py`.

Phases run in the checklist's order; each lives in tasks/<phase>.py. The new release is built
before the backup (its migrations decide whether one is needed) and goes live only after the
database, Redis and .env are ready, batch by batch across the app hosts (tasks/rollout.py).
Migrations headed `-- deploy: contract` run last, once every app host serves the release.
A load balancer host (group lb_servers) gets no deploy: the rollout drains the app hosts on it.
The database server and the backup repository (db_servers, backup_servers) get none either.
"""

import sys

import click
from pyinfra import host, state

from tasks import (
    backup,
    env_file,
    helm,
    loadtest,
    migrate,
    monitor,
    notify,
    preflight,
    redis,
    release,
    report,
    rollout,
    verify,
)
from tasks.commands import helm as helm_commands
from tasks.config import Settings
from tasks.context import Plan, RunContext
from tasks.hosts import APP_GROUP
from tasks.method import Method, method_for
from tasks.outcome import deploy_ends_on_any_failure, ended
from tasks.records import start_phase
from tasks.remote import DeployError
from tasks.settings import settings
from tasks.strategy import strategy_for


def plan(ctx: RunContext, s: Settings, method: Method) -> Plan:
    """What this host's deploy will do, read before any change; with --dry, the database work
    and the Helm commands it would run. Bad input stops here, before anything changed."""
    try:
        backup.check_copy_target(s)
        release.check_build_host(s)
        missing = helm.missing_tools(s) if method.name == "helm" and not ctx.dry else []
        if missing:
            raise DeployError("release_method helm: " + "; ".join(missing))
        found = release.make_plan(ctx, s)
        if ctx.dry:
            migrate.preview(s, found)
            if method.name == "helm" and found.is_migration_host:
                click.echo("--> release_method helm: on the deploying machine, would run:")
                lines = helm_commands.plan_text(s, helm.helm_major())
                click.echo("\n".join(f"    {line}" for line in lines))
    except DeployError as exc:
        raise SystemExit(f"{exc}\nNothing was changed.") from None
    return found


def checklist(ctx: RunContext, s: Settings) -> None:
    """An app host: the checklist's phases, in order."""
    rollout.check_reachable(ctx, s)
    method = method_for(s)
    p = plan(ctx, s, method)
    run = ctx.run(host)
    strategy = strategy_for(method) if method.on_hosts else None
    deploy_ends_on_any_failure(ctx, host, s, p, strategy)

    start_phase(ctx, "preflight")
    preflight.preflight(ctx, s, p, method)
    notify.started(ctx, s, p.ref)
    start_phase(ctx, "build")
    built = release.build(ctx, s, p, method)
    if built is not None:
        run.ops["release built"] = built
    start_phase(ctx, "backup")
    backup.backup(ctx, s, p, method)
    start_phase(ctx, "migrate")
    migrate.migrate(ctx, s, p, method)
    if strategy is None:  # Kubernetes runs the service: its readiness probe is the gate
        start_phase(ctx, "release")
        helm.release(ctx, s, p)
        release.prune(s, p)
    else:
        start_phase(ctx, "redis")
        redis_op = redis.redis(ctx, s, p)
        if redis_op is not None:
            run.ops["redis container"] = redis_op
        start_phase(ctx, "env_file")
        run.ops[".env"] = env_file.env_file(s)
        start_phase(ctx, "release")
        restart_on = strategy.ensure_ready(redis_op)
        run.ops.update(restart_on)
        rollout.roll_out(ctx, s, p, strategy, [run.ops[".env"], *restart_on.values()])
        release.prune(s, p)
        start_phase(ctx, "verify")
        verify.verify(ctx, s, p, strategy)
        start_phase(ctx, "loadtest")
        loadtest.loadtest(ctx, s, p, strategy)
        start_phase(ctx, "monitor")
        monitor.monitor(ctx, s, p, strategy)
    start_phase(ctx, "contract")
    migrate.contract(ctx, s, p, method)
    report.report(ctx, s, p)
    ended(ctx, s, p.ref)


context = RunContext.of(state, "deploy", sys.argv[1:])
host_settings = settings()
if rollout.LB_GROUP in host.groups:
    rollout.check_balancer(host_settings)  # nothing is deployed on the load balancer
elif APP_GROUP in host.groups:  # the database and repository hosts: reached by pgBackRest
    checklist(context, host_settings)
