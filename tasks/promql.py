"""The canary's figures from Prometheus (`rollout_analysis_source: prometheus`): what the
lb_servers HAProxy's built-in exporter says of each server, as the team's Prometheus scraped
it, read through Prometheus' HTTP API over the analysis window.

- latency: every scraped value of `haproxy_server_response_time_average_seconds` (HAProxy's
  average time to the server's answer over its last 1024 requests; the total time would count
  the clients' idle keep-alive) in the window, raw samples (a range selector, so a slow scrape
  interval does not repeat values);
- requests: the increase of `haproxy_server_http_responses_total` plus the connection errors;
- errors: the increase of its `5xx` class plus `haproxy_server_connection_errors_total`.

HAProxy 2.6's exporter has no latency histogram: the judge compares the two sides' series of
averages with the same tests and margins as the log's requests (tasks/analysis.py).
"""

from __future__ import annotations

import json
import math
import re
import urllib.parse
import urllib.request
from typing import Any

from tasks.analysis import Sample
from tasks.remote import DeployError

TIMEOUT = 10  # seconds one query may take
LATENCY = "haproxy_server_response_time_average_seconds"
RESPONSES = "haproxy_server_http_responses_total"
CONNECTION_ERRORS = "haproxy_server_connection_errors_total"


def selector(metric: str, backend: str, servers: list[str], **labels: str) -> str:
    """METRIC of the SERVERS of BACKEND (HAProxy's `proxy` label), with LABELS. The names
    are matched exactly: escaped for the regular expression, then for PromQL's string."""
    names = "|".join(re.escape(name).replace("\\", "\\\\") for name in servers)
    extra = "".join(f',{k}="{v}"' for k, v in labels.items())
    return f'{metric}{{proxy="{backend}",server=~"{names}"{extra}}}'


def counted(metric: str, backend: str, servers: list[str], seconds: int, **labels: str) -> str:
    """PromQL: how much METRIC grew over the last SECONDS, summed over SERVERS (0 when there
    is no series)."""
    return f"sum(increase({selector(metric, backend, servers, **labels)}[{seconds}s])) or vector(0)"


def query(base: str, promql: str, at: float) -> dict[str, Any]:
    """Prometheus' answer to PROMQL evaluated at AT (epoch seconds): its `data`."""
    url = f"{base.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode(
        {"query": promql, "time": f"{at:.3f}"}
    )
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as answer:
            document = json.loads(answer.read())
    except (OSError, ValueError) as exc:  # refused, timed out, an HTTP error, not JSON
        raise DeployError(f"Prometheus did not answer ({type(exc).__name__}: {exc})") from exc
    if document.get("status") != "success":
        raise DeployError(f"Prometheus refused {promql!r}: {document.get('error', document)}")
    return document["data"]


def scalar(data: dict[str, Any]) -> float:
    """The single value of an instant vector's answer (0 when it is empty)."""
    values = [float(series["value"][1]) for series in data.get("result", [])]
    return sum(v for v in values if math.isfinite(v))


def samples_ms(data: dict[str, Any]) -> list[float]:
    """Every sample of a range selector's answer (a matrix), in milliseconds."""
    return [
        float(value) * 1000
        for series in data.get("result", [])
        for _, value in series.get("values", [])
        if math.isfinite(float(value))
    ]


def side(base: str, backend: str, servers: list[str], seconds: int, at: float) -> Sample:
    """What SERVERS of BACKEND answered in the SECONDS before AT, as the judge reads it."""
    latency = query(base, f"{selector(LATENCY, backend, servers)}[{seconds}s]", at)
    answered = scalar(query(base, counted(RESPONSES, backend, servers, seconds), at))
    failed = scalar(query(base, counted(RESPONSES, backend, servers, seconds, code="5xx"), at))
    refused = scalar(query(base, counted(CONNECTION_ERRORS, backend, servers, seconds), at))
    return Sample(
        latencies_ms=samples_ms(latency),
        errors=round(failed + refused),
        counted=round(answered + refused),
    )
