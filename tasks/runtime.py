"""What the phases share during one run: settings, the run's record, remote commands, errors."""

from __future__ import annotations

import getpass
import json
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from io import StringIO
from typing import Any

import click
from pyinfra import host
from pyinfra.api.host import Host
from pyinfra.api.operation import OperationMeta

from tasks import commands
from tasks.config import check_or_exit


class DeployError(Exception):
    """A phase failed; the message is written for the operator."""


@dataclass
class Plan:
    """What this run will do on one host, decided from facts read before any change."""

    ref: str
    commit: str
    release: str  # folder name under releases/
    release_dir: str
    previous_dir: str | None  # what `current` points at now (None on a first deploy)
    previous_version: str | None
    is_migration_host: bool
    release_changes: bool


@dataclass
class Run:
    """The record of one run on one host; the report and the manifest are written from it."""

    host: str
    env: str
    started: float = field(default_factory=time.time)
    phases: list[dict[str, Any]] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    outcome: str = "running"
    completed: float | None = None
    failure: str | None = None
    rolled_back: list[str] = field(default_factory=list)
    not_rolled_back: list[str] = field(default_factory=list)
    ops: dict[str, OperationMeta] = field(default_factory=dict)

    def all_changes(self) -> list[str]:
        """What this run changed so far: resource operations that did change, then what the
        execution-time steps recorded (backup, migrations)."""
        done = [name for name, op in self.ops.items() if op.is_complete() and op.did_change()]
        return done + self.changed

    def metric(self, name: str, threshold: str, measured: Any, passed: bool) -> None:
        self.metrics.append(
            {"metric": name, "threshold": threshold, "measured": measured, "pass": passed}
        )


RUNS: dict[str, Run] = {}


def settings() -> dict[str, Any]:
    """This host's validated settings (group_vars, inventory and --data), or stop listing
    every problem."""
    data = {key: value for key, value in host.data.dict().items()}
    return check_or_exit(data, f"[{host.name}]")


def run_for(h: Host | None = None) -> Run:
    h = h if h is not None else host
    if h.name not in RUNS:
        RUNS[h.name] = Run(host=h.name, env=h.data.get("deploy_env", "?"))
    return RUNS[h.name]


def deployed_by(s: dict[str, Any]) -> str:
    return s["report_deployed_by"] or f"{getpass.getuser()}@{socket.gethostname()}"


def now_iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts or time.time(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def say(h: Host, message: str) -> None:
    """One progress line, as pyinfra prints its own: `[host] message`."""
    click.echo(f"    [{h.name}] {message}", err=True)


def sh(
    h: Host, command: str, timeout: int = 60, what: str | None = None, check: bool = True
) -> tuple[bool, str, str]:
    """Run COMMAND on host H (as root); raise DeployError with WHAT when it fails."""
    ok, output = h.run_shell_command(command=command, _timeout=timeout, _sudo=False)
    stdout, stderr = output.stdout, output.stderr
    if check and not ok:
        detail = (stderr or stdout).strip()[-2000:]
        raise DeployError(f"{what or 'a command'} failed on {h.name}: {detail}")
    return ok, stdout, stderr


def put_text(h: Host, text: str, dest: str, mode: str = "600") -> None:
    """Upload TEXT to DEST with MODE, created with that mode (a secret is never readable
    by others, not even for a moment)."""
    tmp = f"{dest}.upload"
    sh(h, f"umask 077 && rm -f {commands.q(tmp)} && touch {commands.q(tmp)}", what="upload")
    if not h.put_file(StringIO(text), tmp):
        raise DeployError(f"could not upload {dest} to {h.name}")
    sh(
        h,
        f"chmod {mode} {commands.q(tmp)} && mv -f {commands.q(tmp)} {commands.q(dest)}",
        what=f"install {dest}",
    )


def append_record(h: Host, s: dict[str, Any], record: dict[str, Any]) -> None:
    """Append one JSON line to the host's deployment records (root only, mode 0600)."""
    records = commands.paths(s)["records"]
    tmp = f"{commands.paths(s)['state']}/record.tmp"
    put_text(h, json.dumps(record, default=str) + "\n", tmp)
    sh(
        h,
        f"cat {commands.q(tmp)} >> {commands.q(records)} && rm -f {commands.q(tmp)} "
        f"&& chmod 600 {commands.q(records)}",
        what="appending the deployment record",
    )


def secret(name: str) -> str:
    return os.environ.get(name, "")
