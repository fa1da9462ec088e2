"""Notifications: a Slack-compatible receiver the test runs on the lab's bridge gets one
message when a deploy or rollback starts and one when it ends (succeeded, failed, rolled back
by itself), with environment, version, who and duration, never a secret; a receiver that is
down never fails a deploy."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from pyinfra_runs import QUICK, output, pyinfra

from lab import core
from lab.topology import BRIDGE_ADDRESS


class Receiver(BaseHTTPRequestHandler):
    texts: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.texts.append(json.loads(body)["text"])
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def hook(lab):
    server = HTTPServer((str(BRIDGE_ADDRESS), 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://{BRIDGE_ADDRESS}:{server.server_port}/hooks/T0K3N"
    converged = pyinfra(*QUICK)
    assert converged.returncode == 0, output(converged)[-3000:]
    yield {"NOTIFY_WEBHOOK_URL": url}
    server.shutdown()


def told(run) -> list[str]:
    texts, Receiver.texts = Receiver.texts, []
    secret = core.secret_file("db_password").read_text().strip()
    assert not any(secret in text for text in texts)
    return texts


def test_a_deploy_is_announced_when_it_starts_and_when_it_succeeds(hook):
    result = pyinfra(*QUICK, "--data", "report_deployed_by=notify-test", env=hook)
    assert result.returncode == 0, output(result)[-3000:]
    texts = told(result)
    assert len(texts) == 2
    assert texts[0].startswith("deploy lab v2.0.0-perf: started (by notify-test, ")
    assert texts[1].startswith("deploy lab v2.0.0-perf: succeeded (by notify-test, ")


def test_a_deploy_that_rolls_back_by_itself_says_so_and_names_the_failing_check(hook):
    result = pyinfra(
        *QUICK, "--data", "app_version=v1.9.0", "--data", "verify_max_db_connections=1", env=hook
    )
    assert result.returncode != 0
    texts = told(result)
    assert texts[0].startswith("deploy lab v1.9.0: started")
    assert texts[1].startswith("deploy lab v1.9.0: failed, rolled back by itself on app1")
    assert "verify: verification failed" in texts[1] and "connections to" in texts[1]
    assert len(texts) == 2


def test_a_rollback_is_announced(hook):
    pyinfra(*QUICK, "--data", "app_version=v1.9.0")
    result = pyinfra(script="rollback.py", env=hook)
    assert result.returncode == 0, output(result)[-3000:]
    texts = told(result)
    name = texts[0].split()[2].rstrip(":")
    assert name.startswith("v2.0.0-perf-")
    assert [text.split(" (by")[0] for text in texts] == [
        f"rollback lab {name}: started",
        f"rollback lab {name}: succeeded",
    ]


def test_a_receiver_that_is_down_never_fails_a_deploy(hook):
    closed = socket.socket()
    closed.bind((str(BRIDGE_ADDRESS), 0))  # a port nobody listens on
    port = closed.getsockname()[1]
    closed.close()
    result = pyinfra(*QUICK, env={"NOTIFY_WEBHOOK_URL": f"http://{BRIDGE_ADDRESS}:{port}/x"})
    assert result.returncode == 0, output(result)[-3000:]
    assert "notification not sent (URLError); the run goes on" in output(result)
    assert f":{port}/x" not in output(result)  # the URL (it may hold a token) is never shown
