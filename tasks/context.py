"""The run context: what one run (deploy, rollback, runbook or unlock) knows, in one object.

The entry script creates it (`RunContext.of(state, "deploy", sys.argv[1:])`) and passes it to
every phase; nothing under tasks/ keeps state of its own. pyinfra runs the entry script once per
host in one process, so the context is kept on pyinfra's State: every host's run of the script
gets the same object, and every host's callbacks share it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import click
from gevent.event import AsyncResult
from gevent.lock import BoundedSemaphore
from pyinfra.api.host import Host
from pyinfra.api.operation import OperationMeta
from pyinfra.api.state import BaseStateCallback, State

from tasks.batches import Rollout
from tasks.remote import Remote
from tasks.transport import send_at_once_on_every_connection

KEPT_AS = "monitoring_dashboard_run"  # the attribute of pyinfra's State that holds the context


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


def _present(fields: Any) -> dict[str, Any]:
    """A hand-off as the report shows it: its fields that hold something."""
    return {k: v for k, v in asdict(fields).items() if v is not None}


@dataclass
class Backup:
    """What the backup phase hands on (to the migrate phase, the manifest and the report)."""

    taken: bool
    reason: str
    verified: bool | None = None  # taken and read back with pg_restore --list
    path: str | None = None
    sha256: str | None = None
    bytes: int | None = None
    seconds: float | None = None
    entries: int | None = None
    metrics_rows: int | None = None
    metrics_max_id: int | None = None
    metrics_md5: str | None = None
    copy: str | None = None
    method: str | None = None  # pg_dump or pgbackrest, when taken
    # pgbackrest: the named restore point, the backup a restore starts from, the WAL segment
    # holding the point (archived before the phase ended)
    restore_point: str | None = None
    backup_set: str | None = None
    wal_segment: str | None = None


@dataclass
class Migrations:
    """What the migrate phase hands on (to its contract step, the failure path, the manifest
    and the report): migration versions, applied, adopted, held back or reverted."""

    applied: list[str] = field(default_factory=list)
    baseline: list[str] | None = None
    contract_pending: list[str] = field(default_factory=list)
    contract_applied: list[str] | None = None
    reverted: list[str] | None = None
    backfilled_rows: dict[str, int] | None = None
    objects: list[dict[str, Any]] | None = None


@dataclass
class Artifact:
    """The release as the build phase shipped it (the manifest and the report)."""

    sha256: str
    built_on: str


@dataclass
class Run:
    """The record of one run on one host; the report and the manifest are written from it."""

    host: str
    env: str
    stamp: str = ""  # the run's (RunContext.stamp): one deploy across its hosts
    started: float = field(default_factory=time.time)
    commit_time: float | None = None  # the release's commit, epoch seconds (read at the end)
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
    # the migrations the pre-flight found pending under this run's lock (tasks/migrations.py's
    # Migration); nothing writes the history before the migrate phase, so the backup decides
    # on them without reading it again. None: not read yet.
    pending: list[Any] | None = None
    # what the deploy manages on the host as pre-flight listed it (tasks/drift.py); a run
    # that changed nothing records it as what it left instead of listing again
    listed: dict[str, str] | None = None
    # what one phase hands the next (None: that phase did not run here)
    backup: Backup | None = None
    migrations: Migrations | None = None
    artifact: Artifact | None = None

    def report_facts(self) -> dict[str, Any]:
        """The facts the report and the record show: each phase's, the hand-offs included."""
        handed = {"backup": self.backup, "migrations": self.migrations, "artifact": self.artifact}
        return {**self.facts, **{k: _present(v) for k, v in handed.items() if v is not None}}

    def applied_migrations(self) -> list[str]:
        return self.migrations.applied if self.migrations else []

    def all_changes(self) -> list[str]:
        """What this run changed so far: resource operations that did change, then what the
        execution-time steps recorded (backup, migrations)."""
        done = [name for name, op in self.ops.items() if op.is_complete() and op.did_change()]
        return done + self.changed

    def metric(self, name: str, threshold: str, measured: Any, passed: bool) -> None:
        self.metrics.append(
            {"metric": name, "threshold": threshold, "measured": measured, "pass": passed}
        )


@dataclass
class DeployState:
    """What a deploy keeps across its hosts, and no other kind of run."""

    rollout: Rollout | None = None  # planned by the first host that gets there
    commits: dict[tuple[str, str], AsyncResult] = field(default_factory=dict)  # repo, ref
    verifying: BoundedSemaphore | None = None  # app hosts timing requests at once
    awaiting_release: set[str] = field(default_factory=set)  # hosts receiving the build
    release_artifact: tuple[str, str] | None = None  # local tarball, its sha256
    promotion: tuple[list[str], dict[str, Any]] | None = None  # pre-flight's, once per run
    warned_unreachable: bool = False  # the operator was told which app hosts are missing


def inventory_of(argv: list[str]) -> str:
    """The inventory file ARGV names, for the commands printed to the operator."""
    return next((a for a in argv if a.endswith(".py") and "inventor" in a), "inventories/<env>.py")


