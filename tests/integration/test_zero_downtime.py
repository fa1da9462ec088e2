"""A deploy its users cannot see: k6 at 100 requests/s (open loop) through the service's port
on the lab's staging during each kind of switch; failed requests come from k6's own summary."""

from __future__ import annotations

import pytest
from pyinfra_cli import QUICK, output, pyinfra, report, under_load

from lab import core
from lab.topology import topology

WINDOW = 30  # seconds of load; every switch below ends well inside it


def version(host) -> str:
    return core.ssh(host, "curl -s -m 5 localhost:8080/api/v1/version").stdout.decode().strip()


def on_app1(*args: str, script: str = "deploy.py", forbidden: str = ""):
    app1 = topology("staging")[0]
    return under_load(
        f"http://{app1.address}:8080", *args, window=WINDOW, script=script, forbidden=forbidden
    )


@pytest.fixture(scope="module")
def app1(lab):
    """Staging serving v1.9.0 with the default strategy (blue_green)."""
    first = pyinfra("--data", "app_version=v1.9.0", *QUICK)
    assert first.returncode == 0, output(first)[-3000:]
    return topology("staging")[0]


def test_a_release_changing_deploy_fails_no_request(app1):
    result, traffic = on_app1("--data", "app_version=v2.0.0-perf")
    assert result.returncode == 0, output(result)[-3000:]
    assert "drained and stopped" in output(result)
    assert traffic.failed == 0, traffic
    assert version(app1) == '{"version":"2.0.0-perf"}'


def test_a_deploy_changing_only_the_env_file_fails_no_request(app1):
    result, traffic = on_app1("--data", "server_idle_timeout=121s")
    assert result.returncode == 0, output(result)[-3000:]
    assert report(result)["changed"][0] == ".env"
    assert traffic.failed == 0, traffic
    env = core.ssh(app1, "cat /app/monitoring-dashboard-api/.env").stdout.decode()
    assert "SERVER_IDLE_TIMEOUT=121s" in env


def test_a_quick_rollback_fails_no_request(app1):
    result, traffic = on_app1(script="rollback.py")
    assert result.returncode == 0, output(result)[-3000:]
    assert traffic.failed == 0, traffic
    assert version(app1) == '{"version":"1.9.0"}'


def test_a_broken_release_never_serves_a_user_and_fails_no_request(app1):
    result, traffic = on_app1("--data", "app_version=v2.0.1-broken", forbidden="2.0.1-broken")
    assert result.returncode != 0
    failed = report(result)
    assert failed["status"] == "failed"
    assert [m["metric"] for m in failed["success_metrics"] if not m["pass"]] == [
        "health check before traffic"
    ]
    assert traffic.failed == 0, traffic
    assert traffic.forbidden_answers == 0, traffic
    assert version(app1) == '{"version":"1.9.0"}'
    assert "never served a request" in output(result)
