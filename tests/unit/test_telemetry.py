"""Metrics and annotations (tasks/telemetry.py): the exposition read back with the Prometheus
client's own parser, a push and an annotation received by a local HTTP server."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tasks import config, telemetry
from tasks.dora import Dora

S, _ = config.validate(
    {"deploy_env": "lab", "app_repo_url": "git://x/r.git", "db_host": "db"}, {"DB_PASSWORD": "pw"}
)
RUN = telemetry.RunEnd(
    env="lab",
    kind="deploy",
    version="v2.0.0-perf",
    seconds=41.5,
    ended_at=1765000000.0,
    hosts={
        "app1": telemetry.HostEnd(True, 40.0, {"preflight": 2.5, "release": 12.0}, "v2.0.0-abc"),
        "app2": telemetry.HostEnd(False, 30.0, {"preflight": 2.0}, "v1.9.0-def"),
    },
)


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_run_its_hosts_phases_and_releases_as_metrics():
    found = samples(telemetry.exposition(RUN))
    run = (("env", "lab"), ("kind", "deploy"))
    assert found[("monitoring_dashboard_deploy_run_success", run)] == 0
    assert found[("monitoring_dashboard_deploy_run_duration_seconds", run)] == 41.5
    assert found[("monitoring_dashboard_deploy_run_hosts", run)] == 2
    assert (
        found[("monitoring_dashboard_deploy_host_success", (*run[:1], ("host", "app1"), *run[1:]))]
        == 1
    )
    phase = (("env", "lab"), ("host", "app1"), ("kind", "deploy"), ("phase", "release"))
    assert found[("monitoring_dashboard_deploy_phase_duration_seconds", phase)] == 12.0
    assert not any(name.endswith("release_info") for name, _ in found)  # each host's own group
    release = (("env", "lab"), ("host", "app2"), ("release", "v1.9.0-def"))
    served = samples(generate_latest(telemetry.serving(RUN, "app2")).decode())
    assert served == {("monitoring_dashboard_deploy_release_info", release): 1}


def test_a_hosts_textfile_holds_its_own_part_only():
    text = telemetry.exposition(RUN, only="app1")
    names = {name for name, _ in samples(text)}
    assert not any(n.startswith("monitoring_dashboard_deploy_run_") for n in names)
    assert "app2" not in text and 'host="app1"' in text
    assert 'release_info{env="lab",host="app1",release="v2.0.0-abc"} 1.0' in text


class Recorder(BaseHTTPRequestHandler):
    received: list[tuple[str, str, dict, bytes]] = []

    def _record(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.received.append((self.command, self.path, dict(self.headers), body))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    do_PUT = do_POST = _record

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    Recorder.received = []
    httpd = HTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}", Recorder.received
    httpd.shutdown()


def test_a_push_goes_to_the_gateway_grouped_by_environment_and_kind(server):
    url, received = server
    group = {"env": "lab", "kind": "deploy"}
    assert telemetry.push(replace(S, metrics_pushgateway=url), telemetry.registry(RUN), group)
    [(method, path, _, body)] = received
    assert (method, path) == ("PUT", "/metrics/job/monitoring_dashboard_deploy/env/lab/kind/deploy")
    assert (
        samples(body.decode())[
            (
                "monitoring_dashboard_deploy_run_duration_seconds",
                (("env", "lab"), ("kind", "deploy")),
            )
        ]
        == 41.5
    )


def test_an_annotation_is_posted_with_the_token(server, monkeypatch):
    url, received = server
    monkeypatch.setenv("GRAFANA_TOKEN", "glsa_token")
    body = telemetry.annotation("lab", "deploy", "v2.0.0-perf", "succeeded", 1765000000.5, "")
    assert telemetry.annotate(replace(S, grafana_url=url + "/"), body)
    [(method, path, headers, sent)] = received
    assert (method, path, headers["Authorization"]) == (
        "POST",
        "/api/annotations",
        "Bearer glsa_token",
    )
    assert json.loads(sent) == {
        "time": 1765000000500,
        "tags": ["monitoring-dashboard-deploy", "lab", "deploy", "succeeded"],
        "text": "deploy lab v2.0.0-perf: succeeded",
    }


def test_nothing_reachable_is_a_warning_never_a_failure(capsys):
    nowhere = "http://127.0.0.1:9"  # discard: nothing listens
    assert not telemetry.push(replace(S, metrics_pushgateway=nowhere), telemetry.registry(RUN), {})
    body = telemetry.annotation("lab", "rollback", "v1.9.0", "failed", 0, "failed on app2")
    assert not telemetry.annotate(replace(S, grafana_url=nowhere), body)
    said = capsys.readouterr().err
    assert "metrics not pushed" in said and "Grafana annotation not posted" in said
    assert "glsa" not in said


def test_urls_are_checked_with_the_other_variables():
    _, problems = config.validate(
        {
            "deploy_env": "lab",
            "app_repo_url": "git://x/r.git",
            "db_host": "db",
            "metrics_pushgateway": "gateway:9091",
            "grafana_url": "https://grafana.example",
        },
        {"DB_PASSWORD": "pw"},
    )
    assert problems == ["metrics_pushgateway: an http:// or https:// URL, got 'gateway:9091'"]


def test_doras_keys_as_gauges_and_an_unknown_key_left_out():
    figures = Dora(30, 9, 12, 3, 0.3, 7560.0, 0.25, None)
    found = samples(generate_latest(telemetry.dora_registry("lab", figures)).decode())
    labels = (("env", "lab"), ("window_days", "30"))
    assert found[("monitoring_dashboard_deploy_dora_deploys_per_day", labels)] == 0.3
    assert found[("monitoring_dashboard_deploy_dora_lead_time_seconds", labels)] == 7560
    assert found[("monitoring_dashboard_deploy_dora_change_failure_ratio", labels)] == 0.25
    assert found[("monitoring_dashboard_deploy_dora_failed_changes", labels)] == 3
    assert not any("time_to_restore" in name for name, _ in found)
