"""Rolling deploys across the lab's production behind lb1 (HAProxy, no retries): k6 sends 100
requests/s through lb1 during each rollout; failed requests come from k6's own summary."""

from __future__ import annotations

import json
import subprocess
import time
from contextlib import contextmanager

import pytest
from pyinfra_runs import QUICK, output, pyinfra, report, start, under_load, wait_for_line

from lab import core
from lab.load import Load
from tasks.commands import haproxy

INVENTORY = "inventories/lab_production.py"
WINDOW = 75
APPS = ("app1", "app2", "app3")


def hosts() -> dict:
    return {h.name: h for h in core.hosts_of("production")}


def sh(name: str, command: str) -> str:
    return core.ssh(hosts()[name], command).stdout.decode().strip()


def versions() -> dict[str, str]:
    return {
        name: json.loads(sh(name, "curl -s -m 5 localhost:8080/api/v1/version"))["version"]
        for name in APPS
    }


def serving_pid(name: str) -> str:
    """The process that serves on the host now (a switch always starts a new one)."""
    slot = sh(name, "cat /app/monitoring-dashboard-api/slots/active")
    return sh(name, f"systemctl show -p MainPID --value monitoring-dashboard@{slot}")


def through_lb1(*args: str, forbidden: str = ""):
    url = f"http://{hosts()['lb1'].address}:80"
    return under_load(url, *args, window=WINDOW, inventory=INVENTORY, forbidden=forbidden)


def fleet_serving(ref: str, version: str) -> None:
    """lab production with three app hosts behind lb1, all serving REF (which says VERSION)."""
    core.up("production", echo=lambda _m: None, app_hosts=3)
    first = pyinfra("--data", f"app_version={ref}", *QUICK, inventory=INVENTORY)
    assert first.returncode == 0, output(first)[-3000:]
    assert versions() == dict.fromkeys(APPS, version)


@pytest.fixture(scope="module")
def fleet(lab):
    """lab production with three app hosts behind lb1, all serving v1.9.0."""
    fleet_serving("v1.9.0", "1.9.0")


def test_a_rolling_deploy_through_lb1_fails_no_request(fleet):
    """With the checklist's pg_dump, copied to another host (the lab's production archives
    with pgBackRest otherwise: the other deploys through lb1 take restore points)."""
    result, traffic = through_lb1(
        "--data",
        "app_version=v2.0.0-perf",
        "--data",
        "backup_method=pg_dump",
        "--data",
        "backup_copy_to=lb1",
    )
    text = output(result)
    assert result.returncode == 0, text[-3000:]
    assert traffic.unserved == 0, traffic
    backup = report(result, "app1")["facts"]["backup"]
    assert (
        backup["copy"] == f"lb1:/var/backups/monitoring-dashboard/{backup['path'].split('/')[-1]}"
    )
    kept = sh("lb1", f"stat -c %a {backup['copy'][4:]} && sha256sum {backup['copy'][4:]}")
    assert kept.split()[:2] == ["600", backup["sha256"]]
    assert versions() == dict.fromkeys(APPS, "2.0.0-perf")
    batches = {name: report(result, name)["facts"]["rollout"]["batch"] for name in APPS}
    assert batches == {"app1": 1, "app2": 2, "app3": 3}
    assert "batch 1/3 (canary) [app1]" in text and "drained on lb1" in text


def test_a_broken_release_stops_at_the_canary_and_no_user_sees_it(fleet):
    before = {name: serving_pid(name) for name in ("app2", "app3")}
    result, traffic = through_lb1("--data", "app_version=v2.0.1-broken", forbidden="2.0.1-broken")
    text = output(result)
    assert result.returncode != 0
    assert traffic.unserved == 0, traffic
    assert traffic.forbidden_answers == 0, traffic
    canary = report(result, "app1")
    assert canary["failure"].startswith("release: the new instance (slot ")
    for name in ("app2", "app3"):
        entry = report(result, name)
        assert "the rollout stopped at batch 1/3 (canary) [app1]" in entry["failure"]
        assert entry["facts"]["serving"] == entry["previous_release"]
    assert {name: serving_pid(name) for name in ("app2", "app3")} == before
    assert versions() == dict.fromkeys(APPS, "2.0.0-perf")
    assert "DEPLOY FAILED on app1" in text


