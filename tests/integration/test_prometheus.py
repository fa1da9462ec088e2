"""The lab's Prometheus (production mon1) as a monitoring team queries it: every run pushes its
metrics to mon1's Pushgateway, which Prometheus scrapes beside lb1's HAProxy exporter every
second. Checked from outside, with PromQL over Prometheus' HTTP API: each run's outcome and
duration, the release every app host serves (against the host's own `current`), `promtool
check metrics` on what the runs exported, no secret in it; and the canary analysis judging from
Prometheus (`rollout_analysis_source: prometheus`) under k6's load through lb1: a canary paused
from outside part of the time is rejected, an A/A canary passes, no request fails."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request

import pytest
from pyinfra_runs import LEAD, QUICK, output, pyinfra, report, start, under_load, wait_for_line

from lab import core
from lab.commands import PROMETHEUS_PORT, PUSHGATEWAY_PORT
from lab.load import Load

INVENTORY = "inventories/lab_production.py"
APPS = ("app1", "app2", "app3")
PREFIX = "monitoring_dashboard_deploy"
ENV = 'env="lab-production"'
WINDOW = 120  # seconds of k6 load around one canary deploy
JUDGED_BY_PROMETHEUS = (
    "--data",
    "rollout_analysis=true",
    "--data",
    "rollout_analysis_source=prometheus",
    "--data",
    "rollout_analysis_seconds=20",
)


def hosts() -> dict:
    return {h.name: h for h in core.hosts_of("production")}


def sh(name: str, command: str) -> str:
    return core.ssh(hosts()[name], command).stdout.decode().strip()


def promql(query: str) -> list[dict]:
    """Prometheus' answer to QUERY now (an instant vector's series)."""
    url = f"http://{hosts()['mon1'].address}:{PROMETHEUS_PORT}/api/v1/query?"
    with urllib.request.urlopen(url + urllib.parse.urlencode({"query": query}), timeout=10) as a:
        answer = json.loads(a.read())
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def single_value(query: str) -> float:
    [series] = promql(query)
    return float(series["value"][1])


def served_releases() -> dict[str, str]:
    """The release each app host's `current` points at, read on the host."""
    current = "/app/monitoring-dashboard-api/current"
    return {name: sh(name, f"readlink {current}").rsplit("/", 1)[-1] for name in APPS}


def releases_in_prometheus() -> dict[str, str]:
    found = promql(f"{PREFIX}_release_info{{{ENV}}}")
    return {s["metric"]["host"]: s["metric"]["release"] for s in found}


