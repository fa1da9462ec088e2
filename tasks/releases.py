"""The release ledger of each app host (`pyinfra inventories/<env>.py releases.py`): the
releases on disk, which one serves, when each was deployed and by whom, its commit, its
schema version (its newest migration) and its verdict (tasks/ledger.py); then DORA's four keys
of the environment over `dora_window` days, from every host's records (tasks/dora.py).
Read-only: one remote command per host, no lock."""

from __future__ import annotations

from datetime import UTC, datetime

import click
from pyinfra.operations import python

from tasks import dora, ledger, telemetry
from tasks.commands import host_state, shell
from tasks.config import Settings
from tasks.context import RunContext
from tasks.hosts import app_hosts
from tasks.operations import deploy
from tasks.transport import sh

q = shell.q


def state_command(s: Settings) -> str:
    """Prints the releases with their schema, `=`, where `current` points, `=`, the newest
    deployment records (parse_state reads it)."""
    p = shell.paths(s)
    return host_state.releases_and_records(
        p["releases"], s.migrate_dir, p["current"], p["records"], ledger.RECORDS_READ
    )


def parse_state(out: str) -> tuple[dict[str, str], str | None, list[dict]]:
    """({release folder: schema version}, where `current` points, the records) from
    state_command's output."""
    lines = out.splitlines()
    first = lines.index("=")
    second = lines.index("=", first + 1)
    schemas = dict((line.split(" ", 1) + [""])[:2] for line in lines[:first] if line.strip())
    current = "".join(lines[first + 1 : second]).strip() or None
    return schemas, current, ledger.parse_records("\n".join(lines[second + 1 :]))


def read_state(host, s: Settings) -> tuple[dict[str, str], str | None, list[dict]]:
    """parse_state() of app host HOST, read in one command."""
    _, out, _ = sh(host, state_command(s), what="reading the releases and their records")
    return parse_state(out)


def _show(state, host, ctx: RunContext, s: Settings) -> bool:
    schemas, current, records = read_state(host, s)
    ctx.ledger[host.name] = records
    serving = current.rsplit("/", 1)[-1] if current else None
    rows = ledger.rows(list(schemas), serving, schemas, records)
    lines = [f"--> Releases on {host.name} ({s.deploy_env}): {len(rows)} on disk"]
    lines += [f"    {line}" for line in ledger.table(rows)] if rows else ["    (none)"]
    click.echo("\n".join(lines), err=True)
    return True


def _dora(state, host, ctx: RunContext, s: Settings) -> bool:
    """DORA's four keys of the environment, from every app host's records, printed once."""
    if host.name != app_hosts()[0].name:
        return True
    records = [r for found in ctx.ledger.values() for r in found]
    figures = dora.figures(records, datetime.now(UTC), s.dora_window)
    lines = [
        f"--> DORA of {s.deploy_env} over the last {s.dora_window} days ({len(ctx.ledger)} "
        "app hosts' records)"
    ]
    click.echo("\n".join(lines + [f"    {line}" for line in figures.lines()]), err=True)
    telemetry.push(s, telemetry.dora_registry(s.deploy_env, figures), {"env": s.deploy_env})
    return True


@deploy("Release ledger")
def show(ctx: RunContext, s: Settings) -> None:
    python.call(name="Read the releases on this host", function=_show, ctx=ctx, s=s)
    python.call(name="Compute DORA's four keys from the records", function=_dora, ctx=ctx, s=s)
