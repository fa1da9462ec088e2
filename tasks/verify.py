"""Verification (checklist step 6): health JSON, the Redis log line since this start, history
latency, metrics:* keys (SCAN), the hit ratio from INFO stats, connections to the database."""

from __future__ import annotations

import json
from typing import Any

from gevent.lock import BoundedSemaphore
from pyinfra.operations import python

from tasks.commands import http, shell
from tasks.config import Settings
from tasks.context import Plan, RunContext
from tasks.operations import deploy
from tasks.outcome import phase_check
from tasks.probes import db_connections, metrics_keys, redis_stats
from tasks.remote import DeployError, at_once, health_url, timed_get
from tasks.strategy import Strategy
from tasks.transport import remote, say, sh

EXPECTED_HEALTH = {"auth_enabled": False, "authenticated": True}
q = shell.q


def log_since_start(h, s: Settings) -> str:
    """The service's log lines since its most recent start."""
    _, out, _ = sh(
        h,
        f"tac {q(s.app_log_file)} 2>/dev/null | sed '/Starting monitoring-dashboard-api/q' | tac",
        check=False,
    )
    return out


@phase_check("verify")
def _verify(ctx: RunContext, host, s: Settings, plan: Plan) -> None:
    run = ctx.run(host)
    failures: list[str] = []

    def check(name: str, threshold: str, measured: Any, passed: bool) -> None:
        run.metric(name, threshold, measured, passed)
        if not passed:
            failures.append(f"{name}: {measured} (wanted {threshold})")

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

    uses_redis = "Redis" in log
    if s.redis_enabled and uses_redis:
        check(
            "Redis connection (log since start)",
            "Redis cache initialized successfully",
            "initialized"
            if "Redis cache initialized successfully" in log
            else "not initialized: " + next((x for x in log.splitlines() if "Redis" in x), ""),
            "Redis cache initialized successfully" in log,
        )
    url = f"http://127.0.0.1:{s.app_port}{s.verify_history_path}"
    if ctx.verifying is None:
        ctx.verifying = BoundedSemaphore(s.verify_concurrency)
    with ctx.verifying:
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
        run.metric("Redis cache", "REDIS_ENABLED=false", "disabled by configuration", True)
    else:
        run.metric("Redis cache", "used by the release", "this release logs no Redis use", True)
    check(
        f"connections to {s.db_name}",
        f"< {s.verify_max_db_connections}",
        connections,
        connections < s.verify_max_db_connections,
    )
    if failures:
        raise DeployError("verification failed:\n" + "\n".join(f"  - {f}" for f in failures))
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
