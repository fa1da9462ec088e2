"""What every part shares: the settings of a host, its app hosts, remote commands, errors."""

from __future__ import annotations

import getpass
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from io import StringIO
from typing import Any

import click
import gevent
from gevent.lock import BoundedSemaphore
from paramiko.ssh_exception import ChannelException, SSHException
from pyinfra import host, inventory
from pyinfra.api.host import Host
from pyinfra.api.state import BaseStateCallback, State

from tasks.commands import haproxy, http, shell
from tasks.config import Settings, check_or_exit
from tasks.inventory import host_order


class DeployError(Exception):
    """A phase failed; the message is written for the operator."""


APP_GROUP = "app_servers"


# what a runbook may keep changed on a host until `runbook=reset` (tasks/runbooks.py)
OVERRIDABLE = (
    "redis_enabled",
    "redis_maxmemory",
    "redis_pool_size",
    "redis_min_idle_conns",
    "db_max_open_conns",
    "db_max_idle_conns",
)


def settings() -> dict[str, Any]:
    """This host's validated settings (group_vars, inventory and --data), or stop listing
    every problem; with the overrides a runbook left on the host applied, and said out loud
    (a deploy never undoes a runbook silently)."""
    base, overrides = settings_and_overrides()
    return replace(base, **overrides)


def settings_and_overrides() -> tuple[dict[str, Any], dict[str, Any]]:
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


def deployed_by(s: Settings) -> str:
    return s.report_deployed_by or f"{getpass.getuser()}@{socket.gethostname()}"


