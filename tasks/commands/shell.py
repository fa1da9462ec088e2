"""Quoting, and where things live on an app host."""

from __future__ import annotations

import shlex

from tasks.config import Settings

q = shlex.quote
# What a heavy step runs with on a host that may serve: the lowest CPU and I/O priority (the
# build, the packing, pg_dump's compression), so the serving release is served first.
LOW_PRIORITY = "nice -n 19 ionice -c 3"


def missing_tools(tools: list[str]) -> str:
    """Prints, one a line, those of TOOLS that are not on the PATH (nothing when all are)."""
    names = " ".join(q(t) for t in tools)
    return f'for t in {names}; do command -v "$t" >/dev/null || echo "$t"; done'


def read_link(path: str) -> str:
    """Print where the link PATH points (nothing when there is no such link)."""
    return f"readlink {q(path)} || true"


def paths(s: Settings) -> dict[str, str]:
    """Where things live on an app host."""
    app, state = s.app_dir, s.deploy_state_dir
    return {
        "releases": f"{app}/releases",
        "current": f"{app}/current",
        "env_file": f"{app}/.env",
        "repo_cache": f"{app}/repo.git",
        "state": state,
        "pgpass": f"{state}/pgpass",
        "redis_auth": f"{state}/redis_password",
        "redis_conf": f"{state}/redis-auth.conf",  # the container's requirepass
        "manifests": f"{state}/manifests",
        "records": f"{state}/deployments.jsonl",
        "overrides": f"{state}/runbook-overrides.json",
        # what the running deploy, rollback or runbook replaced (tasks/commands/replaced.py)
        "replaced": f"{state}/replaced",
        "unit": f"/etc/systemd/system/{s.app_service}.service",
    }
