"""Option B of the checklist (`release_method: docker`) on the lab's staging: the release as an
image built on the host, containers switched blue/green behind the local proxy. Every switch
runs under k6 at 100 requests/s (open loop); failed requests come from k6's own summary."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pyinfra_runs import (
    OBJECTS,
    QUICK,
    REPO,
    lab_settings,
    on_staging,
    output,
    pyinfra,
    report,
    served_version,
    staging_app1,
)

from lab import core
from tasks.commands import postgres

DOCKER = ("--data", "release_method=docker")
IMAGE = "monitoring-dashboard-api"


def on_host(host, command: str) -> str:
    return core.ssh(host, command, check=False).stdout.decode().strip()


def app_containers(host) -> dict[str, str]:
    """Running containers of the service (not redis-cache): name -> image."""
    lines = on_host(host, "docker ps --format '{{.Names}} {{.Image}}'").splitlines()
    return dict(line.split() for line in lines if line.startswith(IMAGE))


def active_units(host) -> str:
    units = "monitoring-dashboard monitoring-dashboard@blue monitoring-dashboard@green"
    return on_host(host, f"systemctl is-active {units}")


@pytest.fixture(scope="module")
def app1(lab):
    """Staging serving v1.9.0 with systemd (Option A, blue_green)."""
    first = pyinfra("--data", "app_version=v1.9.0", *QUICK)
    assert first.returncode == 0, output(first)[-3000:]
    return staging_app1()


def test_switching_a_host_to_docker_is_a_deploy_that_fails_no_request(app1):
    result, traffic = on_staging(*DOCKER, "--data", "app_version=v1.9.0")
    assert result.returncode == 0, output(result)[-3000:]
    assert traffic.unserved == 0, traffic
    assert served_version(app1) == '{"version":"1.9.0"}'
    (name, image), *others = app_containers(app1).items()
    assert not others and name in (f"{IMAGE}-blue", f"{IMAGE}-green")
    assert image.startswith(f"{IMAGE}:v1.9.0-")
    assert active_units(app1).split() == ["inactive"] * 3  # nothing of systemd runs the service


def test_an_upgrade_builds_its_image_and_fails_no_request(app1):
    result, traffic = on_staging(*DOCKER, "--data", "app_version=v2.0.0-perf")
    assert result.returncode == 0, output(result)[-3000:]
    assert traffic.unserved == 0, traffic
    assert served_version(app1) == '{"version":"2.0.0-perf"}'
    assert [image.split(":")[1][:11] for image in app_containers(app1).values()] == ["v2.0.0-perf"]
    tags = on_host(app1, f"docker images --format '{{{{.Tag}}}}' {IMAGE}").split()
    assert any(t.startswith("v1.9.0-") for t in tags)  # kept for a rollback
    labels = on_host(
        app1, f"docker inspect -f '{{{{json .Config.Labels}}}}' {IMAGE}:{report(result)['release']}"
    )
    assert '"org.opencontainers.image.version":"v2.0.0-perf"' in labels


def test_the_same_docker_deploy_again_changes_nothing_and_says_so(app1):
    result = pyinfra(*DOCKER, "--data", "app_version=v2.0.0-perf", *QUICK)
    assert result.returncode == 0, output(result)[-3000:]
    assert report(result)["changed"] == []
    assert "changes: none (already deployed)" in output(result)


def test_a_broken_release_never_serves_a_user_and_its_container_is_gone(app1):
    before = app_containers(app1)
    result, traffic = on_staging(
        *DOCKER, "--data", "app_version=v2.0.1-broken", forbidden="2.0.1-broken"
    )
    assert result.returncode != 0
    assert report(result)["status"] == "failed"
    assert traffic.unserved == 0, traffic
    assert traffic.forbidden_answers == 0, traffic
    assert served_version(app1) == '{"version":"2.0.0-perf"}'
    assert app_containers(app1) == before
    assert "never served a request" in output(result)


def test_a_quick_rollback_goes_back_to_the_previous_image_and_fails_no_request(app1):
    result, traffic = on_staging(*DOCKER, script="rollback.py")
    assert result.returncode == 0, output(result)[-3000:]
    assert traffic.unserved == 0, traffic
    assert served_version(app1) == '{"version":"1.9.0"}'
    assert [image.split(":")[1][:6] for image in app_containers(app1).values()] == ["v1.9.0"]


def test_the_server_suite_checks_the_docker_shape(app1):
    env = {
        **os.environ,
        "MDD_INVENTORY": "inventories/lab.py",
        "MDD_DATA": "release_method=docker",
    }
    suite = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "tests/servers"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert suite.returncode == 0, suite.stdout[-3000:]
    # with docker the proxy and the slots' template are still units of the deploy: scored too
    assert "skipped" not in suite.stdout, suite.stdout


def test_the_restart_strategy_runs_one_container_and_a_full_rollback_reverts_the_schema(app1):
    """The checklist's own Option B shape (one container on port 8080, no local proxy), a full
    rollback from it to v1.9.0's image and schema, then back to the blue/green slots."""
    restart = (*DOCKER, "--data", "release_strategy=restart")
    up = pyinfra(*restart, "--data", "app_version=v2.0.0-perf", *QUICK)
    assert up.returncode == 0, output(up)[-3000:]
    assert served_version(app1) == '{"version":"2.0.0-perf"}'
    (name, image), *others = app_containers(app1).items()
    assert not others and name == IMAGE and image.startswith(f"{IMAGE}:v2.0.0-perf-")
    assert on_host(app1, "systemctl is-active monitoring-dashboard-proxy") == "inactive"
    objects = postgres.psql(lab_settings(), postgres.objects_state_sql(OBJECTS))
    assert len(on_host(app1, objects).splitlines()) == len(OBJECTS)

    back = pyinfra(*restart, "--data", "rollback_mode=full", script="rollback.py")
    assert back.returncode == 0, output(back)[-3000:]
    assert served_version(app1) == '{"version":"1.9.0"}'
    (name, image), *others = app_containers(app1).items()
    assert not others and name == IMAGE and image.startswith(f"{IMAGE}:v1.9.0-")
    assert on_host(app1, objects) == ""  # migration 003 reverted

    slots = pyinfra(*DOCKER, "--data", "app_version=v1.9.0", *QUICK)
    assert slots.returncode == 0, output(slots)[-3000:]
    assert [n.rsplit("-", 1)[1] for n in app_containers(app1)] in (["blue"], ["green"])
    assert on_host(app1, "systemctl is-active monitoring-dashboard-proxy") == "active"
    assert served_version(app1) == '{"version":"1.9.0"}'


def test_switching_back_to_systemd_leaves_no_container_and_fails_no_request(app1):
    result, traffic = on_staging("--data", "app_version=v1.9.0")
    assert result.returncode == 0, output(result)[-3000:]
    assert traffic.unserved == 0, traffic
    assert app_containers(app1) == {}
    assert sorted(active_units(app1).split()) == ["active", "inactive", "inactive"]
    assert served_version(app1) == '{"version":"1.9.0"}'