def now_iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts or time.time(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def say(h: Host, message: str) -> None:
    """One progress line, as pyinfra prints its own: `[host] message`."""
    click.echo(f"    [{h.name}] {message}", err=True)


# Commands open one SSH channel each on the host's one connection, and sshd refuses more than
# MaxSessions (10 by default) at once: the balancer serves every host of a batch of eight. A
# refused channel never ran its command: it is asked again, CHANNEL_TRIES times at most.
CHANNELS_PER_HOST = 8
CHANNEL_TRIES = 40  # 10 s
CHANNELS_KEPT_AS = "monitoring_dashboard_channels"  # the attribute of pyinfra's Host


def _channel_slots(h: Host) -> BoundedSemaphore:
    """H's share of its connection's channels, kept on pyinfra's Host (one per host and run)."""
    slots = getattr(h, CHANNELS_KEPT_AS, None)
    if slots is None:
        slots = BoundedSemaphore(CHANNELS_PER_HOST)
        setattr(h, CHANNELS_KEPT_AS, slots)
    return slots


def send_at_once(h: Host) -> bool:
    """Make H's SSH connection send each packet at once (TCP_NODELAY); whether it could.

    paramiko leaves Nagle's algorithm on. A command's request then waits for the host's
    delayed ACK before it leaves, about 40 ms on Linux: 47 ms a command where 3 ms is the
    work (measured on the lab). OpenSSH's own client turns it off the same way."""
    client = getattr(h.connector, "client", None)  # pyinfra's SSH connector: a paramiko client
    transport = client.get_transport() if client is not None else None
    sock = getattr(transport, "sock", None)
    if not isinstance(sock, socket.socket):
        return False
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return True


class _SendAtOnce(BaseStateCallback):
    @staticmethod
    def host_connect(state: State, host: Host) -> None:
        send_at_once(host)


def send_at_once_on_every_connection(state: State) -> None:
    """Every SSH connection of the run STATE, opened already or later, sends at once."""
    for h in state.inventory:
        if h.connected:
            send_at_once(h)
    state.add_callback_handler(_SendAtOnce())


def _run_once_a_channel_opens(h: Host, command: str, timeout: int) -> tuple[bool, Any]:
    for _ in range(CHANNEL_TRIES - 1):
        try:
            return h.run_shell_command(command=command, _timeout=timeout, _sudo=False)
        except SSHException as exc:
            # paramiko says ChannelException, or this when another greenlet took the reason
            if not isinstance(exc, ChannelException) and str(exc) != "Unable to open channel.":
                raise
            gevent.sleep(0.25)  # sshd still counts sessions that are closing
    return h.run_shell_command(command=command, _timeout=timeout, _sudo=False)  # its error


def sh(
    h: Host, command: str, timeout: int = 60, what: str | None = None, check: bool = True
) -> tuple[bool, str, str]:
    """Run COMMAND on host H (as root); raise DeployError with WHAT when it fails. At most
    CHANNELS_PER_HOST commands run on a host at once; the others wait their turn.

    TIMEOUT bounds the whole call: pyinfra's own timeout covers reading the output, not
    opening the SSH channel, which waits forever on a connection gone silent."""
    try:
        with (
            _channel_slots(h),
            gevent.Timeout(timeout + 5, TimeoutError),
        ):
            ok, output = _run_once_a_channel_opens(h, command, timeout)
    except (TimeoutError, OSError, SSHException) as exc:  # socket.timeout is an OSError
        problem = "timed out" if isinstance(exc, TimeoutError) else f"lost its connection ({exc})"
        raise DeployError(
            f"{what or 'a command'} on {h.name} {problem} (limit {timeout}s)"
        ) from None
    stdout, stderr = output.stdout, output.stderr
    if check and not ok:
        detail = (stderr or stdout).strip()[-2000:]
        raise DeployError(f"{what or 'a command'} failed on {h.name}: {detail}")
    return ok, stdout, stderr


def at_once(*reads: Callable[[], Any]) -> list[Any]:
    """Call READS (independent read-only checks, each of its own remote commands) concurrently:
    their results in order. The first to raise raises here, once all have ended."""

    def outcome(read: Callable[[], Any]) -> tuple[bool, Any]:
        try:
            return True, read()
        except Exception as exc:  # raised below, in the caller's greenlet (not printed by gevent)
            return False, exc

    running = [gevent.spawn(outcome, read) for read in reads]
    gevent.joinall(running)
    results = []
    for ok, value in (g.value for g in running):
        if not ok:
            raise value
        results.append(value)
    return results


def put_text(h: Host, text: str, dest: str, mode: str = "600") -> None:
    """Upload TEXT to DEST with MODE, created with that mode (a secret is never readable
    by others, not even for a moment)."""
    tmp = f"{dest}.upload"
    sh(h, f"umask 077 && rm -f {shell.q(tmp)} && touch {shell.q(tmp)}", what="upload")
    if not h.put_file(StringIO(text), tmp):
        raise DeployError(f"could not upload {dest} to {h.name}")
    sh(
        h,
        f"chmod {mode} {shell.q(tmp)} && mv -f {shell.q(tmp)} {shell.q(dest)}",
        what=f"install {dest}",
    )


def append_record(h: Host, s: Settings, record: dict[str, Any]) -> None:
    """Append one JSON line to the host's deployment records (root only, mode 0600). The line
    goes through a file in the state folder (0700: no one else can reach it, so it needs no
    mode of its own while it is uploaded)."""
    records = shell.paths(s)["records"]
    tmp = f"{shell.paths(s)['state']}/record.tmp"
    if not h.put_file(StringIO(json.dumps(record, default=str) + "\n"), tmp):
        raise DeployError(f"could not upload the deployment record to {h.name}")
    sh(
        h,
        f"umask 077 && cat {shell.q(tmp)} >> {shell.q(records)} && rm -f {shell.q(tmp)} "
        f"&& chmod 600 {shell.q(records)}",
        what="appending the deployment record",
    )


HEALTHY = '"authenticated":true'


def health_url(s: Settings) -> str:
    return f"http://127.0.0.1:{s.app_port}{s.app_health_path}"


def wait_healthy(h: Host, s: Settings) -> str:
    """The health answer through app_port, waited for up to app_health_timeout."""
    return sh(
        h,
        http.wait_healthy(health_url(s), HEALTHY, s.app_health_timeout),
        timeout=s.app_health_timeout + 15,
        what="the health check",
    )[1].strip()


def haproxy_wait(
    h: Host, socket: str, backend: str, server: str, until: str, timeout: float
) -> str:
    """Wait on host H until HAProxy (admin SOCKET) sees BACKEND/SERVER 'up' or 'drained'.
    'drained' gives up quietly after TIMEOUT (the switch drains what is left); 'up' fails.
    Returns the last reading (status, sessions, queued)."""
    ok, out, _ = sh(
        h,
        haproxy.haproxy_wait(socket, backend, server, until, timeout),
        timeout=int(timeout) + 15,
        check=False,
    )
    if not ok and until == "up":
        raise DeployError(
            f"{backend}/{server} on {h.name} was not up within {timeout:g}s (status, "
            f"sessions, queued: {out.strip() or 'no answer'})"
        )
    return out.strip()


def timed_get(h: Host, url: str) -> tuple[int, float, str]:
    """GET URL on host H: status, seconds, body."""
    _, out, _ = sh(h, http.http_probe(url), check=False)
    first, _, body = out.partition("\n")
    code, seconds = first.split() if len(first.split()) == 2 else ("0", "0")
    return int(code), float(seconds), body


def secret(name: str) -> str:
    return os.environ.get(name, "")
