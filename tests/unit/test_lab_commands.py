from pathlib import Path

from lab import commands
from lab.image import BINARIES, DIGEST, ENTRYPOINT, load_redis_image_script
from lab.topology import topology

APP1 = topology("staging")[0]


def test_netns_commands_wire_eth0_to_the_bridge_with_the_hosts_address():
    cmds = commands.netns_commands(APP1)
    assert cmds[0] == ["ip", "netns", "add", "mdd-s-app1"]
    assert ["ip", "link", "set", "mdds-app1", "master", "mddlab0"] in cmds
    assert [
        "ip",
        "netns",
        "exec",
        "mdd-s-app1",
        "ip",
        "addr",
        "add",
        "10.231.7.11/24",
        "dev",
        "eth0",
    ] in cmds
    assert cmds[-1][-1] == "net.ipv4.ip_forward=1"


def test_nspawn_boots_in_the_hosts_namespace_without_a_system_bus():
    cmd = commands.nspawn_command(APP1, Path("/r"), {"/a": "/b"})
    assert cmd[0] == "systemd-nspawn"
    for flag in (
        "--register=no",
        "--keep-unit",
        "--boot",
        "--directory=/r",
        "--network-namespace-path=/run/netns/mdd-s-app1",
        "--hostname=app1",
        "--bind=/a:/b",
    ):
        assert flag in cmd


def test_own_cgroup_wrapper_execs_the_command_after_moving_itself():
    cmd = commands.in_own_cgroup(APP1, ["true", "x y"])
    assert cmd[:2] == ["sh", "-c"]
    assert "/mdd-lab/mdd-s-app1" in cmd[2]
    assert cmd[2].endswith('exec "$@"')
    assert cmd[3:] == ["sh", "true", "x y"]


def test_cgroup_binds_leave_systemd_and_unified_hierarchies_to_nspawn():
    binds = commands.cgroup_binds(APP1, ["cpuset", "memory", "systemd", "unified"])
    assert binds == {
        "/sys/fs/cgroup/cpuset/mdd-lab/mdd-s-app1": "/var/lib/mdd-lab-cgroup/cpuset",
        "/sys/fs/cgroup/memory/mdd-lab/mdd-s-app1": "/var/lib/mdd-lab-cgroup/memory",
    }


def test_ssh_keeps_strict_host_key_checking_on():
    cmd = commands.ssh_command(APP1, Path("/k"), Path("/kh"), "true")
    assert "StrictHostKeyChecking=yes" in cmd
    assert "UserKnownHostsFile=/kh" in cmd
    assert cmd[-2:] == ["root@10.231.7.11", "true"]
    entry = commands.ssh_config_entry(APP1, Path("/k"), Path("/kh"))
    assert entry.startswith("Host staging-app1\n    HostName 10.231.7.11\n")
    assert "StrictHostKeyChecking yes" in entry


def test_redis_image_is_imported_only_when_missing_or_built_differently():
    script = load_redis_image_script("mdd-lab/redis:7")
    assert script.startswith(
        '[ "$(docker image inspect -f \'{{index .Config.Labels "mdd-lab.image"}}\' '
        f'mdd-lab/redis:7 2>/dev/null)" = {DIGEST} ] && cat >/dev/null || docker import '
    )
    assert "'CMD [\"redis-server\"]'" in script and f"LABEL mdd-lab.image={DIGEST}" in script


def test_the_redis_image_drops_root_like_the_official_one():
    assert "exec setpriv --reuid=999 --regid=999 --clear-groups" in ENTRYPOINT
    assert "/usr/bin/setpriv" in BINARIES


def test_lb1_logs_every_request_with_the_server_that_answered_into_a_ring():
    from lab.commands import lb_config
    from lab.topology import topology

    config = lb_config([h for h in topology("production") if h.is_app], 80, 8080)
    assert "ring access\n    format raw\n" in config
    assert "    log ring@access local0 info\n" in config
    assert '    log-format "%Ts.%ms %ST %Ta %s"\n' in config


def test_the_database_comes_back_from_its_copy_with_every_session_ended_first():
    sql = commands.database_from_copy_sql("monitoring", "monitoring_seed_5", "monitoring")
    drop, create = sql.splitlines()
    assert drop == "DROP DATABASE IF EXISTS monitoring WITH (FORCE);"
    assert create.startswith("CREATE DATABASE monitoring TEMPLATE monitoring_seed_5 ")
    assert "OWNER monitoring" in create and "STRATEGY FILE_COPY" in create


def test_a_host_torn_down_is_forgotten_by_this_machine_and_every_other_host():
    cmds = commands.forget_neighbour_commands("10.231.7.11", ["mdd-s-db1"])
    assert cmds == [
        ["ip", "neigh", "flush", "to", "10.231.7.11"],
        ["ip", "-n", "mdd-s-db1", "neigh", "flush", "to", "10.231.7.11"],
    ]
