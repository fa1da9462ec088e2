"""Verification (checklist step 6): health JSON, the Redis log line since this start, history
latency, metrics:* keys (SCAN), the hit ratio from INFO stats, connections to the database."""

from __future__ import annotations

import json
from typing import Any

from gevent.lock import BoundedSemaphore
from pyinfra.operations import python

from tasks.commands import http, logs
from tasks.config import Settings
from tasks.context import Plan, Run, RunContext
from tasks.operations import deploy
from tasks.outcome import phase_check
from tasks.probes import db_connections, metrics_keys, redis_stats
from tasks.remote import DeployError, at_once, health_url, timed_get
from tasks.strategy import Strategy
from tasks.transport import remote, say, sh

EXPECTED_HEALTH = {"auth_enabled": False, "authenticated": True}


def log_since_start(h, s: Settings) -> str:
    """The service's log lines since its most recent start."""
    _, out, _ = sh(h, logs.since_start(s.app_log_file), check=False)
    return out


class Checks:
    """The checklist's checks on one host: each a success metric of the run; the failed ones
    kept, to fail the step once all were made."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.failures: list[str] = []

    def __call__(self, name: str, threshold: str, measured: Any, passed: bool) -> None:
        self.run.metric(name, threshold, measured, passed)
        if not passed:
            self.failures.append(f"{name}: {measured} (wanted {threshold})")


def _health_and_log(host, s: Settings, check: Checks) -> str:
    """The health answer and, when the release uses Redis, its log line. Returns the log since
    the instance started."""
    (code, _, body), log = at_once(
        lambda: timed_get(remote(host), health_url(s)), lambda: log_since_start(host, s)
    )
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    check(
        "health check",
        f"200 {json.dumps(EXPECTED_HEALTH)}",
        f"{code} {json.dumps(answer) if answer is not None else body.strip()[:200]}",
        code == 200 and answer == EXPECTED_HEALTH,
    )
    if s.redis_enabled and "Redis" in log:
        check(
            "Redis connection (log since start)",
            "Redis cache initialized successfully",
            "initialized"
            if "Redis cache initialized successfully" in log
            else "not initialized: " + next((x for x in log.splitlines() if "Redis" in x), ""),
            "Redis cache initialized successfully" in log,
        )
    return log


def _cache(s: Settings, check: Checks, before: dict, after: dict, keys: int) -> None:
    """The hit ratio over the history requests (INFO stats before and after) and the keys."""
    if before:
        hits = after["keyspace_hits"] - before["keyspace_hits"]
        misses = after["keyspace_misses"] - before["keyspace_misses"]
        ratio = hits / (hits + misses) if hits + misses else 0.0
        check(
            "Redis hit ratio (INFO stats delta)",
            f">= {s.verify_min_hit_ratio:.2f}",
            f"{ratio:.2f} ({hits} hits, {misses} misses)",
            ratio >= s.verify_min_hit_ratio,
        )
        check("Redis metrics:* keys (SCAN)", "> 0", keys, keys > 0)
    elif not s.redis_enabled:
        check.run.metric("Redis cache", "REDIS_ENABLED=false", "disabled by configuration", True)
    else:
        check.run.metric(
            "Redis cache", "used by the release", "this release logs no Redis use", True
        )


@phase_check("verify")
def _verify(ctx: RunContext, host, s: Settings, plan: Plan) -> None:
    check = Checks(ctx.run(host))
    uses_redis = "Redis" in _health_and_log(host, s, check)
    url = f"http://127.0.0.1:{s.app_port}{s.verify_history_path}"
    if ctx.deploy.verifying is None:
        ctx.deploy.verifying = BoundedSemaphore(s.verify_concurrency)
    with ctx.deploy.verifying:
        before = redis_stats(host, s) if uses_redis and s.redis_enabled else {}
        _, out, _ = sh(host, http.timed_gets(url, s.verify_requests), timeout=120)
        after, keys, connections = at_once(  # independent reads, at once
            lambda: redis_stats(host, s) if before else {},
            lambda: metrics_keys(host, s) if before else 0,
            lambda: db_connections(host, s),
        )
    answers = [line.split() for line in out.splitlines() if len(line.split()) == 2]
    codes = [int(code) for code, _ in answers] or [0]
    timings = [float(seconds) * 1000 for _, seconds in answers] or [0.0]
    slowest = max(timings)
    check(
        "history endpoint",
        f"200, < {s.verify_latency_ms} ms",
        f"{sorted(set(codes))}, max {slowest:.0f} ms, first {timings[0]:.0f} ms",
        set(codes) == {200} and slowest < s.verify_latency_ms,
    )
    _cache(s, check, before, after, keys)
    check(
        f"connections to {s.db_name}",
        f"< {s.verify_max_db_connections}",
        connections,
        connections < s.verify_max_db_connections,
    )
    if check.failures:
        failed = "\n".join(f"  - {f}" for f in check.failures)
        raise DeployError(f"verification failed:\n{failed}")
    say(host, f"verified: history max {slowest:.0f} ms, {connections} database connections")


@deploy("Verify")
def verify(ctx: RunContext, s: Settings, plan: Plan, strategy: Strategy) -> None:
    """The checklist's step 6 on each app host; a failure switches the host back (STRATEGY)."""
    python.call(
        name="Verify the deployment (checklist step 6)",
        function=_verify,
        ctx=ctx,
        s=s,
        plan=plan,
        strategy=strategy,
    )
