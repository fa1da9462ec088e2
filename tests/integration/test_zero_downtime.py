"""A deploy its users cannot see: k6 at 100 requests/s (open loop) through the service's port
on the lab's staging during each kind of switch; failed requests come from k6's own summary."""

from __future__ import annotations

import pytest
from pyinfra_runs import QUICK, on_staging, output, pyinfra, report, served_version, staging_app1

from lab import core


@pytest.fixture(scope="module")
def app1(lab):
    """Staging serving v1.9.0 with the default strategy (blue_green)."""
    first = pyinfra("--data", "app_version=v1.9.0", *QUICK)
    assert first.returncode == 0, output(first)[-3000:]
    return staging_app1()


def test_a_release_changing_deploy_fails_no_request(app1):
    result, traffic = on_staging("--data", "app_version=v2.0.0-perf")
    assert result.returncode == 0, output(result)[-3000:]
    assert "drained and stopped" in output(result)
    assert traffic.unserved == 0, traffic
    assert served_version(app1) == '{"version":"2.0.0-perf"}'


def test_a_deploy_changing_only_the_env_file_fails_no_request(app1):
    result, traffic = on_staging("--data", "server_idle_timeout=121s")
    assert result.returncode == 0, output(result)[-3000:]
    assert report(result)["changed"][0] == ".env"
    assert traffic.unserved == 0, traffic
    env = core.ssh(app1, "cat /app/monitoring-dashboard-api/.env").stdout.decode()
    assert "SERVER_IDLE_TIMEOUT=121s" in env


def test_a_quick_rollback_fails_no_request(app1):
    result, traffic = on_staging(script="rollback.py")
    assert result.returncode == 0, output(result)[-3000:]
    assert traffic.unserved == 0, traffic
    assert served_version(app1) == '{"version":"1.9.0"}'


def test_a_broken_release_never_serves_a_user_and_fails_no_request(app1):
    result, traffic = on_staging("--data", "app_version=v2.0.1-broken", forbidden="2.0.1-broken")
    assert result.returncode != 0
    failed = report(result)
    assert failed["status"] == "failed"
    assert [m["metric"] for m in failed["success_metrics"] if not m["pass"]] == [
        "health check before traffic"
    ]
    assert traffic.unserved == 0, traffic
    assert traffic.forbidden_answers == 0, traffic
    assert served_version(app1) == '{"version":"1.9.0"}'
    assert "never served a request" in output(result)


def _backups(app1) -> list[str]:
    return core.ssh(app1, "ls /var/backups/monitoring-dashboard").stdout.decode().split()


def test_the_deploy_waits_while_the_serving_release_is_slow_and_stops_when_told(app1):
    """v2.0.2-slow serves (each history answer 15 ms slower) under k6: with a 10 ms limit the
    guard finds the serving p99 over it before the backup; told to stop, the deploy stops
    there, the slow release still serving and no backup taken; told to go on, it waits the
    bounded time, says so, and deploys."""
    slow = pyinfra("--data", "app_version=v2.0.2-slow", *QUICK)
    assert slow.returncode == 0, output(slow)[-3000:]
    guard = (
        "--data",
        "deploy_guard_p99_ms=10",
        "--data",
        "deploy_guard_max_wait=3s",
        "--data",
        "deploy_guard_over_baseline=0",  # the fixed limit only: the test below lifts it
    )
    before = _backups(app1)
    stopped, traffic = on_staging(
        "--data", "app_version=v2.0.0-perf", *guard, "--data", "deploy_guard_on_timeout=stop"
    )
    text = output(stopped)
    assert stopped.returncode != 0, text[-3000:]
    assert "stopped before the backup (pg_dump)" in text
    assert "guard: waited 3s before the backup (pg_dump)" in text
    assert traffic.unserved == 0, traffic
    assert served_version(app1) == '{"version":"2.0.2-slow"}'
    assert _backups(app1) == before
    went_on, traffic = on_staging("--data", "app_version=v2.0.0-perf", *guard)
    assert went_on.returncode == 0, output(went_on)[-3000:]
    waits = report(went_on)["facts"]["guard"]
    assert waits[0]["before"] == "the backup (pg_dump)" and waits[0]["state"] == "over"
    assert waits[0]["waited_s"] >= 3 and float(waits[0]["p99_ms"]) > 10
    assert traffic.unserved == 0, traffic
    assert served_version(app1) == '{"version":"2.0.0-perf"}'


def test_a_release_slow_before_the_deploy_raises_the_guards_limit_and_costs_no_wait(app1):
    """The same slow release and 10 ms limit, with deploy_guard_over_baseline at its default
    (2): the guard reads the serving p99 once before the backup and pauses only above twice
    that, so the deploy does not wait out its bound before the backup."""
    slow = pyinfra("--data", "app_version=v2.0.2-slow", *QUICK)
    assert slow.returncode == 0, output(slow)[-3000:]
    result, traffic = on_staging(
        "--data",
        "app_version=v2.0.0-perf",
        "--data",
        "deploy_guard_p99_ms=10",
        "--data",
        "deploy_guard_max_wait=3s",
    )
    text = output(result)
    assert result.returncode == 0, text[-3000:]
    facts = report(result)["facts"]
    baseline = facts["guard_baseline"]
    assert baseline["p99_ms"] > 10 and baseline["limit_ms"] >= 2 * baseline["p99_ms"] - 1
    assert f"pausing only above {baseline['limit_ms']} ms" in text
    assert [w for w in facts.get("guard", []) if w["before"] == "the backup (pg_dump)"] == []
    assert traffic.unserved == 0, traffic
    assert served_version(app1) == '{"version":"2.0.0-perf"}'
