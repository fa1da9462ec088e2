"""Telling people: one Slack-compatible message (`{"text": ...}`, JSON POST) when a deploy or
rollback starts, succeeds, fails or rolls back by itself, to the URL in NOTIFY_WEBHOOK_URL (an
environment variable, like a secret: webhook URLs carry their token). Sent from the deploying
machine; it names the environment, version, who, how long and the failing check, never a
secret; a notification that fails is a warning, never a failed run."""

from __future__ import annotations

import json
import os
import time
import urllib.request

import click
from pyinfra import host
from pyinfra.operations import python

from tasks.config import Settings
from tasks.context import RunContext
from tasks.hosts import app_hosts, migration_host_name
from tasks.settings import deployed_by

TIMEOUT = 5  # seconds a notification may take
# the reasons a run was let through despite a rule; the start's message tells them
OVERRIDES = ("deploy_override", "drift_accept", "promote_override")


def message(ctx: RunContext, event: str, s: Settings, version: str, detail: str = "") -> str:
    """`deploy lab v2.0.0-perf: succeeded (by ci@runner, 42 s)`, then the detail."""
    took = time.time() - ctx.started
    text = f"{ctx.kind} {s.deploy_env} {version}: {event} (by {deployed_by(s)}, {took:.0f} s)"
    return text + (f"\n{detail}" if detail else "")


def send(text: str) -> bool:
    """POST TEXT to NOTIFY_WEBHOOK_URL (nothing to do when unset); False, with a warning, when
    it could not be delivered."""
    url = os.environ.get("NOTIFY_WEBHOOK_URL", "")
    if not url:
        return True
    request = urllib.request.Request(
        url,
        data=json.dumps({"text": text}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
            answer.read()
        return True
    except (OSError, ValueError) as exc:  # URLError and timeouts are OSErrors
        reason = type(exc).__name__  # never the URL: it may hold a token
        click.echo(f"    notification not sent ({reason}); the run goes on", err=True)
        return False


def _started(state, host, ctx: RunContext, s: Settings, version: str) -> bool:
    overrides = [f"{v}: {getattr(s, v)}" for v in OVERRIDES if getattr(s, v)]
    send(message(ctx, "started", s, version, "\n".join(overrides)))
    return True


def started(ctx: RunContext, s: Settings, version: str) -> None:
    """An operation on the migration host (one per run): the run has started."""
    if host.name == migration_host_name(s):
        python.call(
            name=f"Tell the team the {ctx.kind} started",
            function=_started,
            ctx=ctx,
            s=s,
            version=version,
        )


def failed(ctx: RunContext, s: Settings, version: str, name: str, detail: str, back: bool) -> None:
    """Host NAME failed (BACK: and went back to its previous release by itself)."""
    ctx.failed_hosts.add(name)
    event = "failed, rolled back by itself" if back else "failed"
    send(message(ctx, f"{event} on {name}", s, version, detail))


def ended(ctx: RunContext, host, s: Settings, version: str) -> None:
    """HOST is at the run's end: the last app host to get there tells how the run ended."""
    ctx.ended_hosts.add(host.name)
    if {h.name for h in app_hosts()} <= ctx.ended_hosts and not ctx.end_told:
        ctx.end_told = True
        bad = sorted(ctx.failed_hosts)
        event = f"finished, failed on {', '.join(bad)}" if bad else "succeeded"
        send(message(ctx, event, s, version))