def test_a_failed_batch_sends_the_switched_hosts_back(fleet):
    """app3 (the last batch) cannot start the new release: its idle slot's port is taken.
    app1 and app2 had switched; they go back, and lb1 never fails a request."""
    slot = sh("app3", "cat /app/monitoring-dashboard-api/slots/active")
    idle_port = 8082 if slot == "blue" else 8081
    squatter = (
        "import socket, time; s = socket.socket(); "
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
        f"s.bind(('127.0.0.1', {idle_port})); s.listen(); time.sleep(600)"
    )
    sh("app3", f"systemd-run --unit mdd-squatter python3 -c {json.dumps(squatter)}")
    listening = f"ss -Hltn 'sport = :{idle_port}' | grep -q ."
    sh("app3", f"for i in $(seq 100); do {listening} && break; sleep 0.1; done; {listening}")
    try:
        # v1.9.0 reads PostgreSQL on every request: whether the canary analysis lets it on
        # is not what this test is about
        result, traffic = through_lb1(
            "--data", "app_version=v1.9.0", "--data", "rollout_analysis=false"
        )
    finally:
        sh("app3", "systemctl stop mdd-squatter; systemctl reset-failed mdd-squatter || true")
    assert result.returncode != 0
    assert traffic.unserved == 0, traffic
    assert versions() == dict.fromkeys(APPS, "2.0.0-perf")
    assert "DEPLOY FAILED on app3" in output(result)
    for name in ("app1", "app2"):
        entry = report(result, name)
        assert "batch 3/3 [app3] failed (app3)" in entry["failure"]
        assert entry["rolled_back"] == [
            f"release: {entry['release']} -> {entry['previous_release']}"
        ]
        assert entry["facts"]["serving"] == entry["previous_release"]
    again = pyinfra(*QUICK, inventory=INVENTORY)
    assert again.returncode == 0, output(again)[-3000:]


def test_a_rolling_deploy_behind_a_health_check_only_balancer_fails_no_request(fleet):
    """lb_mode health_check: each host fails lb1's health check (its local proxy answers 503
    on the health path) and waits before it switches, as behind an ALB; lb1's admin socket
    is not used."""
    result, traffic = through_lb1("--data", "app_version=v1.9.0", "--data", "lb_mode=health_check")
    text = output(result)
    assert result.returncode == 0, text[-3000:]
    assert traffic.unserved == 0, traffic
    assert versions() == dict.fromkeys(APPS, "1.9.0")
    assert "failing the balancer's health check" in text and "drained on lb1" not in text
    backup = report(result, "app1")["facts"]["backup"]  # a restore point, under the same load
    assert backup["method"] == "pgbackrest" and backup["restore_point"].startswith("mdd_")


def test_one_host_of_the_fleet_alone_is_drained_on_lb1(fleet):
    """`--limit app2` leaves lb1 out of the run; the rollout still drains app2 on it."""
    result = pyinfra(
        "--data", "app_version=v2.0.0-perf", "--limit", "app2", *QUICK, inventory=INVENTORY
    )
    text = output(result)
    assert result.returncode == 0, text[-3000:]
    assert "drained on lb1" in text and "back in service on lb1" in text
    assert versions() == {"app1": "1.9.0", "app2": "2.0.0-perf", "app3": "1.9.0"}


def test_the_last_server_in_service_on_lb1_stays_in_and_no_request_fails(fleet):
    """app2 and app3 are in maintenance on lb1: app1 serves alone. Draining it would leave lb1
    no server; blue_green switches it in place instead."""
    socket = "/run/haproxy/admin.sock"
    others = ("app2", "app3")
    ready = "; ".join(f"set server app_servers/{n} state ready" for n in others)
    sh("lb1", haproxy.haproxy_api(socket, ready.replace("ready", "maint")))
    try:
        ref = "v1.9.0" if versions()["app1"] == "2.0.0-perf" else "v2.0.0-perf"
        result, traffic = through_lb1("--data", f"app_version={ref}", "--limit", "app1")
    finally:
        sh("lb1", haproxy.haproxy_api(socket, ready))
    text = output(result)
    assert result.returncode == 0, text[-3000:]
    assert traffic.unserved == 0, traffic
    assert "stays in service on lb1: no other server is in service there" in text
    assert versions()["app1"] == ref.lstrip("v")


