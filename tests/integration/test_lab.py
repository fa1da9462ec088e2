"""The lab's hosts are real: systemd, sshd, Docker Engine, PostgreSQL, Redis over the network."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from lab.topology import ENVS, topology

ALL = [(env, h.name) for env in ENVS for h in topology(env)]
APPS = [(env, h.name) for env in ENVS for h in topology(env) if h.is_app]


@pytest.mark.parametrize("key", ALL, ids=[f"{e}-{n}" for e, n in ALL])
def test_systemd_is_running_and_the_hostname_is_its_own(hosts, key):
    host = hosts[key]
    assert host.run("systemctl is-system-running").stdout.strip() == "running"
    assert host.check_output("hostname") == key[1]
    assert host.service("ssh").is_running


@pytest.mark.parametrize("key", ALL, ids=[f"{e}-{n}" for e, n in ALL])
def test_each_host_has_its_own_identity(hosts, key):
    machine_id = hosts[key].file("/etc/machine-id").content_string.strip()
    others = {hosts[k].file("/etc/machine-id").content_string.strip() for k in ALL if k != key}
    assert len(machine_id) == 32 and machine_id not in others


@pytest.mark.parametrize("key", APPS, ids=[f"{e}-{n}" for e, n in APPS])
def test_app_hosts_run_docker_engine_with_the_lab_redis_image(hosts, key, lab):
    host = hosts[key]
    assert host.service("docker").is_running
    assert host.run(f"docker image inspect {lab['redis_image']}").rc == 0
    for tool in ("git", "go", "psql", "redis-cli"):
        assert host.exists(tool), tool


@pytest.mark.parametrize("env", ENVS)
def test_an_app_host_opens_a_password_connection_to_monitoring_on_db1(hosts, lab, env):
    db = lab["database"][env]
    password = Path(db["password_file"]).read_text().strip()
    app1 = hosts[(env, "app1")]
    query = (
        f"PGPASSWORD={shlex.quote(password)} psql -h {db['host']} -U {db['user']} "
        f"-d {db['name']} -tAc 'SELECT current_user'"
    )
    assert app1.check_output(query) == db["user"]
    wrong = query.replace(shlex.quote(password), "wrong-password")
    result = app1.run(wrong)
    assert result.rc != 0 and "password authentication failed" in result.stderr


@pytest.mark.parametrize("name", ["app1", "app2", "app3"])
def test_production_app_hosts_reach_cache1_with_its_password_only(hosts, lab, name):
    redis = lab["redis"]["production"]
    password = Path(redis["password_file"]).read_text().strip()
    host = hosts[("production", name)]
    base = f"redis-cli -h {redis['host']} -p {redis['port']}"
    assert host.check_output(f"REDISCLI_AUTH={shlex.quote(password)} {base} ping") == "PONG"
    assert "NOAUTH" in host.check_output(f"{base} ping")


def test_a_docker_container_publishes_a_port_on_an_app_host(hosts, lab):
    host = hosts[("staging", "app1")]
    host.run("docker rm -f lab-probe")
    run = host.run(
        f"docker run -d --name lab-probe -p 127.0.0.1:6390:6379 {lab['redis_image']}"
        " redis-server --save ''"
    )
    try:
        assert run.rc == 0, run.stderr
        assert (
            host.run(
                "for i in $(seq 50); do redis-cli -p 6390 ping && exit 0; sleep 0.1; done; exit 1"
            )
            .stdout.strip()
            .endswith("PONG")
        )
    finally:
        host.run("docker rm -f lab-probe")


def test_units_of_one_host_do_not_touch_another_hosts(hosts):
    """Each host has its own cgroup tree: stopping a unit on one leaves the same-named unit
    on another running."""
    a, b = hosts[("production", "app1")], hosts[("production", "app2")]
    a.run("systemd-run --unit lab-probe sleep 300")
    b.run("systemd-run --unit lab-probe sleep 300")
    try:
        a.run("systemctl stop lab-probe")
        assert b.run("systemctl is-active lab-probe").stdout.strip() == "active"
    finally:
        a.run("systemctl stop lab-probe")
        b.run("systemctl stop lab-probe")


def test_lab_up_on_a_running_lab_changes_nothing(lab):
    from lab import core

    before = {
        (h["env"], h["name"]): core.host_dir(
            next(x for x in topology(h["env"]) if x.name == h["name"])
        )
        .joinpath("pid")
        .read_text()
        for h in lab["hosts"]
    }
    messages = []
    core.up("staging", messages.append)
    core.up("production", messages.append)
    assert messages == [
        "lab staging: all 3 hosts already running, nothing to do",
        "lab production: all 8 hosts already running, nothing to do",
    ]
    after = {
        k: core.host_dir(next(x for x in topology(k[0]) if x.name == k[1]))
        .joinpath("pid")
        .read_text()
        for k in before
    }
    assert after == before
