"""The lab's hosts and address plan: pure data, no side effects."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

SUBNET = ipaddress.ip_network("10.231.7.0/24")
BRIDGE = "mddlab0"
BRIDGE_ADDRESS = SUBNET.network_address + 1
ENVS = ("staging", "production")
# First host address of each environment; hosts follow in the order of their layout.
ENV_BASE = {"staging": 10, "production": 40}
ENV_SHORT = {"staging": "s", "production": "p"}

LAYOUT: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "staging": [
        ("app1", ("app_servers",)),
        ("db1", ("db_servers",)),
        ("repo1", ("backup_servers",)),
    ],
    "production": [
        ("app1", ("app_servers",)),
        ("app2", ("app_servers",)),
        ("app3", ("app_servers",)),
        ("db1", ("db_servers",)),
        ("cache1", ("cache_servers",)),
        ("lb1", ("lb_servers",)),
        *[(f"app{n}", ("app_servers",)) for n in range(4, 33)],
        ("repo1", ("backup_servers",)),
        ("mon1", ("monitoring_servers",)),
    ],
}
# Production's app hosts: app1..appN (`lab up production --app-hosts N`).
DEFAULT_APP_HOSTS = 3
MAX_APP_HOSTS = 32


@dataclass(frozen=True)
class LabHost:
    name: str
    env: str
    groups: tuple[str, ...]
    address: str

    @property
    def machine(self) -> str:
        """The systemd-nspawn machine name: unique across environments."""
        return f"mdd-{ENV_SHORT[self.env]}-{self.name}"

    @property
    def netns(self) -> str:
        return self.machine

    @property
    def veth(self) -> str:
        """Host-side veth name (at most 15 characters, as the kernel requires)."""
        return f"mdd{ENV_SHORT[self.env]}-{self.name}"[:15]

    @property
    def is_app(self) -> bool:
        return "app_servers" in self.groups


def topology(env: str, app_hosts: int = DEFAULT_APP_HOSTS) -> list[LabHost]:
    """The hosts of one lab environment, with their addresses. Production has APP_HOSTS app
    hosts (app1..appN); every host keeps its address whatever N is."""
    if env not in LAYOUT:
        raise ValueError(f"unknown lab environment {env!r}; choose one of {', '.join(ENVS)}")
    if not 1 <= app_hosts <= MAX_APP_HOSTS:
        raise ValueError(f"app hosts must be 1 to {MAX_APP_HOSTS}, got {app_hosts}")
    base = ENV_BASE[env]
    hosts = []
    apps = 0
    for index, (name, groups) in enumerate(LAYOUT[env]):
        if "app_servers" in groups:
            apps += 1
            if apps > app_hosts:
                continue
        address = str(SUBNET.network_address + base + index + 1)
        hosts.append(LabHost(name=name, env=env, groups=groups, address=address))
    return hosts