@contextmanager
def cut_off(name: str, how: str = "unreachable"):
    """This machine (where pyinfra runs) loses its route to NAME: `unreachable` refuses new
    connections at once, `blackhole` silently drops every packet, established SSH included.
    lb1 and the other hosts still reach NAME over the lab's bridge."""
    address = hosts()[name].address
    subprocess.run(["ip", "route", "add", how, f"{address}/32"], check=True)
    try:
        yield
    finally:
        subprocess.run(["ip", "route", "del", f"{address}/32"], check=True)


def test_an_unreachable_host_stops_the_deploy_before_any_change(fleet):
    before = versions()
    with cut_off("app3"):
        result, traffic = through_lb1("--data", "app_version=v2.0.0-perf")
    text = output(result)
    assert result.returncode != 0
    assert "app host(s) app3 unreachable, and rollout_max_fail is 0" in text
    assert "nothing was changed" in text and "--data rollout_max_fail=1" in text
    assert traffic.unserved == 0, traffic
    assert versions() == before


def test_within_rollout_max_fail_the_reachable_hosts_are_deployed(fleet):
    with cut_off("app3"):
        result, traffic = through_lb1(
            "--data", "app_version=v2.0.0-perf", "--data", "rollout_max_fail=1"
        )
    text = output(result)
    assert "app3 unreachable: not deployed (within rollout_max_fail 1)" in text
    assert "deploy.py --limit app3" in text
    assert traffic.unserved == 0, traffic
    assert versions() == {"app1": "2.0.0-perf", "app2": "2.0.0-perf", "app3": "1.9.0"}
    finish = pyinfra(
        "--data", "app_version=v2.0.0-perf", "--limit", "app3", *QUICK, inventory=INVENTORY
    )
    assert finish.returncode == 0, output(finish)[-3000:]
    assert versions() == dict.fromkeys(APPS, "2.0.0-perf")


def lb_status(server: str) -> str:
    stat = haproxy.haproxy_api("/run/haproxy/admin.sock", "show stat")
    return sh("lb1", f"{stat} | awk -F, '$2 == \"{server}\" {{print $18}}'")


def test_ssh_lost_during_a_switch_sends_the_batch_back_and_no_request_fails(fleet):
    """app2's SSH goes silent for 90 s once lb1 has drained it: its switch times out, app2 is
    put back in service on lb1, app1 (switched in the batch before) goes back, app3 is never
    touched, and a re-run converges."""
    app3_pid = serving_pid("app3")
    with Load(f"http://{hosts()['lb1'].address}:80", 100, "220s") as load:
        proc = start("--data", "app_version=v1.9.0", *QUICK, inventory=INVENTORY)
        deadline = time.monotonic() + 150
        while lb_status("app2") not in ("DRAIN", "MAINT"):
            assert proc.poll() is None and time.monotonic() < deadline, "app2 never drained"
            time.sleep(0.1)
        with cut_off("app2", "blackhole"):
            time.sleep(90)  # longer than any one remote command may take (60 s)
        out, _ = proc.communicate(timeout=400)
        traffic = load.result(stop_early=True)
    assert proc.returncode != 0, out[-3000:]
    assert "app2" in out and ("timed out" in out or "lost its connection" in out), out[-3000:]
    assert "every host this run switched goes back" in out
    assert traffic.unserved == 0, traffic
    now = versions()
    assert (now["app1"], now["app3"]) == ("2.0.0-perf", "2.0.0-perf")
    assert now["app2"] in ("1.9.0", "2.0.0-perf")  # how far its switch got before the cut
    assert serving_pid("app3") == app3_pid
    assert lb_status("app2") == "UP"
    again = pyinfra("--data", "app_version=v1.9.0", *QUICK, inventory=INVENTORY)
    assert again.returncode == 0, output(again)[-3000:]
    assert versions() == dict.fromkeys(APPS, "1.9.0")


