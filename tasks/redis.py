"""The Redis cache (checklist step 3): the redis-cache container with the checklist's flags,
or an external endpoint; either way it must answer PING."""

from __future__ import annotations

import time

from pyinfra import host
from pyinfra.facts.server import Command
from pyinfra.operations import python

from tasks import operations
from tasks.commands import rediscli, shell
from tasks.config import Settings
from tasks.context import Plan, RunContext
from tasks.operations import deploy
from tasks.outcome import phase_check
from tasks.probes import cache_address, ping
from tasks.remote import DeployError
from tasks.settings import secret
from tasks.transport import say

PING_TIMEOUT = 15


@phase_check("redis")
def _await_pong(ctx: RunContext, host, s: Settings, plan: Plan) -> None:
    deadline = time.monotonic() + PING_TIMEOUT
    answer = ""
    while time.monotonic() < deadline:
        answer = ping(host, s)
        if answer == "PONG":
            say(host, f"Redis ({s.redis_mode}) answers PONG")
            ctx.run(host).facts["redis"] = {"mode": s.redis_mode, "ping": "PONG"}
            return
        time.sleep(0.5)
    raise DeployError(
        f"Redis ({s.redis_mode} mode, {':'.join(map(str, cache_address(s)))}) did not "
        f"answer PING within {PING_TIMEOUT}s: {answer}"
    )


@deploy("Redis cache")
def redis(ctx: RunContext, s: Settings, plan: Plan):
    op = None
    if s.redis_mode == "container":
        auth_conf = None
        password = secret(s, "REDIS_PASSWORD")
        if password:
            auth_conf = shell.paths(s)["redis_conf"]
            operations.secret_file(
                name="Ensure the Redis password file is current (0600)",
                path=auth_conf,
                content=rediscli.requirepass_conf(password),
            )
        name = shell.q(s.redis_container)
        existed = host.get_fact(
            Command, command=f"docker inspect {name} >/dev/null 2>&1 && echo yes || echo no"
        )
        ctx.run(host).facts["redis_container_existed"] = existed == "yes"
        op = operations.redis_container(
            name=f"Ensure container {s.redis_container} is running (maxmemory "
            f"{s.redis_maxmemory}, {s.redis_maxmemory_policy}, no persistence)",
            settings=s,
            auth_conf=auth_conf,
            _ignore_errors=True,  # a container that did not start fails the PING check below
        )
    python.call(name="Ensure Redis answers PING", function=_await_pong, ctx=ctx, s=s, plan=plan)
    return op
