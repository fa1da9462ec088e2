"""The pyinfra side of the seam (`tasks/remote.py`): a host's commands over its SSH connection,
at most a few at once, each bounded, each packet sent at once."""

from __future__ import annotations

import socket
import time
from io import StringIO
from typing import Any, NamedTuple

import click
import gevent
from gevent.lock import BoundedSemaphore
from paramiko.ssh_exception import ChannelException, SSHException
from pyinfra.api.host import Host
from pyinfra.api.state import BaseStateCallback, State
from pyinfra.context import ContextObject

from tasks.commands import shell
from tasks.remote import DeployError, Remote

# Commands open one SSH channel each on the host's one connection, and sshd refuses more than
# MaxSessions (10 by default) at once: the balancer serves every host of a batch of eight. A
# refused channel never ran its command: it is asked again, CHANNEL_TRIES times at most.
CHANNELS_PER_HOST = 8
CHANNEL_TRIES = 40  # 10 s
KEPT_AS = "monitoring_dashboard_remote"  # the attribute of pyinfra's Host that holds its Remote


class Command(NamedTuple):
    """One remote command as the run's trace shows it: what it was for (never the command
    itself, which may name paths a team considers private), when, how long, whether it
    succeeded."""

    what: str
    started: float
    seconds: float
    ok: bool


class PyinfraRemote:
    """A Remote (tasks/remote.py) over pyinfra's Host H: one per host and run, kept on it."""

    def __init__(self, h: Host) -> None:
        self.host = h
        self.name = h.name
        self.channels = BoundedSemaphore(CHANNELS_PER_HOST)
        self.commands: list[Command] = []  # for the run's trace (tasks/tracing.py)

    def _run_once_a_channel_opens(self, command: str, timeout: int) -> tuple[bool, Any]:
        for _ in range(CHANNEL_TRIES - 1):
            try:
                return self.host.run_shell_command(command=command, _timeout=timeout, _sudo=False)
            except SSHException as exc:
                # paramiko says ChannelException, or this when another greenlet took the reason
                if not isinstance(exc, ChannelException) and str(exc) != "Unable to open channel.":
                    raise
                gevent.sleep(0.25)  # sshd still counts sessions that are closing
        return self.host.run_shell_command(command=command, _timeout=timeout, _sudo=False)

    def run(
        self, command: str, timeout: int = 60, what: str | None = None, check: bool = True
    ) -> tuple[bool, str, str]:
        """At most CHANNELS_PER_HOST commands run on a host at once; the others wait their
        turn. TIMEOUT bounds the whole call: pyinfra's own timeout covers reading the output,
        not opening the SSH channel, which waits forever on a connection gone silent."""
        started, ok = time.time(), False
        try:
            with self.channels, gevent.Timeout(timeout + 5, TimeoutError):
                ok, output = self._run_once_a_channel_opens(command, timeout)
        except (TimeoutError, OSError, SSHException) as exc:  # socket.timeout is an OSError
            problem = (
                "timed out" if isinstance(exc, TimeoutError) else f"lost its connection ({exc})"
            )
            raise DeployError(
                f"{what or 'a command'} on {self.name} {problem} (limit {timeout}s)"
            ) from None
        finally:
            self.commands.append(Command(what or "a command", started, time.time() - started, ok))
        stdout, stderr = output.stdout, output.stderr
        if check and not ok:
            detail = (stderr or stdout).strip()[-2000:]
            raise DeployError(f"{what or 'a command'} failed on {self.name}: {detail}")
        return ok, stdout, stderr

    def put_text(self, text: str, dest: str, mode: str = "600") -> None:
        tmp = f"{dest}.upload"
        q = shell.q
        self.run(f"umask 077 && rm -f {q(tmp)} && touch {q(tmp)}", what="upload")
        if not self.host.put_file(StringIO(text), tmp):
            raise DeployError(f"could not upload {dest} to {self.name}")
        self.run(f"chmod {mode} {q(tmp)} && mv -f {q(tmp)} {q(dest)}", what=f"install {dest}")

    def say(self, message: str) -> None:
        """One progress line, as pyinfra prints its own: `[host] message`."""
        click.echo(f"    [{self.name}] {message}", err=True)


def commands_run(h: Host) -> list[Command]:
    """The commands run on pyinfra's Host H through its Remote in this run (none: no Remote)."""
    found = getattr(h, KEPT_AS, None)
    return found.commands if isinstance(found, PyinfraRemote) else []


def remote(h: Host | Remote) -> Remote:
    """Host H as a Remote (the same one for the whole run); H itself when it is one already
    (the in-memory fake of the unit tests). pyinfra's `host` is a proxy to the host whose
    deploy file runs now; the Remote holds the host itself, which other greenlets (the
    callbacks of other hosts, `at_once`) reach as well."""
    if isinstance(h, ContextObject):
        h = h._get_module()
    if not isinstance(h, Host):
        return h
    found = getattr(h, KEPT_AS, None)
    if found is None:
        found = PyinfraRemote(h)
        setattr(h, KEPT_AS, found)
    return found


def sh(
    h: Host | Remote, command: str, timeout: int = 60, what: str | None = None, check: bool = True
) -> tuple[bool, str, str]:
    """remote(h).run(...): COMMAND on H, pyinfra's Host or a Remote."""
    return remote(h).run(command, timeout, what, check)


def say(h: Host | Remote, message: str) -> None:
    """remote(h).say(...): one progress line about H."""
    remote(h).say(message)


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
