"""A host's settings: the validated variables (group_vars, inventory and --data), with the
overrides a runbook left on the host; the secrets from the environment; who deploys."""

from __future__ import annotations

import getpass
import json
import os
import socket
from dataclasses import replace
from typing import Any

from pyinfra import host
from pyinfra.api.host import Host

from tasks import secrets
from tasks.commands import shell
from tasks.config import Settings, check_or_exit
from tasks.remote import DeployError
from tasks.transport import say, sh

# what a runbook may keep changed on a host until `runbook=reset` (tasks/runbooks.py)
OVERRIDABLE = (
    "redis_enabled",
    "redis_maxmemory",
    "redis_pool_size",
    "redis_min_idle_conns",
    "db_max_open_conns",
    "db_max_idle_conns",
)


def settings() -> Settings:
    """This host's validated settings (group_vars, inventory and --data), or stop listing
    every problem; with the overrides a runbook left on the host applied, and said out loud
    (a deploy never undoes a runbook silently)."""
    base, overrides = settings_and_overrides()
    return replace(base, **overrides)


def settings_and_overrides() -> tuple[Settings, dict[str, Any]]:
    """(the settings without overrides, the runbook overrides on this host), announced."""
    data = {key: value for key, value in host.data.dict().items()}
    base = check_or_exit(data, f"[{host.name}]")
    try:
        found = read_overrides(host, base)
    except DeployError as exc:
        raise SystemExit(f"{exc}\nNothing was changed.") from None
    if found:
        values = ", ".join(f"{k}={v}" for k, v in found["values"].items())
        say(
            host,
            f"runbook override(s) in effect: {values} (runbook {found['runbook']}, "
            f"{found['at']}); `--data runbook=reset` with runbook.py removes them",
        )
    return base, found.get("values", {})


def read_overrides(h: Host, s: Settings) -> dict[str, Any]:
    """The runbook overrides recorded on host H ({} when none): runbook, at, values."""
    path = shell.paths(s)["overrides"]
    _, out, _ = sh(h, f"cat {shell.q(path)} 2>/dev/null || true", timeout=30)
    if not out.strip():
        return {}
    try:
        found = json.loads(out)
    except ValueError:
        raise DeployError(f"{path} on {h.name} is not JSON: fix or remove it") from None
    found["values"] = {k: v for k, v in found.get("values", {}).items() if k in OVERRIDABLE}
    return found if found["values"] else {}


def secret(s: Settings, name: str) -> str:
    """The secret NAME from where S keeps secrets (secrets_from); "" when not given."""
    values, problems = secrets.load(
        s.secrets_from, s.secrets_file, s.secrets_command, s.deploy_env, os.environ
    )
    if problems:  # checked before any host was touched: the file changed since
        raise DeployError("; ".join(problems))
    return values.get(name, "")


def deployed_by(s: Settings) -> str:
    return s.report_deployed_by or f"{getpass.getuser()}@{socket.gethostname()}"
