"""Report (the checklist's success metrics and its "Deployment Status" block): a table on the
terminal, JSON under reports/, a deployment record appended on each app host and a manifest
that a rollback reads. Also the one way a phase fails: `fail()`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click
from pyinfra.api import deploy
from pyinfra.operations import python

from tasks import commands, lock
from tasks.runtime import (
    RUNS,
    DeployError,
    Plan,
    Run,
    append_record,
    deployed_by,
    now_iso,
    put_text,
    run_for,
    sh,
)

RUN_STAMP = time.strftime("%Y%m%d-%H%M%S", time.gmtime())


def inventory_arg() -> str:
    return next(
        (a for a in sys.argv[1:] if a.endswith(".py") and "inventor" in a), "inventories/<env>.py"
    )


def rollback_command(plan: Plan, host_name: str) -> str:
    if not plan.previous_version:
        return "(first deploy on this host: there is no earlier release to go back to)"
    return f"pyinfra -y {inventory_arg()} rollback.py --limit {host_name}"


def record(run: Run, s: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """The deployment record: the checklist's status block plus phases and metrics."""
    finished = run.completed or time.time()
    return {
        "environment": run.env,
        "host": run.host,
        "status": run.outcome,
        "started": now_iso(run.started),
        "completed": now_iso(finished),
        "seconds": round(finished - run.started, 1),
        "deployed_by": deployed_by(s),
        "version": plan.ref,
        "commit": plan.commit,
        "release": plan.release,
        "previous_release": plan.previous_version,
        "notes": s["report_notes"],
        "failure": run.failure,
        "changed": run.all_changes(),
        "rolled_back": run.rolled_back,
        "not_rolled_back": run.not_rolled_back,
        "phases": run.phases,
        "success_metrics": run.metrics,
        "facts": run.facts,
    }


