"""Monitoring window (checklist step 8), bounded: response time, ERROR lines in the log, Redis
stats and database connections sampled at an interval; a breach fails the deploy."""

from __future__ import annotations

import time
from typing import Any

from pyinfra.operations import python

from tasks.commands import logs
from tasks.config import Settings
from tasks.context import Plan, RunContext
from tasks.operations import deploy
from tasks.outcome import phase_check
from tasks.probes import db_connections, redis_stats
from tasks.remote import DeployError, timed_get
from tasks.strategy import Strategy
from tasks.transport import remote, say, sh


def _log_size(h, path: str) -> int:
    _, out, _ = sh(h, logs.size(path))
    return int(out.strip() or 0)


def _error_lines(h, path: str, offset: int) -> list[str]:
    _, out, _ = sh(h, logs.errors_after(path, offset))
    return [line for line in out.splitlines() if line]


def _sample(host, s: Settings, url: str, offset: int) -> tuple[dict[str, Any], str | None]:
    """One look at the service: (the sample, the breach it shows or None)."""
    code, seconds, _ = timed_get(remote(host), url)
    connections: int | None = None
    try:
        connections = db_connections(host, s)
    except DeployError as exc:  # down or restarting: a breach, even if the cache answers
        database_down = str(exc)[-200:]
    sample: dict[str, Any] = {
        "t": round(time.time(), 1),
        "status": code,
        "ms": round(seconds * 1000, 1),
        "connections": connections,
        "errors": len(_error_lines(host, s.app_log_file, offset)),
    }
    if s.redis_enabled:
        try:
            sample.update(redis_stats(host, s))
        except DeployError as exc:
            sample["redis"] = str(exc)[-200:]
    breach = None
    if connections is None:
        breach = f"the database did not answer ({database_down})"
    elif code != 200:
        breach = f"history endpoint answered {code}"
    elif sample["ms"] >= s.monitor_latency_ms:
        breach = f"history endpoint took {sample['ms']} ms (limit {s.monitor_latency_ms})"
    elif sample["errors"] > s.monitor_max_error_lines:
        breach = f"{sample['errors']} ERROR line(s) in the log during the window"
    elif connections >= s.verify_max_db_connections:
        breach = f"{connections} database connections"
    return sample, breach


@phase_check("monitor")
def _monitor(ctx: RunContext, host, s: Settings, plan: Plan) -> None:
    run = ctx.run(host)
    if not run.all_changes():
        say(host, "monitoring window skipped: this run changed nothing")
        run.facts["monitor"] = {"skipped": "nothing changed"}
        return
    url = f"http://127.0.0.1:{s.app_port}{s.verify_history_path}"
    offset = _log_size(host, s.app_log_file)
    deadline = time.monotonic() + s.monitor_duration
    samples: list[dict[str, Any]] = []
    say(host, f"monitoring for {s.monitor_duration}s, every {s.monitor_interval}s")
    breach = None
    while breach is None:
        sample, breach = _sample(host, s, url, offset)
        samples.append(sample)
        if time.monotonic() + s.monitor_interval > deadline:
            break
        time.sleep(s.monitor_interval)
    worst = max(x["ms"] for x in samples)
    redis_down = sum(1 for x in samples if "redis" in x)
    run.facts["monitor"] = {
        "samples": len(samples),
        "worst_ms": worst,
        "breach": breach,
        "redis_unreachable_samples": redis_down,
        "series": [[x["t"], x["ms"], x["status"], x["errors"]] for x in samples],  # the plot
    }
    if redis_down:  # not the release's fault: a breach only if the service's answers suffer
        say(
            host,
            f"WARNING: Redis unreachable in {redis_down} of {len(samples)} samples; the "
            "service kept answering from PostgreSQL",
        )
    run.metric(
        "monitoring window",
        f"{s.monitor_duration}s without breach",
        f"{len(samples)} samples, worst {worst:.0f} ms" + (f", {breach}" if breach else ""),
        breach is None,
    )
    if breach:
        raise DeployError(f"monitoring window breached: {breach}")
    say(host, f"monitoring window passed: {len(samples)} samples, worst {worst:.0f} ms")


@deploy("Monitor")
def monitor(ctx: RunContext, s: Settings, plan: Plan, strategy: Strategy) -> None:
    """The monitoring window; a failure in it switches the host back (STRATEGY)."""
    if s.monitor_duration > 0:
        python.call(
            name="Watch the service for the monitoring window",
            function=_monitor,
            ctx=ctx,
            s=s,
            plan=plan,
            strategy=strategy,
        )
