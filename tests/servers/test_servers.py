"""What a deploy leaves on each app host (checklist: service, user, files, container, DB)."""

from __future__ import annotations

import json

from tasks import commands, slots


def _serving_unit(host, s) -> str:
    """The unit that runs the release now: the active slot, or the single unit of `restart`."""
    if s["release_strategy"] == "restart":
        return s["app_service"]
    active = host.file(f"{s['app_dir']}/slots/active").content_string.strip()
    return slots.slot_unit(s, active)


def test_service_is_active_and_enabled(server):
    host, s = server
    service = host.service(_serving_unit(host, s))
    assert service.is_running
    assert service.is_enabled


def test_blue_green_proxy_serves_the_port_and_one_slot_runs(server):
    host, s = server
    if s["release_strategy"] != "blue_green":
        assert not host.service(slots.proxy_service(s)).is_running
        return
    proxy = host.service(slots.proxy_service(s))
    assert proxy.is_running and proxy.is_enabled
    running = [slot for slot in slots.SLOTS if host.service(slots.slot_unit(s, slot)).is_running]
    assert [slots.slot_unit(s, slot) for slot in running] == [_serving_unit(host, s)]
    for slot in slots.SLOTS:
        port = slots.slot_port(s, slot)
        assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening
    active = running[0]
    assert host.socket(f"tcp://127.0.0.1:{slots.slot_port(s, active)}").is_listening
    link = host.file(f"{s['app_dir']}/slots/{active}").linked_to
    assert link == host.file(commands.paths(s)["current"]).linked_to


def test_service_runs_as_its_own_non_root_user(server):
    host, s = server
    user = host.user(s["app_user"])
    assert user.exists and user.uid != 0
    assert user.shell == "/usr/sbin/nologin"
    main_pid = host.check_output(f"systemctl show -p MainPID --value {_serving_unit(host, s)}")
    assert host.check_output(f"ps -o user= -p {main_pid}") == s["app_user"]


def test_env_file_is_private_to_the_service_user(server):
    host, s = server
    env = host.file(commands.paths(s)["env_file"])
    assert env.exists and env.mode == 0o600
    assert env.user == s["app_user"]


def test_deploy_secrets_are_root_only(server):
    host, s = server
    p = commands.paths(s)
    assert host.file(p["state"]).mode == 0o700
    for path in (p["pgpass"], p["redis_auth"]):
        f = host.file(path)
        assert f.exists and f.mode == 0o600 and f.user == "root"


def test_current_points_at_a_built_release(server):
    host, s = server
    current = host.file(commands.paths(s)["current"])
    assert current.is_symlink
    assert current.linked_to.startswith(commands.paths(s)["releases"] + "/")
    assert host.file(f"{current.linked_to}/{commands.SERVICE_BINARY}").mode & 0o111


def test_unit_is_hardened_and_reads_the_env_file(server):
    host, s = server
    unit = host.check_output(f"systemctl cat {_serving_unit(host, s)}")
    for line in (
        f"User={s['app_user']}",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        f"EnvironmentFile={commands.paths(s)['env_file']}",
    ):
        assert line in unit


def test_unit_exposure_score_is_at_most_2(server):
    host, s = server
    report = host.check_output(f"systemd-analyze security --no-pager {_serving_unit(host, s)}")
    score = float(report.rsplit("Overall exposure level for", 1)[1].split(":")[1].split()[0])
    assert score <= 2.0, report


def test_the_service_cannot_reach_the_docker_socket(server):
    host, s = server
    pid = host.check_output(f"systemctl show -p MainPID --value {_serving_unit(host, s)}")
    # in the service's own mount namespace the socket is an inaccessible node (mode 000)
    seen = host.run(f"nsenter -t {pid} -m stat -L -c %a /run/docker.sock")
    assert seen.rc != 0 or seen.stdout.strip() == "0", seen.stdout
    assert host.check_output(f"id -nG {s['app_user']}").split().count("docker") == 0


def test_service_answers_its_health_check(server):
    host, s = server
    out = host.check_output(f"curl -s -m 5 http://127.0.0.1:{s['app_port']}{s['app_health_path']}")
    assert json.loads(out) == {"auth_enabled": False, "authenticated": True}
    assert (
        host.socket(f"tcp://0.0.0.0:{s['app_port']}").is_listening
        or host.socket(f"tcp://:::{s['app_port']}").is_listening
    )


def test_redis_container_has_the_checklists_flags(server):
    host, s = server
    if s["redis_mode"] != "container":
        assert host.run(f"docker inspect {s['redis_container']}").rc != 0
        return
    info = json.loads(host.check_output(f"docker inspect {s['redis_container']}"))[0]
    assert info["State"]["Running"]
    assert info["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    args = info["Args"] if info["Path"] != "redis-server" else info["Args"]
    joined = " ".join(args)
    for flag in (
        f"--maxmemory {s['redis_maxmemory']}",
        f"--maxmemory-policy {s['redis_maxmemory_policy']}",
        "--appendonly no",
    ):
        assert flag in joined
    assert "--save" in args and args[args.index("--save") + 1] == ""
    binding = info["HostConfig"]["PortBindings"]["6379/tcp"][0]
    assert binding == {"HostIp": s["redis_bind"], "HostPort": str(s["redis_port"])}


def test_database_has_the_checklists_objects_and_history(server):
    host, s = server
    out = host.check_output(
        commands.psql(
            s,
            commands.objects_state_sql(
                [
                    "idx_metrics_type_time_covering",
                    "idx_metrics_type_time_id",
                    "idx_metrics_recent",
                    "metrics_hourly",
                ]
            ),
        )
    )
    rows = {line.split("|")[0]: line.split("|")[2] for line in out.splitlines()}
    history = host.check_output(
        commands.psql(
            s,
            f"SELECT string_agg(version, ',' ORDER BY version) FROM {commands.HISTORY_TABLE} "
            "WHERE reverted_at IS NULL",
        )
    )
    if "003" in history.split(","):
        assert rows == {name: "t" for name in rows} and len(rows) == 4
    else:
        assert rows == {}
