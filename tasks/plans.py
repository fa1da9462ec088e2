"""Plan and apply. `plan.py` reads, changing nothing, what a deploy would do (the release and
its commit, what each host serves now, the batches, each pending migration with its checksum
and its lint verdict, the backup, the artifact) and writes it as plans/<env>-<id>.json, the id
a digest of its content. `deploy.py --data deploy_plan=<id>` compares the same, read live in
pre-flight, and refuses to start on any difference, naming it.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import click
from pyinfra.operations import python

from tasks import lint, promotion
from tasks.batches import batch_plan
from tasks.config import Settings
from tasks.context import Plan, RunContext
from tasks.hosts import app_hosts
from tasks.migrations import Migration
from tasks.remote import DeployError
from tasks.transport import say

PLAN_DIR = "plans"


def host_entry(plan: Plan) -> dict[str, Any]:
    return {"serving": plan.previous_version, "release_changes": plan.release_changes}


def run_entry(s: Settings, plan: Plan, hosts: list[str]) -> dict[str, Any]:
    """What is the same for every host: the environment, the release, the batches, the
    artifact (the newest tarball of the release kept in artifact_dir, when there is one)."""
    kept = promotion.kept(s.artifact_dir, plan.release)
    return {
        "environment": s.deploy_env,
        "release": plan.release,
        "commit": plan.commit,
        "hosts": sorted(hosts),
        "batches": batch_plan(hosts, s.rollout_batch, s.rollout_canary),
        "artifact": kept[0][1] if kept else "built by the deploy",
    }


def _verdict(findings: list[dict[str, Any]], mode: str, file: str) -> str:
    mine = [f for f in findings if f["file"] == file]
    refused = sorted({f["rule"] for f in mine if f["refused"]}) if mode == "error" else []
    if refused:
        return "refused: " + ", ".join(refused)
    return ("warnings: " + ", ".join(sorted({f["rule"] for f in mine}))) if mine else "passes"


def database_entry(
    s: Settings, plan: Plan, pending: list[Migration], linted: dict[str, Any]
) -> dict[str, Any]:
    """The migration host's part: the pending migrations, each with its checksum and lint
    verdict (LINTED: the lint's record), and the backup the deploy would take first."""
    findings, mode = linted.get("findings", []), linted.get("mode", "off")
    backup = "none"
    if pending or plan.release_changes:
        backup = "pg_dump" if s.backup_method == "pg_dump" else "restore point (pgbackrest)"
    return {
        "migrations": [
            {
                "file": m.filename,
                "checksum": m.checksum,
                "lint": _verdict(findings, mode, m.filename),
            }
            for m in pending
        ],
        "backup": backup,
    }


def plan_id(document: dict[str, Any]) -> str:
    """The digest of what the plan says (not when it was made)."""
    content = {k: v for k, v in document.items() if k not in ("id", "made")}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]


def summary(document: dict[str, Any]) -> str:
    """The plan as Markdown, for a reviewer (a CI job's summary)."""
    lines = [
        f"## Deploy plan `{document['id']}` for {document['environment']}",
        "",
        f"- release `{document['release']}` (commit `{document['commit']}`)",
        f"- artifact: {document['artifact']}",
        f"- backup first: {document['backup']}",
        "- batches: " + " → ".join("[" + ", ".join(b) + "]" for b in document["batches"]),
        "",
        "| host | serves now | release changes |",
        "|---|---|---|",
    ]
    for name, entry in document["hosts_detail"].items():
        lines.append(f"| {name} | {entry['serving'] or 'nothing'} | {entry['release_changes']} |")
    lines += ["", "| pending migration | checksum | lint |", "|---|---|---|"]
    lines += [
        f"| {m['file']} | `{m['checksum'][:16]}` | {m['lint']} |" for m in document["migrations"]
    ]
    if not document["migrations"]:
        lines.append("| none | | |")
    lines += ["", f"Apply: `--data deploy_plan={document['id']}`"]
    return "\n".join(lines) + "\n"


