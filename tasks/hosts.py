"""The hosts of a run: the app hosts in the order people count them, those `--limit` left out,
those pyinfra could not reach, the migration host."""

from __future__ import annotations

from pyinfra import inventory
from pyinfra.api.host import Host

from tasks.config import Settings
from tasks.inventory import host_order

APP_GROUP = "app_servers"
DB_GROUP = "db_servers"


def app_hosts() -> list[Host]:
    """The app hosts still in this run (a host that failed has left it)."""
    hosts = inventory.get_active_hosts() or list(inventory)
    return sorted((h for h in hosts if APP_GROUP in h.groups), key=lambda h: host_order(h.name))


def inventory_app_hosts() -> list[Host]:
    """Every app host of the inventory, those `--limit` left out included, in host order."""
    return sorted(inventory.get_group(APP_GROUP, None) or [], key=lambda h: host_order(h.name))


def outside_the_run() -> list[Host]:
    """The app hosts of the inventory that `--limit` left out of this run."""
    return [h for h in inventory_app_hosts() if not h.state.is_host_in_limit(h)]


def unreachable_app_hosts() -> list[str]:
    """App hosts of this run (within `--limit`) that pyinfra could not connect to."""
    return [
        h.name for h in inventory_app_hosts() if h.state.is_host_in_limit(h) and not h.connected
    ]


def connected(h: Host, reason: str) -> Host:
    """H, connected now if this run had not (a host `--limit` left out)."""
    if not h.connected:
        h.connect(reason=reason, raise_exceptions=True)
    return h


def migration_host_name(s: Settings) -> str:
    return s.deploy_migration_host or app_hosts()[0].name


def builder_of(s: Settings) -> str | None:
    """Where the release is built: the migration host (the default), `local`, another host
    of the inventory; None with promote_from (nothing is built, a passed tarball ships)."""
    if s.promote_from:
        return None
    return s.build_host or migration_host_name(s)


def builds_here(h: Host, s: Settings) -> bool:
    """Host H runs `go build` in this deploy."""
    builder = builder_of(s)
    return builder is not None and (s.app_build == "each" or h.name == builder)


def database_servers() -> list[Host]:
    """The inventory's hosts in group db_servers (the database server, when it lists one)."""
    return list(inventory.get_group(DB_GROUP, None) or [])
