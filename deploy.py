"""The deployment checklist as code: `pyinfra -y inventories/<env>.py deploy.py`.

Phases run in the checklist's order; each lives in tasks/<phase>.py. The new release is built
before the backup (its migrations decide whether one is needed) and goes live only after the
database, Redis and .env are ready, batch by batch across the app hosts (tasks/rollout.py).
Migrations headed `-- deploy: contract` run last, once every app host serves the release.
A load balancer host (group lb_servers) gets no deploy: the rollout drains the app hosts on it.
"""

import click
from pyinfra import host

from tasks import (
    backup,
    env_file,
    helm,
    loadtest,
    lock,
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
from tasks.config import Settings
from tasks.runtime import DeployError, is_dry, run_for, settings


def checklist(s: Settings) -> None:
    """An app host: the checklist's phases, in order."""
    rollout.check_reachable(s)
    on_kubernetes = s.release_method == "helm"
    try:
        backup.check_copy_target(s)
        if on_kubernetes and not is_dry() and helm.missing_tools(s):
            raise DeployError("release_method helm: " + "; ".join(helm.missing_tools(s)))
        plan = release.make_plan(s)
        if is_dry():
            migrate.preview(s, plan)
            if on_kubernetes and plan.is_migration_host:
                click.echo("--> release_method helm: on the deploying machine, would run:")
                click.echo("\n".join(f"    {line}" for line in helm.plan_text(s)))
    except DeployError as exc:
        raise SystemExit(f"{exc}\nNothing was changed.") from None
    run = run_for()

    report.start_phase("preflight")
    preflight.preflight(s, plan)
    notify.started(s, "deploy", plan.ref)
    report.start_phase("build")
    built = release.build(s, plan)
    if built is not None:
        run.ops["release built"] = built
    report.start_phase("backup")
    backup.backup(s, plan)
    report.start_phase("migrate")
    migrate.migrate(s, plan)
    if on_kubernetes:  # the cluster runs the service: its readiness probe is the health gate
        report.start_phase("release")
        helm.release(s, plan)
        release.prune(s, plan)
        report.start_phase("contract")
        migrate.contract(s, plan)
        report.report(s, plan)
        lock.release_at_end(s)
        notify.finished(s, "deploy", plan.ref)
        return
    report.start_phase("redis")
    redis_op = redis.redis(s, plan)
    if redis_op is not None:
        run.ops["redis container"] = redis_op
    report.start_phase("env_file")
    run.ops[".env"] = env_file.env_file(s)
    report.start_phase("release")
    release_ops = release.prepare(s, plan, redis_op)
    run.ops.update(release_ops)
    rollout.roll_out(s, plan, restart_if_changed=[run.ops[".env"], *release_ops.values()])
    release.prune(s, plan)
    report.start_phase("verify")
    verify.verify(s, plan)
    report.start_phase("loadtest")
    loadtest.loadtest(s, plan)
    report.start_phase("monitor")
    monitor.monitor(s, plan)
    report.start_phase("contract")
    migrate.contract(s, plan)
    report.report(s, plan)
    lock.release_at_end(s)
    notify.finished(s, "deploy", plan.ref)


s = settings()
if rollout.LB_GROUP in host.groups:
    rollout.check_balancer(s)  # nothing is deployed on the load balancer
else:
    checklist(s)
