"""The records of a run (the checklist's success metrics and its "Deployment Status" block): a
table on the terminal, JSON, JUnit XML (for CI systems) and a page under reports/, a deployment
record appended on each app host and a manifest that a rollback reads; and each phase's timing.
It renders and writes; the report phase (tasks/report.py) and the failure path
(tasks/outcome.py) decide when."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path
from typing import Any

import click
from pyinfra.operations import python

from tasks.commands import drift, git, shell
from tasks.config import Settings
from tasks.context import Plan, Run, RunContext
from tasks.remote import DeployError
from tasks.report_html import html_report
from tasks.settings import deployed_by
from tasks.transport import remote, sh


def now_iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts or time.time(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def left_on(h, s: Settings) -> dict[str, str]:
    """What the deploy manages on app host H, as it is now (tasks/commands/drift.py)."""
    _, out, _ = sh(h, drift.host_state_script(s), what="listing what the deploy manages")
    return drift.parse_host_state(out)


def append_record(
    h, s: Settings, record: dict[str, Any], left: bool | dict[str, str] = False
) -> None:
    """Append one JSON line to host H's deployment records (root only, mode 0600); with LEFT,
    the record says what the run left on the host (`left`: what drift is measured against),
    listed now or given. The line goes through a file in the state folder (0700: no one else
    can reach it, so it needs no mode of its own while it is uploaded)."""
    if left:
        record = {**record, "left": left if isinstance(left, dict) else left_on(h, s)}
    records = shell.paths(s)["records"]
    tmp = f"{shell.paths(s)['state']}/record.tmp"
    if not h.put_file(StringIO(json.dumps(record, default=str) + "\n"), tmp):
        raise DeployError(f"could not upload the deployment record to {h.name}")
    sh(
        h,
        f"umask 077 && cat {shell.q(tmp)} >> {shell.q(records)} && rm -f {shell.q(tmp)} "
        f"&& chmod 600 {shell.q(records)}",
        what="appending the deployment record",
    )


def record(run: Run, s: Settings, plan: Plan) -> dict[str, Any]:
    """The deployment record: the checklist's status block plus phases and metrics."""
    finished = run.completed or time.time()
    return {
        "environment": run.env,
        "host": run.host,
        "run": run.stamp,
        "status": run.outcome,
        "started": now_iso(run.started),
        "completed": now_iso(finished),
        "seconds": round(finished - run.started, 1),
        "deployed_by": deployed_by(s),
        "version": plan.ref,
        "commit": plan.commit,
        "commit_time": now_iso(run.commit_time) if run.commit_time else None,
        "release": plan.release,
        "release_changed": plan.release_changes,
        "previous_release": plan.previous_version,
        "notes": s.report_notes,
        "failure": run.failure,
        "changed": run.all_changes(),
        "rolled_back": run.rolled_back,
        "not_rolled_back": run.not_rolled_back,
        "artifact": asdict(run.artifact) if run.artifact else None,
        "phases": run.phases,
        "success_metrics": run.metrics,
        "facts": run.report_facts(),
    }


def manifest(run: Run, s: Settings, plan: Plan) -> dict[str, Any]:
    """What a rollback needs, and nothing it would have to guess."""
    backup, migrations = run.backup, run.migrations
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
            "method": backup.method,
            "restore_point": backup.restore_point,
            "backup_set": backup.backup_set,
            "path": backup.path,
            "sha256": backup.sha256,
            "metrics_rows": backup.metrics_rows,
            "metrics_max_id": backup.metrics_max_id,
            "metrics_md5": backup.metrics_md5,
        }
        if backup and backup.taken
        else None,
        "artifact": asdict(run.artifact) if run.artifact else None,
        "migrations_applied": run.applied_migrations(),
        "contract_migrations_applied": (migrations.contract_applied or []) if migrations else [],
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
    if "serving" in run.facts:
        click.echo(f"    serving: {run.facts['serving'] or 'nothing'}", err=True)
    changes = run.all_changes()
    click.echo(
        f"    changes: {', '.join(changes) if changes else 'none (already deployed)'}", err=True
    )
    click.echo(
        "    phases: " + ", ".join(f"{p['phase']} {p['seconds']}s" for p in run.phases), err=True
    )