def manifest(run: Run, s: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """What a rollback needs, and nothing it would have to guess."""
    backup = run.facts.get("backup", {})
    return {
        "format": 1,
        "environment": run.env,
        "host": run.host,
        "written": now_iso(),
        "outcome": run.outcome,
        "previous_release": plan.previous_dir,
        "release": plan.release_dir,
        "version": plan.ref,
        "commit": plan.commit,
        "backup": {
            k: backup.get(k)
            for k in ("path", "sha256", "metrics_rows", "metrics_max_id", "metrics_md5")
        }
        if backup.get("taken")
        else None,
        "migrations_applied": run.facts.get("migrations", {}).get("applied", []),
        "redis_container_created": _container_created(run),
    }


def _container_created(run: Run) -> bool:
    op = run.ops.get("redis container")
    changed = op is not None and op.is_complete() and op.did_change()
    return changed and not run.facts.get("redis_container_existed", True)


def print_table(run: Run) -> None:
    width = max([len(m["metric"]) for m in run.metrics] + [6])
    click.echo(f"\n--> Success metrics on {run.host} ({run.env}): {run.outcome}", err=True)
    click.echo(f"    {'metric':<{width}}  {'threshold':<28}  {'result':<5}  measured", err=True)
    for m in run.metrics:
        result = "pass" if m["pass"] else "FAIL"
        click.echo(
            f"    {m['metric']:<{width}}  {m['threshold']:<28}  {result:<5}  {m['measured']}",
            err=True,
        )
    changes = run.all_changes()
    click.echo(
        f"    changes: {', '.join(changes) if changes else 'none (already deployed)'}", err=True
    )
    click.echo(
        "    phases: " + ", ".join(f"{p['phase']} {p['seconds']}s" for p in run.phases), err=True
    )


def write_local(s: dict[str, Any], plans: dict[str, Plan]) -> Path:
    folder = Path(s["report_dir"])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{s['deploy_env']}-{RUN_STAMP}.json"
    data = {
        "environment": s["deploy_env"],
        "run": RUN_STAMP,
        "hosts": {name: record(RUNS[name], s, plans[name]) for name in plans},
    }
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


PLANS: dict[str, Plan] = {}


def _write_records(host, s: dict[str, Any], plan: Plan) -> Path:
    run = run_for(host)
    p = commands.paths(s)
    append_record(host, s, record(run, s, plan))
    if plan.release_changes or run.outcome != "success":
        text = json.dumps(manifest(run, s, plan), indent=2) + "\n"
        path = f"{p['manifests']}/{RUN_STAMP}.json"
        put_text(host, text, path)
        sh(host, f"ln -sfn {commands.q(path)} {commands.q(p['manifests'] + '/latest.json')}")
    PLANS[host.name] = plan
    return write_local(s, PLANS)


def fail(
    h, s: dict[str, Any], plan: Plan, phase: str, error: Exception | str, roll_back: bool = False
) -> bool:
    """Stop this host's deploy: roll back when asked (and allowed), write the record and the
    report, tell the operator what failed, the state things are in and how to roll back.

    Returns False, which a callback returns to pyinfra to fail its operation (and the host)."""
    from tasks.release import roll_back as quick_rollback

    run = run_for(h)
    run.outcome, run.failure = "failed", f"{phase}: {error}"
    run.completed = time.time()
    state = "the previous release keeps serving (nothing was switched)"
    if roll_back and s["auto_rollback"]:
        try:
            state = quick_rollback(h, s, plan, f"{phase} failed")
            run.outcome = "failed, rolled back" if run.rolled_back else run.outcome
        except DeployError as exc:
            state = f"AUTOMATIC ROLLBACK FAILED: {exc}"
    elif roll_back:
        state = f"auto_rollback is off: {plan.release} stays current"
    applied = run.facts.get("migrations", {}).get("applied", [])
    if applied:
        run.not_rolled_back.append(f"migrations {', '.join(applied)}: never reverted automatically")
    mark_phase(h, "done")
    if plan.is_migration_host:
        lock.release(h, s)
    try:
        path = _write_records(h, s, plan)
    except DeployError as exc:
        path = f"(could not write the record: {exc})"
    print_table(run)
    lines = [
        f"--> DEPLOY FAILED on {h.name} in phase {phase}",
        f"    what failed: {error}",
        f"    state now:   {state}",
    ]
    if run.not_rolled_back:
        lines.append(f"    not rolled back: {'; '.join(run.not_rolled_back)}")
    if run.rolled_back:
        lines.append(f"    rolled back: {'; '.join(run.rolled_back)}")
    else:
        lines.append(f"    roll back:   {rollback_command(plan, h.name)}")
    lines.append(f"    report:      {path}")
    click.echo(click.style("\n" + "\n".join(lines) + "\n", fg="red"), err=True)
    return False


def phase_check(phase: str, roll_back: bool = False):
    """Make BODY(host, s, plan, **kwargs) the execution-time callback of PHASE: a DeployError
    it raises fails the host through fail() (rolling back first when ROLL_BACK). pyinfra passes
    state and host to a callback that names them, and fails the operation when it returns
    False."""

    def wrap(body):
        def callback(state, host, s: dict[str, Any], plan: Plan, **kwargs: Any) -> bool:
            try:
                body(host, s, plan, **kwargs)
            except DeployError as exc:
                return fail(host, s, plan, phase, exc, roll_back=roll_back)
            return True

        callback.__name__ = body.__name__
        return callback

    return wrap


def mark_phase(h, name: str) -> None:
    """Close the previous phase's timing and open NAME's."""
    run = run_for(h)
    now = time.time()
    if run.phases and "seconds" not in run.phases[-1]:
        run.phases[-1]["seconds"] = round(now - run.phases[-1]["start"], 2)
    if name != "done":
        run.phases.append({"phase": name, "start": now})


def start_phase(name: str) -> None:
    """An operation that marks where a phase begins, so the report has per-phase timings."""
    python.call(name=f"--- phase: {name}", function=_mark, phase=name)


def _mark(state, host, phase: str) -> bool:
    mark_phase(host, phase)
    return True


def _report(state, host, s: dict[str, Any], plan: Plan) -> bool:
    run = run_for(host)
    mark_phase(host, "done")
    run.outcome, run.completed = "success", time.time()
    path = _write_records(host, s, plan)
    if plan.is_migration_host:
        lock.release(host, s)
    print_table(run)
    click.echo(f"    report: {path}\n", err=True)
    return True


@deploy("Report")
def report(s: dict[str, Any], plan: Plan) -> None:
    python.call(
        name="Write the deployment record and the success metrics", function=_report, s=s, plan=plan
    )