class RunContext:
    """One run: its command line, each host's plan and record, the lock it holds, the hosts
    that have finished, what the team was told, and what only a deploy keeps (the rollout's
    batches, the release shipped to the app hosts: `deploy`). Shared by every host's
    callbacks."""

    def __init__(self, kind: str, argv: list[str]) -> None:
        self.kind = kind  # deploy, rollback, runbook, unlock, drift, plan
        self.dry = "--dry" in argv  # this run only shows what would change
        self.inventory = inventory_of(argv)
        self.command = " ".join(["pyinfra", *argv])[:500]
        self.started = time.time()
        self.stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(self.started))
        self.runs: dict[str, Run] = {}
        self.plans: dict[str, Plan] = {}
        self.lock_holder = ""  # set while this run holds the environment's lock
        self.finished: set[str] = set()  # app hosts whose part of the run has ended
        self.deploy = DeployState()  # what only a deploy keeps
        self.failed_hosts: set[str] = set()  # hosts whose failure was told to the team
        self.ended_hosts: set[str] = set()  # hosts at the run's last operation
        self.end_told = False  # the run's end was told to the team
        self.keep_migrations: dict[str, set[str]] = {}  # rollback: each target's migrations
        self.runbook_records: dict[str, dict[str, Any]] = {}  # runbook: each host's record
        self.drift: dict[str, dict[str, Any]] = {}  # drift: each host's differences and notes
        self.plan_parts: dict[str, dict[str, Any]] = {}  # plan: each host's part of the plan
        # rotation: the new value, what each endpoint holds, the decision, each host's switch
        self.rotation: dict[str, Any] = {}
        self.db_login_role = ""  # rotate-db-password: the role the run logs in as once switched
        self.ledger: dict[str, list[dict[str, Any]]] = {}  # releases: each host's records
        self.serving: dict[str, str | None] = {}  # the release each app host serves at its end
        # called once every host has disconnected (pyinfra's end of the run), by name
        self.at_end: dict[str, Callable[[], Any]] = {}
        self.connected: set[str] = set()  # hosts connected now
        # how each host's part ends when any operation fails on it (see operation_failed)
        self.endings: dict[str, Callable[[str], Any]] = {}

    @classmethod
    def of(cls, state: State, kind: str, argv: list[str]) -> RunContext:
        """The context of the pyinfra run STATE belongs to, created by the first host."""
        found = getattr(state, KEPT_AS, None)
        if found is None:
            found = cls(kind, argv)
            found.connected = {h.name for h in state.activated_hosts}
            setattr(state, KEPT_AS, found)
            send_at_once_on_every_connection(state)
            state.add_callback_handler(_FailurePath(found))
        return found

    def host_left(self, h: Host) -> None:
        """pyinfra disconnected H: once every host of the run has, the run is over."""
        self.connected.discard(h.name)
        if not self.connected:
            ends, self.at_end = self.at_end, {}
            for name, end in ends.items():
                try:
                    end()
                except Exception as exc:  # noqa: BLE001 - the run is over; its outcome stands
                    click.echo(f"    {name} not sent: {type(exc).__name__}: {exc}", err=True)

    def on_failure(self, h: Host, ending: Callable[[str], Any]) -> None:
        """ENDING(what failed) ends host H's part of the run when an operation fails on it."""
        self.endings[h.name] = ending

    def operation_failed(self, h: Host, operation: str) -> None:
        """OPERATION failed on host H: pyinfra skips the host's later operations, so the host
        ends here through the run's failure path (its record, the team told, the lock released
        after the last host), unless it already did (a check of ours that failed went down
        that path itself) or the run does not hold the lock yet (nothing was changed)."""
        ending = self.endings.get(h.name)
        if ending is None or h.name in self.failed_hosts or not self.lock_holder:
            return
        try:
            ending(f"operation '{operation}' failed (its output is above)")
        except Exception as exc:  # noqa: BLE001 - pyinfra calls this inside its executor
            message = f"the failure path itself failed on {h.name}: {type(exc).__name__}: {exc}"
            click.echo(click.style(message, fg="red"), err=True)

    def run(self, h: Host | Remote) -> Run:
        """Host H's record in this run (pyinfra's Host, or the Remote of one)."""
        if h.name not in self.runs:
            data = getattr(h, "data", None)
            env = data.get("deploy_env", "?") if data else "?"
            self.runs[h.name] = Run(host=h.name, env=env, stamp=self.stamp)
        return self.runs[h.name]


class _FailurePath(BaseStateCallback):
    """Tells the run context of every operation that failed on a host, whatever failed: an
    operation of ours or of pyinfra's, a command, a timeout, a lost connection."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    # pyinfra declares its callbacks static and calls them on the handler: this one needs the
    # run context the handler holds
    def host_connect(self, state: State, host: Host) -> None:  # type: ignore[override]
        self.ctx.connected.add(host.name)

    def host_disconnect(self, state: State, host: Host) -> None:  # type: ignore[override]
        self.ctx.host_left(host)

    def operation_host_error(  # type: ignore[override]
        self, state: State, host: Host, op_hash: str, retry_count: int = 0, max_retries: int = 0
    ) -> None:
        if state.get_op_data_for_host(host, op_hash).global_arguments["_ignore_errors"]:
            return  # pyinfra tells of an error it was told to ignore too: the host goes on
        names = ", ".join(state.get_op_meta(op_hash).names) or "an operation"
        self.ctx.operation_failed(host, names)