def junit_xml(env: str, records: dict[str, dict[str, Any]]) -> str:
    """The run as JUnit XML: per host a test suite with one test case per phase (the failing
    phase fails, with the run's failure) and one per success metric (a failing metric shows
    what was measured against its threshold), so CI systems show the checklist natively."""
    suites = ET.Element("testsuites", name=f"deploy {env}")
    for host, rec in sorted(records.items()):
        suite = ET.SubElement(suites, "testsuite", name=f"{env}.{host}")
        failed_phase = (rec["failure"] or "").split(":", 1)[0] if rec["failure"] else ""
        cases = 0
        for phase in rec["phases"]:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"{env}.{host}.phases",
                name=phase["phase"],
                time=str(phase.get("seconds", 0)),
            )
            if phase["phase"] == failed_phase:
                ET.SubElement(case, "failure", message=rec["failure"][:500]).text = rec["status"]
            cases += 1
        for metric in rec["success_metrics"]:
            case = ET.SubElement(
                suite, "testcase", classname=f"{env}.{host}.success_metrics", name=metric["metric"]
            )
            if not metric["pass"]:
                ET.SubElement(
                    case,
                    "failure",
                    message=f"measured {metric['measured']}, threshold {metric['threshold']}",
                )
            cases += 1
        failures = len(suite.findall("./testcase/failure"))
        suite.set("tests", str(cases))
        suite.set("failures", str(failures))
        suite.set("time", str(rec["seconds"]))
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def write_local(ctx: RunContext, s: Settings) -> Path:
    """reports/<env>-<run>.json and, beside it, the same run as JUnit XML and as a page."""
    folder = Path(s.report_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{s.deploy_env}-{ctx.stamp}.json"
    records = {name: record(ctx.runs[name], s, plan) for name, plan in ctx.plans.items()}
    data = {"environment": s.deploy_env, "run": ctx.stamp, "hosts": records}
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    path.with_suffix(".xml").write_text(junit_xml(s.deploy_env, records))
    page = html_report(s.deploy_env, ctx.stamp, records)
    path.with_suffix(".html").write_text(page)
    return path


def write_records(ctx: RunContext, host, s: Settings, plan: Plan) -> Path:
    """The deployment record and (when the release changed or the deploy failed) the manifest
    on the host; the run's local JSON report, rewritten with this host in it."""
    run = ctx.run(host)
    p = shell.paths(s)
    # a deploy refused in pre-flight changed nothing: what the previous run left still holds;
    # one that changed nothing left what pre-flight listed
    left: bool | dict[str, str] = not (
        run.outcome != "success" and (run.failure or "").startswith("preflight:")
    )
    if run.outcome == "success" and not run.all_changes() and run.listed is not None:
        left = run.listed
    if plan.release_changes:  # the lead time of a change (DORA): from its commit
        ok, out, _ = sh(host, f"echo {git.commit_time(plan.release_dir)}", check=False)
        run.commit_time = float(out) if ok and out.strip().isdigit() else None
    append_record(host, s, record(run, s, plan), left=left)
    if plan.release_changes or run.outcome != "success":
        text = json.dumps(manifest(run, s, plan), indent=2) + "\n"
        path = f"{p['manifests']}/{ctx.stamp}.json"
        remote(host).put_text(text, path)
        sh(host, f"ln -sfn {shell.q(path)} {shell.q(p['manifests'] + '/latest.json')}")
    ctx.plans[host.name] = plan
    return write_local(ctx, s)


def mark_phase(run: Run, name: str) -> None:
    """Close the previous phase's timing in RUN and open NAME's."""
    now = time.time()
    if run.phases and "seconds" not in run.phases[-1]:
        run.phases[-1]["seconds"] = round(now - run.phases[-1]["start"], 2)
    if name != "done":
        run.phases.append({"phase": name, "start": now})


def start_phase(ctx: RunContext, name: str) -> None:
    """An operation that marks where a phase begins, so the report has per-phase timings."""
    python.call(name=f"--- phase: {name}", function=_mark, ctx=ctx, phase=name)


def _mark(state, host, ctx: RunContext, phase: str) -> bool:
    mark_phase(ctx.run(host), phase)
    return True
