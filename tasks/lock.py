"""The deploy lock: one deploy or rollback per environment at a time.

It lives in the environment's database (every run of every machine reaches it), in table
deploy_lock, which backups leave out. The run holding it refreshes its heartbeat every
HEARTBEAT seconds, so a run that meets the lock can tell a live holder from a killed one
(no heartbeat for STALE seconds). A second run is refused at once with who holds the lock,
since when, doing what and whether it is alive; with `lock_wait=SECONDS` it waits for a live
holder to finish instead (queued CI pipelines). A stale lock is broken only explicitly, by
`pyinfra -y <inventory> unlock.py`, which records who broke whose lock.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace

import gevent
from pyinfra.operations import python

from tasks.commands import deploy_lock, postgres, replaced, shell
from tasks.config import Settings
from tasks.context import RunContext
from tasks.hosts import app_hosts
from tasks.operations import deploy
from tasks.records import append_record, now_iso
from tasks.remote import DeployError
from tasks.settings import deployed_by
from tasks.transport import say, sh

HEARTBEAT = 5  # seconds between two refreshes by the holder
STALE = 60  # seconds without a refresh after which the holder is taken for dead


def holder(ctx: RunContext, s: Settings) -> str:
    return f"{deployed_by(s)} pid {os.getpid()} run {ctx.stamp}"


def describe(held_by: str, since: str, command: str, silent: int) -> str:
    """The lock as the operator reads it: who, since when, doing what, alive or stale."""
    state = (
        f"alive (heartbeat {silent}s ago)"
        if silent < STALE
        else f"STALE: no heartbeat for {silent}s, its run was most likely killed"
    )
    return f"held by {held_by} since {since}, running `{command}`; {state}"


def unlock_command(inventory: str) -> str:
    return f"pyinfra -y {inventory} unlock.py"


def _read_holder(host, s: Settings) -> tuple[str, str, str, int] | None:
    _, out, _ = sh(host, postgres.psql(s, deploy_lock.holder_sql(s.deploy_env)))
    if not out.strip():
        return None
    silent, held_by, since, command = out.strip().split("|", 3)
    return held_by, since, command, int(silent)


def _as_now(ctx: RunContext, s: Settings) -> Settings:
    """S as this run logs in now: a password rotation switches the login role mid-run."""
    return replace(s, db_login_role=ctx.db_login_role) if ctx.db_login_role else s


def _beat(ctx: RunContext, host, s: Settings, who: str) -> None:
    """Refresh the heartbeat while this run holds the lock (a greenlet; dies with the run)."""
    while ctx.lock_holder == who:
        gevent.sleep(HEARTBEAT)
        if ctx.lock_holder == who:
            beat = postgres.psql(_as_now(ctx, s), deploy_lock.heartbeat_sql(s.deploy_env, who))
            try:
                sh(host, beat, timeout=20)
            except DeployError as exc:  # the next beat tries again; a stale lock only informs
                say(host, f"lock heartbeat missed: {exc}")


def _acquire(state, host, ctx: RunContext, s: Settings) -> bool:
    env, who, command = s.deploy_env, holder(ctx, s), ctx.command
    deadline = time.monotonic() + s.lock_wait
    waited = False
    while True:
        _, out, _ = sh(
            host,
            postgres.psql(
                s, None, None, *deploy_lock.create_sql(), deploy_lock.acquire_sql(env, who, command)
            ),
            what="taking the lock",
        )
        if out.strip() == "acquired":
            ctx.lock_holder = who
            gevent.spawn(_beat, ctx, host, s, who)
            say(host, f"deploy lock for {env} taken" + (" after waiting" if waited else ""))
            return True
        held = _read_holder(host, s)
        if held is None:  # released between the two statements
            continue
        alive = held[3] < STALE
        if alive and time.monotonic() < deadline:
            if not waited:
                say(host, f"waiting up to {s.lock_wait}s: the deploy lock is {describe(*held)}")
                waited = True
            time.sleep(min(5, max(0.5, deadline - time.monotonic())))
            continue
        break
    ctx.lock_holder = ""
    ctx.run(host).failure = "lock held"
    advice = (
        f"If that run is gone, break the lock with: {unlock_command(ctx.inventory)}"
        if not alive
        else "Wait for it to finish"
        + (f" (waited {s.lock_wait}s)" if s.lock_wait else "")
        + ", or queue with --data lock_wait=SECONDS"
    )
    say(host, f"REFUSED: the deploy lock for {env} is {describe(*held)}. {advice}")
    return False


def _confirm(state, host, ctx: RunContext, s: Settings) -> bool:
    if not ctx.lock_holder:
        say(host, "stopping: this run does not hold the deploy lock (see above)")
        return False
    # the copies a killed run left are not this run's: a failure puts back what this run found
    sh(host, replaced.forget_previous(shell.paths(s)["replaced"]), what="starting the run")
    return True


def acquire(ctx: RunContext, s: Settings, on_this_host: bool) -> None:
    """Take the lock (on one host), then stop every host if it was not taken."""
    if on_this_host:
        python.call(
            name=f"Take the deploy lock for {s.deploy_env}", function=_acquire, ctx=ctx, s=s
        )
    python.call(
        name="Ensure this run holds the deploy lock (and keeps no earlier run's replaced files)",
        function=_confirm,
        ctx=ctx,
        s=s,
    )


def release_when_last(ctx: RunContext, host, s: Settings) -> None:
    """HOST has finished this run (success or not): release the lock once every app host still
    in the run has finished, so that no run starts while one of ours still switches."""
    ctx.finished.add(host.name)
    if {h.name for h in app_hosts()} <= ctx.finished:
        release(ctx, host, s)


def release(ctx: RunContext, host, s: Settings) -> None:
    """Release the lock if this run holds it."""
    env, held = s.deploy_env, ctx.lock_holder
    if held:
        ok, _, err = sh(
            host,
            postgres.psql(_as_now(ctx, s), deploy_lock.release_sql(env, held)),
            check=False,
        )
        ctx.lock_holder = ""
        if ok:
            say(host, f"deploy lock for {env} released")
        else:
            say(
                host,
                f"the deploy lock for {env} could not be released ({err.strip()[-200:]}): it "
                "goes stale in a minute; `unlock.py` breaks it now",
            )


def _force_unlock(state, host, s: Settings) -> bool:
    sh(host, postgres.psql(s, None, None, *deploy_lock.create_sql()), what="unlocking")
    held = _read_holder(host, s)
    if held is None:
        say(host, f"the deploy lock of {s.deploy_env} was not held: nothing to do")
        return True
    sh(
        host,
        postgres.psql(s, deploy_lock.release_sql(s.deploy_env, held[0])),
        what="unlocking",
    )
    append_record(
        host,
        s,
        {
            "status": "lock broken",
            "host": host.name,
            "completed": now_iso(),
            "by": deployed_by(s),
            "holder": held[0],
            "since": held[1],
            "command": held[2],
            "heartbeat_seconds_ago": held[3],
        },
    )
    say(host, f"released the deploy lock of {s.deploy_env} {describe(*held)}")
    return True


@deploy("Unlock")
def unlock(s: Settings) -> None:
    """Release the environment's lock whoever holds it (after a killed run)."""
    python.call(name=f"Release the deploy lock of {s.deploy_env}", function=_force_unlock, s=s)
