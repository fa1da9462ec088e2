"""The seam between the orchestration and the hosts: what a phase asks of one host.

`Remote` is the protocol: run a command (bounded, named for the operator), put a text file,
say a line. `tasks/transport.py` implements it over pyinfra's SSH connection; unit tests
drive the same code with an in-memory fake that records commands and answers from a script
(tests/unit/fake_remote.py). The helpers below (timed GET, health wait, HAProxy waits) are
built on `run` alone, so they work on either.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import gevent

from tasks.commands import haproxy, http
from tasks.config import Settings


class DeployError(Exception):
    """A phase failed; the message is written for the operator."""


class Remote(Protocol):
    """One host, as the orchestration sees it."""

    name: str

    def run(
        self, command: str, timeout: int = 60, what: str | None = None, check: bool = True
    ) -> tuple[bool, str, str]:
        """Run COMMAND as root within TIMEOUT seconds: (ok, stdout, stderr). Raises
        DeployError naming WHAT when it cannot run, or (CHECK) when it fails."""
        ...

    def put_text(self, text: str, dest: str, mode: str = "600") -> None:
        """DEST holds TEXT with MODE, created with that mode (never readable by others)."""
        ...

    def say(self, message: str) -> None:
        """One progress line for the operator: `[host] message`."""
        ...


HEALTHY = '"authenticated":true'


def health_url(s: Settings) -> str:
    return f"http://127.0.0.1:{s.app_port}{s.app_health_path}"


def wait_healthy(r: Remote, s: Settings) -> str:
    """The health answer through app_port, waited for up to app_health_timeout."""
    return r.run(
        http.wait_healthy(health_url(s), HEALTHY, s.app_health_timeout),
        timeout=s.app_health_timeout + 15,
        what="the health check",
    )[1].strip()


def haproxy_wait(
    r: Remote, socket: str, backend: str, server: str, until: str, timeout: float
) -> str:
    """Wait on R until HAProxy (admin SOCKET) sees BACKEND/SERVER 'up' or 'drained'.
    'drained' gives up quietly after TIMEOUT (the switch drains what is left); 'up' fails.
    Returns the last reading (status, sessions, queued)."""
    ok, out, _ = r.run(
        haproxy.haproxy_wait(socket, backend, server, until, timeout),
        timeout=int(timeout) + 15,
        check=False,
    )
    if not ok and until == "up":
        raise DeployError(
            f"{backend}/{server} on {r.name} was not up within {timeout:g}s (status, "
            f"sessions, queued: {out.strip() or 'no answer'})"
        )
    return out.strip()


def timed_get(r: Remote, url: str) -> tuple[int, float, str]:
    """GET URL on R: status, seconds, body."""
    _, out, _ = r.run(http.http_probe(url), check=False)
    first, _, body = out.partition("\n")
    code, seconds = first.split() if len(first.split()) == 2 else ("0", "0")
    return int(code), float(seconds), body


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
