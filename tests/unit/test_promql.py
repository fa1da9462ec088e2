"""The canary's figures from Prometheus (tasks/promql.py): the PromQL it sends, how answers
become a Sample, and a Prometheus that refuses or does not answer."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from tasks import analysis, promql
from tasks.remote import DeployError


def test_the_selector_names_the_backend_and_each_server_exactly():
    assert (
        promql.selector(promql.RESPONSES, "app_servers", ["app1", "app.2"], code="5xx")
        == 'haproxy_server_http_responses_total{proxy="app_servers",server=~"app1|app\\\\.2",'
        'code="5xx"}'
    )
    assert promql.counted(promql.RESPONSES, "be", ["app1"], 20) == (
        'sum(increase(haproxy_server_http_responses_total{proxy="be",server=~"app1"}[20s])) '
        "or vector(0)"
    )


def test_answers_become_milliseconds_and_counts():
    matrix = {
        "resultType": "matrix",
        "result": [
            {"metric": {"server": "app2"}, "values": [[1.0, "0.002"], [2.0, "0.004"]]},
            {"metric": {"server": "app3"}, "values": [[1.0, "NaN"], [2.0, "0.003"]]},
        ],
    }
    assert promql.samples_ms(matrix) == [2.0, 4.0, 3.0]
    vector = {"resultType": "vector", "result": [{"metric": {}, "value": [2.0, "412.5"]}]}
    assert promql.scalar(vector) == 412.5
    assert promql.scalar({"resultType": "vector", "result": []}) == 0


def test_a_sample_from_counters_counts_its_requests_not_its_latency_points():
    sample = analysis.Sample(latencies_ms=[2.0, 3.0], errors=1, counted=400)
    assert sample.requests == 400 and sample.error_rate == 1 / 400
    assert analysis.Sample(latencies_ms=[2.0, 3.0]).requests == 2


class FakePrometheus(BaseHTTPRequestHandler):
    """Answers every query as Prometheus would: a range selector with two samples per server,
    the increases with fixed figures; records the queries."""

    queries: list[str] = []

    def do_GET(self) -> None:
        query = parse_qs(urlparse(self.path).query)["query"][0]
        self.queries.append(query)
        if query.endswith("[20s]"):
            data = {"resultType": "matrix", "result": [{"values": [[1, "0.010"], [2, "0.030"]]}]}
        else:
            value = "3" if "5xx" in query else "1" if "connection_errors" in query else "600"
            data = {"resultType": "vector", "result": [{"value": [2, value]}]}
        body = json.dumps({"status": "success", "data": data}).encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def prometheus():
    FakePrometheus.queries = []
    httpd = HTTPServer(("127.0.0.1", 0), FakePrometheus)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}/"
    httpd.shutdown()


def test_one_side_read_through_the_http_api(prometheus):
    side = promql.side(prometheus, "app_servers", ["app1"], 20, 1765000000.0)
    assert side.latencies_ms == [10.0, 30.0]
    assert (side.requests, side.errors) == (601, 4)  # connection errors are requests and errors
    assert FakePrometheus.queries[0] == (
        'haproxy_server_response_time_average_seconds{proxy="app_servers",server=~"app1"}[20s]'
    )


def test_a_prometheus_that_refuses_or_is_not_there_is_a_deploy_error():
    with pytest.raises(DeployError, match="Prometheus did not answer"):
        promql.query("http://127.0.0.1:9", "up", 0)  # discard: nothing listens
