"""The deploy watches its own load: before each heavy step on what serves (the backup and its
checksum of metrics, each index build and each transaction of a migration, each backfill
batch), it waits while the serving
release's p99 is over `deploy_guard_p99_ms`, at most `deploy_guard_max_wait`, then goes on
or stops (`deploy_guard_on_timeout`), and says how long it waited.

The latencies come from the migration host's local proxy (the requests it served in the
last `deploy_guard_window`), or, with no proxy (release_strategy restart), from a few probes
of the service. A step that cannot be paused runs at the lowest CPU and I/O priority
(commands/shell.py's LOW_PRIORITY): the build, the packing, pg_dump.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pyinfra.api.host import Host

from tasks import slots
from tasks.commands import guard
from tasks.config import Settings, seconds
from tasks.context import Run
from tasks.method import Method
from tasks.remote import DeployError
from tasks.strategy import strategy_for
from tasks.transport import say, sh

MIN_REQUESTS = 20  # fewer in the window: too little load to judge, or to protect
PROBES = 5  # without a proxy: GETs of the history endpoint, the slowest judged
PROBE_TIMEOUT = 2.0
LINE = re.compile(r"guard: (ok|over) p99=(\S+) requests=(\d+) waited=(\d+) before (.+)")


def sample(s: Settings, method: Method) -> tuple[str, int] | None:
    """The command that prints the serving release's recent latencies on the migration host,
    and how many it takes to judge them (None: the guard is off, or the service runs in a
    cluster this host cannot see)."""
    if not s.deploy_guard_p99_ms or not method.on_hosts:
        return None
    if strategy_for(method).logs_requests:
        return slots.latencies(s, seconds(s.deploy_guard_window)), MIN_REQUESTS
    url = f"http://127.0.0.1:{s.app_port}{s.verify_history_path}"
    return guard.probe_latencies(url, PROBES, PROBE_TIMEOUT), 1


def limit_ms(s: Settings, p99_before: float | None) -> int:
    """The p99 the guard pauses above: deploy_guard_p99_ms, or deploy_guard_over_baseline times
    the p99 the serving release had before the deploy's heavy steps, whichever is higher (a
    release slow on its own does not recover while the deploy waits)."""
    relative = (p99_before or 0) * s.deploy_guard_over_baseline
    return max(s.deploy_guard_p99_ms, int(relative))


def command(s: Settings, method: Method, before: str, limit: int | None = None) -> str | None:
    """The wait before the step BEFORE, as one shell command for the migration host, pausing
    above LIMIT ms (deploy_guard_p99_ms when None); None when the guard is off."""
    found = sample(s, method)
    if found is None:
        return None
    return guard.wait_for_p99(
        found[0],
        s.deploy_guard_p99_ms if limit is None else limit,
        seconds(s.deploy_guard_max_wait),
        found[1],
        s.deploy_guard_on_timeout == "stop",
        before,
    )


@dataclass
class Gate:
    """The guard of one host's run: the command for each step, and what it said."""

    run: Run
    h: Host
    s: Settings
    method: Method

    def command(self, before: str) -> str | None:
        return command(self.s, self.method, before, self.limit())

    def limit(self) -> int:
        """The limit of this run's waits, from the serving release's p99 before its first
        heavy step (read once, then kept in the report's `guard_baseline`)."""
        s, found = self.s, sample(self.s, self.method)
        if found is None or not s.deploy_guard_over_baseline:
            return s.deploy_guard_p99_ms
        baseline = self.run.facts.get("guard_baseline")
        if baseline is None:
            _, out, _ = sh(self.h, guard.p99(*found), timeout=30, what="the deploy guard")
            p99, requests = (out.split() + ["-", "0"])[:2]
            before = None if p99 == "-" else float(p99)
            baseline = {
                "p99_ms": before,
                "requests": int(requests),
                "limit_ms": limit_ms(s, before),
            }
            self.run.facts["guard_baseline"] = baseline
            if baseline["limit_ms"] > s.deploy_guard_p99_ms:
                say(
                    self.h,
                    f"guard: the serving release's p99 is already {p99} ms before the heavy "
                    f"steps ({requests} requests): pausing only above {baseline['limit_ms']} ms "
                    f"({s.deploy_guard_over_baseline:g} x, deploy_guard_over_baseline)",
                )
        return baseline["limit_ms"]

    def limit_said(self) -> int:
        """The limit the waits of this run had (read by limit())."""
        return self.run.facts.get("guard_baseline", {}).get("limit_ms", self.s.deploy_guard_p99_ms)

    def report(self, text: str) -> None:
        """Say each wait in TEXT (a command's stderr, the guard's lines in it) and keep it in
        the run's facts (the report's `guard`)."""
        for state, p99, requests, waited, before in LINE.findall(text):
            if state == "ok" and waited == "0":
                continue
            how = "recovered" if state == "ok" else "still over: deploy_guard_on_timeout decides"
            say(
                self.h,
                f"guard: waited {waited}s before {before}: the serving p99 was over "
                f"{self.limit_said()} ms ({how}; p99 {p99} ms over {requests} requests)",
            )
            self.run.facts.setdefault("guard", []).append(
                {"before": before, "state": state, "p99_ms": p99, "waited_s": int(waited)}
            )

    def wait(self, before: str) -> None:
        """Before the step BEFORE, wait as the guard says; DeployError when it stops."""
        wanted = self.command(before)
        if wanted is None:
            return
        limit = int(seconds(self.s.deploy_guard_max_wait)) + 60
        _, out, err = sh(self.h, wanted, timeout=limit, what="the deploy guard")
        self.report(err)
        if out.strip() == "f":
            raise DeployError(
                f"stopped before {before}: the serving release's p99 stayed over "
                f"{self.limit_said()} ms for {self.s.deploy_guard_max_wait} "
                "(deploy_guard_on_timeout: stop); that step did not start"
            )