def assert_prometheus_knows_what_each_host_serves(timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while releases_in_prometheus() != served_releases():
        assert time.monotonic() < deadline, (releases_in_prometheus(), served_releases())
        time.sleep(1)


def run(kind: str, *args: str, script: str = "deploy.py") -> tuple[float, float, str]:
    """A run, then (its outcome and its duration as Prometheus answers them, its output), once
    Prometheus holds this run's figures (the gateway is scraped every second; bounded)."""
    since = time.time()
    result = pyinfra(*args, script=script, inventory=INVENTORY)
    selector = f'{{{ENV},kind="{kind}"}}'
    deadline = time.monotonic() + 30
    while not promql(f"{PREFIX}_run_end_timestamp_seconds{selector} >= {since}"):
        assert time.monotonic() < deadline, f"no {kind} run after {since}: {output(result)[-2000:]}"
        time.sleep(1)
    success = single_value(f"{PREFIX}_run_success{selector}")
    duration = single_value(f"{PREFIX}_run_duration_seconds{selector}")
    return success, duration, output(result)


@pytest.fixture(scope="module")
def production(lab):
    """lab production with three app hosts behind lb1, all serving v2.0.0-perf."""
    core.up("production", echo=lambda _m: None, app_hosts=3)
    first = pyinfra("--data", "app_version=v2.0.0-perf", *QUICK, inventory=INVENTORY)
    assert first.returncode == 0, output(first)[-3000:]


def test_prometheus_answers_for_each_runs_outcome_duration_and_the_release_each_host_serves(
    production,
):
    ok, took, text = run("deploy", "--data", "app_version=v1.9.0", *QUICK)
    assert ok == 1 and took > 1, text[-3000:]
    assert_prometheus_knows_what_each_host_serves()
    releases = set(served_releases().values())
    assert len(releases) == 1 and releases.pop().startswith("v1.9.0-")

    ok, took, text = run("deploy", "--data", "app_version=v2.0.1-broken", *QUICK)
    assert ok == 0 and took > 1, text[-3000:]
    assert single_value(f'{PREFIX}_host_success{{{ENV},kind="deploy",host="app1"}}') == 0
    assert_prometheus_knows_what_each_host_serves()

    ok, took, text = run("rollback", *QUICK, script="rollback.py")
    assert ok == 1 and took > 1, text[-3000:]
    assert_prometheus_knows_what_each_host_serves()
    assert all(r.startswith("v2.0.0-perf-") for r in served_releases().values())

    ok, took, text = run("restore-drill", "--data", "runbook=restore-drill", script="runbook.py")
    assert ok == 1 and took > 1, text[-3000:]
    assert "PASSED" in text

    # every app host's local proxy answers Prometheus (metrics_proxy_port), as lb1 does
    scraped = promql('up{job=~"app_proxy|balancer"} == 1')
    assert sorted(s["metric"]["instance"] for s in scraped) == sorted(
        f"{hosts()[name].address}:8405" for name in (*APPS, "lb1")
    )
    proxies = promql('count by (instance) (haproxy_server_status{proxy="slots"})')
    assert len(proxies) == len(APPS), proxies

    mon1 = hosts()["mon1"]
    exported = core.ssh(
        mon1,
        f"curl -s -m 5 localhost:{PUSHGATEWAY_PORT}/metrics "
        f"| grep -E '^(# (HELP|TYPE) )?{PREFIX}_'",
    ).stdout.decode()
    assert f"{PREFIX}_phase_duration_seconds{{" in exported
    checked = core.ssh(mon1, "promtool check metrics", input=exported.encode(), check=False)
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
    for name in ("db_password", "redis_password"):
        assert core.secret_file(name).read_text().strip() not in exported


def pause_part_of_the_time(name: str, pid: str, seconds: int) -> None:
    """Process PID on host NAME stopped 0.3 s of every second for SECONDS (bounded), then
    surely running again."""
    core.ssh(
        hosts()[name],
        f"trap 'kill -CONT {pid}' EXIT; for i in $(seq {seconds}); do "
        f"kill -STOP {pid}; sleep 0.3; kill -CONT {pid}; sleep 0.7; done",
        timeout=seconds + 20,
    )


def serving_pid(name: str) -> str:
    slot = sh(name, "cat /app/monitoring-dashboard-api/slots/active")
    return sh(name, f"systemctl show -p MainPID --value monitoring-dashboard@{slot}")


def test_an_a_to_a_canary_passes_and_one_paused_from_outside_is_rejected_by_prometheus(
    production,
):
    """`main` and v2.0.0-perf are the same commit in two release folders: the canary runs the
    baseline's code, so only the pauses can make it worse. HAProxy's averages cover each
    server's last 1024 requests: 300 requests/s for 12 s first give every server fresh ones
    (earlier tests sent slower releases through lb1)."""
    url = f"http://{hosts()['lb1'].address}:80"
    with Load(url, 300, "12s") as warm:
        assert warm.result().unserved == 0

    result, traffic = under_load(
        url, "--data", "app_version=main", *JUDGED_BY_PROMETHEUS, window=WINDOW, inventory=INVENTORY
    )
    text = output(result)
    assert result.returncode == 0, text[-3000:]
    judged = report(result, "app1")["facts"]["canary_analysis"]
    assert (judged["result"], judged["rejected"]) == ("pass", False), judged
    assert judged["source"] == "Prometheus (the balancer's HAProxy exporter)"
    before = served_releases()
    assert all(r.startswith("main-") for r in before.values())
    assert traffic.unserved == 0, traffic

    with Load(url, 100, f"{WINDOW}s") as load:
        time.sleep(LEAD)
        proc = start(
            "--data", "app_version=v2.0.0-perf", *JUDGED_BY_PROMETHEUS, *QUICK, inventory=INVENTORY
        )
        wait_for_line(proc, "take real traffic beside", timeout=90)
        pause_part_of_the_time("app1", serving_pid("app1"), 18)
        out, _ = proc.communicate(timeout=120)
        traffic = load.result(stop_early=True)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, "")
    judged = report(result, "app1")["facts"]["canary_analysis"]
    assert proc.returncode != 0, judged
    assert report(result, "app1")["failure"].startswith(
        "analysis: canary analysis: fail (worse: latency)"
    ), judged
    assert judged["source"] == "Prometheus (the balancer's HAProxy exporter)"
    assert judged["rejected"] and judged["requests"]["canary"] >= 200
    assert served_releases() == before
    assert traffic.unserved == 0, traffic
