"""A deploy its users cannot see: k6 at 100 requests/s (open loop) through the service's port
on the lab's staging during each kind of switch; failed requests come from k6's own summary."""

from __future__ import annotations

import pytest
from pyinfra_cli import QUICK, on_staging, output, pyinfra, report, served_version, staging_app1

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