def write(folder: str, document: dict[str, Any]) -> Path:
    """plans/<env>-<id>.json, its summary beside it (.md), and plans/<env>.id naming it (what
    a CI apply job reads)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{document['environment']}-{document['id']}.json"
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    path.with_suffix(".md").write_text(summary(document))
    (out / f"{document['environment']}.id").write_text(document["id"] + "\n")  # the newest
    return path


def read(folder: str, env: str, plan: str) -> dict[str, Any]:
    path = Path(folder) / f"{env}-{plan}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DeployError(f"deploy_plan {plan}: cannot read {path} ({exc})") from None


def differences(approved: dict[str, Any], live: dict[str, Any]) -> list[str]:
    """What LIVE says otherwise than the APPROVED plan, one line each (only LIVE's keys)."""
    lines: list[str] = []
    for key, now in live.items():
        then = approved.get(key)
        if key == "hosts_detail":
            for name, entry in now.items():
                before = (then or {}).get(name)
                if before != entry:
                    lines.append(f"host {name}: planned {before}, now {entry}")
        elif key == "hosts" and then != now:
            added, gone = sorted(set(now) - set(then or [])), sorted(set(then or []) - set(now))
            lines.append(f"hosts: added {added or 'none'}, removed {gone or 'none'}")
        elif key == "migrations" and then != now:
            planned = {m["file"]: m for m in then or []}
            current = {m["file"]: m for m in now}
            for name in sorted(set(planned) | set(current)):
                if name not in planned:
                    lines.append(f"migration {name}: new since the plan ({current[name]['lint']})")
                elif name not in current:
                    lines.append(f"migration {name}: planned, no longer pending")
                elif planned[name] != current[name]:
                    lines.append(f"migration {name}: planned {planned[name]}, now {current[name]}")
        elif then != now:
            lines.append(f"{key}: planned {then}, now {now}")
    return lines


def check_approved(s: Settings, live: dict[str, Any]) -> list[str]:
    """Pre-flight, with deploy_plan: the differences from the approved plan as problems."""
    try:
        approved = read(PLAN_DIR, s.deploy_env, s.deploy_plan)
    except DeployError as exc:
        return [str(exc)]
    found = differences(approved, live)
    if not found:
        return []
    listed = "".join(f"\n      {line}" for line in found)
    return [
        f"deploy_plan {s.deploy_plan}: the deploy would not do what was approved (make and "
        f"review a new plan: plan.py):{listed}"
    ]


def _gather(state, host, ctx: RunContext, s: Settings, plan: Plan) -> bool:
    """On each app host: its part of the plan; the last host to finish writes the plan."""
    entry: dict[str, Any] = {"host": host_entry(plan)}
    if plan.is_migration_host:
        try:
            result, pending = lint.lint_pending(host, s, plan)
        except DeployError as exc:
            entry["database"] = {"migrations": [], "backup": f"the deploy would stop: {exc}"}
        else:
            entry["database"] = database_entry(s, plan, pending, result.as_record())
        names = [h.name for h in app_hosts()]
        entry["run"] = run_entry(s, plan, names)
    ctx.plan_parts[host.name] = entry
    if not {h.name for h in app_hosts()} <= set(ctx.plan_parts):
        return True
    parts = ctx.plan_parts
    run = next(p["run"] for p in parts.values() if "run" in p)
    database = next(p["database"] for p in parts.values() if "database" in p)
    document = {
        **run,
        **database,
        "hosts_detail": {name: p["host"] for name, p in sorted(parts.items())},
        "made": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    document["id"] = plan_id(document)
    path = write(PLAN_DIR, document)
    click.echo(summary(document), err=True)
    say(host, f"plan {document['id']} written to {path}")
    click.echo(f"--> plan: {document['id']} ({path})", err=True)
    return True


def make(ctx: RunContext, s: Settings, plan: Plan) -> None:
    python.call(
        name="Read what a deploy would do (nothing changes)",
        function=_gather,
        ctx=ctx,
        s=s,
        plan=plan,
    )
