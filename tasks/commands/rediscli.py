"""redis-server and redis-cli: the redis-cache container as the checklist runs it, and the
cli against the cache (the password read from a file at run time)."""

from __future__ import annotations

import re
import shlex

from tasks.commands.shell import paths, q
from tasks.config import Settings


def redis_server_args(s: Settings, with_password_file: bool) -> list[str]:
    """The checklist's redis-server flags (a password comes from a mounted config file)."""
    args = ["redis-server"]
    if with_password_file:
        args.append(REDIS_AUTH_IN_CONTAINER)
    args += [
        "--maxmemory",
        s.redis_maxmemory,
        "--maxmemory-policy",
        s.redis_maxmemory_policy,
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    return args


REDIS_AUTH_IN_CONTAINER = "/usr/local/etc/redis/auth.conf"


def redis_run(s: Settings, spec_hash: str, auth_conf: str | None) -> str:
    """Create the redis-cache container (labelled with the hash of its spec), copy the password
    file in as the user the image runs redis-server as (`redis_uid`, mode 0400: an image that
    drops root, like the official one, can read it; nothing else can), then start it."""
    name = s.redis_container
    create = [
        "docker",
        "create",
        "--name",
        name,
        "--restart",
        "unless-stopped",
        "-p",
        f"{s.redis_bind}:{s.redis_port}:6379",
        "--label",
        f"monitoring-dashboard.spec={spec_hash}",
        s.redis_image,
        *redis_server_args(s, auth_conf is not None),
    ]
    steps = [shlex.join(create) + " >/dev/null"]
    if auth_conf:
        folder, file = auth_conf.rsplit("/", 1)
        uid = int(s.redis_uid)
        rename = f"s|^{re.escape(file)}$|{REDIS_AUTH_IN_CONTAINER.lstrip('/')}|"
        steps.append(
            f"tar -C {q(folder)} --owner={uid} --group={uid} --numeric-owner --mode=0400 "
            f"--transform {q(rename)} -cf - {q(file)} | docker cp -a - {q(name + ':/')}"
        )
    steps.append(f"docker start {q(name)} >/dev/null")
    return " && ".join(steps)


def redis_cli(s: Settings, *args: str, host: str | None = None, port: int | None = None) -> str:
    """redis-cli against the cache; the password (if any) is read from the deploy's file."""
    auth = paths(s)["redis_auth"]
    tls = " --tls" if s.redis_mode == "external" and s.redis_tls else ""
    target = f"-h {q(host or s.redis_host)} -p {int(port or s.redis_port)}"
    return (
        f'a="$(cat {q(auth)} 2>/dev/null)"; [ -z "$a" ] || export REDISCLI_AUTH="$a"; '
        f"redis-cli --no-auth-warning{tls} {target} " + " ".join(q(a) for a in args)
    )


def requirepass_conf(password: str) -> str:
    """The redis-cache container's password file (an included redis.conf): what it reads when
    it starts."""
    return f"requirepass {password}\n"
