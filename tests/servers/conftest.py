"""The server-state suite runs against any inventory the deploy uses:

    MDD_INVENTORY=inventories/staging.py .venv/bin/pytest tests/servers

(MDD_DATA names variables the deploy was given with --data, e.g. MDD_DATA=release_method=docker.)

Hosts and settings come from the inventory file itself (group_vars included), so the suite
checks what the deploy was asked to ensure, on the lab or on the team's servers alike.
"""

from __future__ import annotations

import os
import runpy

import pytest
import testinfra

from tasks.config import validate


def _inventory() -> list[tuple[str, dict]]:
    path = os.environ.get("MDD_INVENTORY")
    if not path:
        pytest.skip(
            "MDD_INVENTORY is not set: name the inventory to check, e.g. "
            "MDD_INVENTORY=inventories/lab.py",
            allow_module_level=True,
        )
    return runpy.run_path(path)["app_servers"]


def _host(name: str, data: dict):
    target = data.get("ssh_hostname", name)
    user = data.get("ssh_user")
    spec = f"ssh://{user + '@' if user else ''}{target}"
    extra = []
    if data.get("ssh_known_hosts_file"):
        extra += [
            "-o",
            f"UserKnownHostsFile={data['ssh_known_hosts_file']}",
            "-o",
            "StrictHostKeyChecking=yes",
        ]
    return testinfra.get_host(
        spec, ssh_identity_file=data.get("ssh_key"), ssh_extra_args=" ".join(extra) or None
    )


SERVERS = _inventory()
# The variables the deploy was run with beyond the inventory's, as pyinfra's --data takes
# them: MDD_DATA="release_method=docker,release_strategy=restart"
DATA = dict(item.split("=", 1) for item in os.environ.get("MDD_DATA", "").split(",") if "=" in item)


def pytest_generate_tests(metafunc):
    if "server" in metafunc.fixturenames:
        metafunc.parametrize("server", [name for name, _ in SERVERS], indirect=True)


@pytest.fixture(scope="module")
def server(request):
    name, data = next((n, d) for n, d in SERVERS if n == request.param)
    settings, _problems = validate({**data, **DATA}, environ={"DB_PASSWORD": "not-needed-here"})
    return _host(name, data), settings