def test_the_redis_endpoint_going_down_in_the_monitoring_window_is_reported(fleet):
    """Not the release's fault: the service serves from PostgreSQL, users see nothing, the
    deploy succeeds and says Redis was unreachable; no rollback."""
    # a rolling deploy takes well under WINDOW; this one adds a 12 s window and the restart
    with Load(f"http://{hosts()['lb1'].address}:80", 100, f"{WINDOW + 35}s") as load:
        proc = start(
            "--data",
            "app_version=v2.0.0-perf",
            "--data",
            "loadtest_enabled=false",
            "--data",
            "monitor_duration=12",
            inventory=INVENTORY,
        )
        try:
            seen = wait_for_line(proc, "monitoring for 12s", 240)
            core.ssh(hosts()["cache1"], "systemctl stop redis-server")
            out = seen + proc.communicate(timeout=300)[0]
        finally:
            core.ssh(hosts()["cache1"], "systemctl start redis-server")
        traffic = load.result(stop_early=True)
    failures = [x for x in out.splitlines() if "failed" in x or x.startswith("  - ")]
    assert proc.returncode == 0, "\n".join(failures[-30:]) + out[-2000:]
    assert "WARNING: Redis unreachable in" in out
    assert traffic.unserved == 0, traffic
    assert versions() == dict.fromkeys(APPS, "2.0.0-perf")


def test_a_slower_release_is_rejected_at_the_canary_and_no_other_host_restarts(fleet):
    """v2.0.2-slow passes every threshold of the checklist; only the comparison with app2 and
    app3, still on v2.0.0-perf, under the same traffic through lb1, catches it."""
    assert versions() == dict.fromkeys(APPS, "2.0.0-perf")
    before = {name: serving_pid(name) for name in ("app2", "app3")}
    result, traffic = through_lb1(
        "--data",
        "app_version=v2.0.2-slow",
        "--data",
        "rollout_analysis=true",
        "--data",
        "rollout_analysis_seconds=20",
    )
    text = output(result)
    assert result.returncode != 0, text[-3000:]
    assert traffic.unserved == 0, traffic
    canary = report(result, "app1")
    assert canary["failure"].startswith("analysis: canary analysis: fail (worse: latency)")
    judged = canary["facts"]["canary_analysis"]
    assert judged["rejected"] and judged["requests"]["canary"] >= 200
    assert judged["source"] == "the balancer's log"  # lb1's ring (lb_haproxy_ring)
    assert judged["canary_ms"][2] >= judged["baseline_ms"][2] + 10  # the medians, 15 ms apart
    for name in ("app2", "app3"):
        assert "(the canary analysis rejected it)" in report(result, name)["failure"]
    assert {name: serving_pid(name) for name in ("app2", "app3")} == before
    assert versions() == dict.fromkeys(APPS, "2.0.0-perf")
    assert "latency FAIL: canary median" in text and "p=" in text

    listed = pyinfra(script="releases.py", inventory=INVENTORY)
    assert listed.returncode == 0, output(listed)[-3000:]
    app1_rows = output(listed).split("--> Releases on app1", 1)[1].split("--> Releases on", 1)[0]
    slow = [line for line in app1_rows.splitlines() if "v2.0.2-slow-" in line]
    assert slow and "rejected" in slow[0], app1_rows


def test_a_quick_rollback_after_a_rejected_deploy_skips_the_rejected_release(fleet):
    """app1's newest deploy was v2.0.2-slow, rejected: the rollback passes over it to the
    release served before v2.0.0-perf, on every host."""
    result = pyinfra(*QUICK, script="rollback.py", inventory=INVENTORY)
    text = output(result)
    assert result.returncode == 0, text[-3000:]
    assert versions() == dict.fromkeys(APPS, "1.9.0")


def test_drift_finds_nothing_on_the_fleet_then_names_the_one_host_whose_proxy_was_edited(fleet):
    """After the runs above (deploys, a rejected canary, a quick rollback to a release older
    than the migrations applied), every host is as its last run left it; an edit of app2's
    proxy.cfg is found on app2 alone."""
    clean = pyinfra(script="drift.py", inventory=INVENTORY)
    assert clean.returncode == 0, output(clean)[-3000:]
    assert output(clean).count("no drift") == len(APPS)
    cfg = "/etc/monitoring-dashboard/proxy.cfg"
    sh("app2", f"cp -p {cfg} /root/proxy.cfg.kept && echo '# edited by hand' >> {cfg}")
    try:
        edited = pyinfra(script="drift.py", inventory=INVENTORY)
    finally:
        sh("app2", f"mv /root/proxy.cfg.kept {cfg}")
    lines = [x for x in output(edited).splitlines() if "DRIFT" in x]
    assert edited.returncode != 0
    assert len(lines) == 1 and "[app2]" in lines[0] and f"file {cfg}" in lines[0], lines
