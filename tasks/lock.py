"""The deploy lock: one deploy or rollback per environment at a time.

It lives in the environment's database (every run of every machine reaches it), in table
deploy_lock, which backups leave out. A second run is refused at once with who holds the
lock, since when and doing what; a lock left by a killed run is released only by
`pyinfra -y <inventory> unlock.py`.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from pyinfra.api import deploy
from pyinfra.operations import python

from tasks import commands
from tasks.runtime import DEPLOYMENT, app_hosts, deployed_by, inventory_arg, run_for, say, sh

TABLE = "deploy_lock"


def holder(s: dict[str, Any]) -> str:
    return f"{deployed_by(s)} pid {os.getpid()} run {DEPLOYMENT.stamp}"


def create_sql() -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {TABLE} (env text PRIMARY KEY, holder text NOT NULL, "
        "since timestamptz NOT NULL DEFAULT now(), command text NOT NULL)"
    )


def acquire_sql(env: str, who: str, command: str) -> str:
    lit = commands.sql_literal
    return (
        f"INSERT INTO {TABLE} (env, holder, command) VALUES ({lit(env)}, {lit(who)}, "
        f"{lit(command)}) ON CONFLICT (env) DO NOTHING RETURNING 'acquired'"
    )


def unlock_command(inventory: str) -> str:
    return f"pyinfra -y {inventory} unlock.py"


def _acquire(state, host, s: dict[str, Any]) -> bool:
    env, who = s["deploy_env"], holder(s)
    command = " ".join(["pyinfra", *sys.argv[1:]])[:500]
    _, out, _ = sh(
        host,
        commands.psql(s, None, None, create_sql(), acquire_sql(env, who, command)),
        what="taking the lock",
    )
    if out.strip() == "acquired":
        DEPLOYMENT.lock_holder = who
        say(host, f"deploy lock for {env} taken")
        return True
    _, out, _ = sh(
        host,
        commands.psql(
            s,
            f"SELECT holder, to_char(since, 'YYYY-MM-DD HH24:MI:SS TZ'), command FROM {TABLE} "
            f"WHERE env = {commands.sql_literal(env)}",
        ),
    )
    held_by, since, running = (out.strip().split("|", 2) + ["?", "?"])[:3]
    DEPLOYMENT.lock_holder = ""
    run_for(host).failure = "lock held"
    say(
        host,
        f"REFUSED: the deploy lock for {env} is held by {held_by} since {since}, "
        f"running `{running}`. If that run was killed, release the lock with: "
        f"{unlock_command(inventory_arg())}",
    )
    return False


def _confirm(state, host, s: dict[str, Any]) -> bool:
    if DEPLOYMENT.lock_holder:
        return True
    say(host, "stopping: this run does not hold the deploy lock (see above)")
    return False


def acquire(s: dict[str, Any], on_this_host: bool) -> None:
    """Take the lock (on one host), then stop every host if it was not taken."""
    if on_this_host:
        python.call(name=f"Take the deploy lock for {s['deploy_env']}", function=_acquire, s=s)
    python.call(name="Ensure this run holds the deploy lock", function=_confirm, s=s)


def release_when_last(host, s: dict[str, Any]) -> None:
    """HOST has finished this run (success or not): release the lock once every app host still
    in the run has finished, so that no deploy starts while one of ours still switches."""
    DEPLOYMENT.finished.add(host.name)
    if {h.name for h in app_hosts()} <= DEPLOYMENT.finished:
        release(host, s)


def _finished(state, host, s: dict[str, Any]) -> bool:
    release_when_last(host, s)
    return True


def release_at_end(s: dict[str, Any]) -> None:
    """The last operation of a deploy: the last app host to get here releases the lock."""
    python.call(name="Release the deploy lock once every app host is done", function=_finished, s=s)


def release(host, s: dict[str, Any]) -> None:
    """Release the lock if this run holds it (called at the end of a run, success or not)."""
    env, held = s["deploy_env"], DEPLOYMENT.lock_holder
    if held:
        sh(
            host,
            commands.psql(
                s,
                f"DELETE FROM {TABLE} WHERE env = {commands.sql_literal(env)} "
                f"AND holder = {commands.sql_literal(held)}",
            ),
            check=False,
        )
        DEPLOYMENT.lock_holder = ""
        say(host, f"deploy lock for {env} released")


def _force_unlock(state, host, s: dict[str, Any]) -> bool:
    env = commands.sql_literal(s["deploy_env"])
    delete = f"DELETE FROM {TABLE} WHERE env = {env} RETURNING holder || ' since ' || since"
    _, out, _ = sh(host, commands.psql(s, None, None, create_sql(), delete), what="unlocking")
    held = out.strip()
    if held:
        say(host, f"released the deploy lock of {s['deploy_env']} held by {held}")
    else:
        say(host, f"the deploy lock of {s['deploy_env']} was not held: nothing to do")
    return True


@deploy("Unlock")
def unlock(s: dict[str, Any]) -> None:
    """Release the environment's lock whoever holds it (after a killed run)."""
    python.call(name=f"Release the deploy lock of {s['deploy_env']}", function=_force_unlock, s=s)
