"""Metrics, annotations and traces of real runs on the lab's staging: a receiver the test runs
stands in for the Pushgateway and Grafana (it records what it received), the trace goes to a
file, and app1 gets node_exporter's textfile. Checked: what each says of a deploy that
succeeded and of one that failed its verification, and that no secret is in any of them."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pyinfra_runs import QUICK, output, pyinfra, staging_app1

from lab import core

TEXTFILE = "/var/lib/node-exporter/monitoring_dashboard_deploy.prom"


class Receiver(BaseHTTPRequestHandler):
    received: list[tuple[str, str, str, bytes]] = []

    def _record(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        auth = self.headers.get("Authorization", "")
        Receiver.received.append((self.command, self.path, auth, body))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    do_PUT = do_POST = _record

    def log_message(self, *args) -> None:
        pass


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture(scope="module")
def receiver(lab, tmp_path_factory):
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    trace = tmp_path_factory.mktemp("trace") / "trace.jsonl"
    core.ssh(staging_app1(), "mkdir -p /var/lib/node-exporter")
    args = (
        *QUICK,
        "--data",
        f"metrics_pushgateway={url}",
        "--data",
        f"grafana_url={url}",
        "--data",
        f"otel_exporter=file:{trace}",
        "--data",
        "metrics_textfile_dir=/var/lib/node-exporter",
    )
    os.environ["GRAFANA_TOKEN"] = "glsa_lab_token"
    yield args, trace
    del os.environ["GRAFANA_TOKEN"]
    server.shutdown()


def test_a_deploy_and_a_failed_one_as_metrics_annotations_and_traces(receiver):
    args, trace = receiver
    Receiver.received = []
    ok = pyinfra(*args, "--data", "app_version=v2.0.0-perf")
    assert ok.returncode == 0, output(ok)[-3000:]
    current = core.ssh(staging_app1(), "readlink /app/monitoring-dashboard-api/current")
    served = current.stdout.decode().strip().rsplit("/", 1)[-1]
    pushes = [r for r in Receiver.received if r[0] == "PUT"]
    notes = [r for r in Receiver.received if r[1] == "/api/annotations"]
    assert [p[1] for p in pushes] == [
        "/metrics/job/monitoring_dashboard_deploy/env/lab/kind/deploy",
        "/metrics/job/monitoring_dashboard_deploy/env/lab/host/app1",
    ]
    pushed = samples(pushes[0][3].decode())
    assert pushed[("monitoring_dashboard_deploy_run_success", (("env", "lab"), ("kind", "deploy")))]
    [labels] = [k[1] for k in samples(pushes[1][3].decode())]
    assert dict(labels) == {"env": "lab", "host": "app1", "release": served}
    assert served.startswith("v2.0.0-perf-")
    [note] = notes
    assert note[2] == "Bearer glsa_lab_token"
    assert json.loads(note[3])["tags"] == [
        "monitoring-dashboard-deploy",
        "lab",
        "deploy",
        "succeeded",
    ]
    textfile = core.ssh(staging_app1(), f"stat -c %a {TEXTFILE} && cat {TEXTFILE}").stdout.decode()
    mode, _, text = textfile.partition("\n")
    assert mode == "644"
    assert any(k[0] == "monitoring_dashboard_deploy_phase_duration_seconds" for k in samples(text))

    Receiver.received = []
    before = len(trace.read_text().splitlines())
    bad = pyinfra(*args, "--data", "app_version=v1.9.0", "--data", "verify_max_db_connections=1")
    assert bad.returncode == 1, output(bad)[-3000:]
    [note] = [r for r in Receiver.received if r[1] == "/api/annotations"]
    assert json.loads(note[3])["tags"][-1] == "failed"
    spans = [json.loads(line) for line in trace.read_text().splitlines()[before:]]
    failed = [s for s in spans if s["status"]["status_code"] == "ERROR"]
    names = {s["name"] for s in failed}
    assert {"app1", "verify"} <= names and any(n.startswith("deploy lab v1.9.0") for n in names)
    check = [s for s in failed if s["name"] == "app1"][0]["attributes"]["mdd.failed_check"]
    assert check.startswith("verify:")
    phases = {
        s["name"] for s in spans if s["parent_id"] and s["attributes"].get("mdd.phase") is None
    }
    assert {"preflight", "build", "verify"} <= phases
    events = [e for s in spans if s["name"] == "app1" for e in s["events"]]
    assert events and all(e["attributes"]["mdd.seconds"] >= 0 for e in events)
    assert {"taking the lock", "pg_dump", "counting the database's connections"} <= {
        e["name"] for e in events
    }  # the remote commands, named by what they were for

    secret = core.secret_file("db_password").read_text().strip()
    everything = trace.read_text() + text + "".join(r[3].decode() for r in Receiver.received)
    assert secret not in everything
