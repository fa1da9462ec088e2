"""The lab, shared by every integration test: brought up once per session (idempotent)."""

from __future__ import annotations

import os
import sys

import pytest
import testinfra

from lab import core

if os.geteuid() != 0:
    pytest.skip(
        "the lab needs root (network namespaces, systemd-nspawn): run as root",
        allow_module_level=True,
    )


def _echo(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@pytest.fixture(scope="session")
def lab() -> dict:
    """`lab up` for both topologies; the lab stays up for the tests after this one."""
    core.up("staging", _echo)
    core.up("production", _echo, app_hosts=core.DEFAULT_APP_HOSTS)  # whatever a bench left
    return core.status()


def lab_host(status: dict, env: str, name: str):
    """A testinfra host over real SSH, through the lab's ssh_config (strict host keys)."""
    entry = next(h for h in status["hosts"] if h["env"] == env and h["name"] == name)
    return testinfra.get_host(f"ssh://{entry['ssh_alias']}", ssh_config=entry["ssh_config"])


@pytest.fixture(scope="session")
def hosts(lab):
    return {(h["env"], h["name"]): lab_host(lab, h["env"], h["name"]) for h in lab["hosts"]}
