from html.parser import HTMLParser

from tasks.report_html import html_report, nice_ticks, shown


class Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.sources: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.sources += [v for k, v in attrs if k in ("src", "href")]

    def handle_data(self, data):
        self.text.append(data)


def _record(batch: int, status: str, failure: str, series: list) -> dict:
    return {
        "status": status,
        "version": "v2.0.0-perf",
        "previous_release": "v1.9.0-aaaa",
        "seconds": 30.0,
        "deployed_by": "ci <bot>",
        "failure": failure,
        "phases": [
            {"phase": "preflight", "start": 1000.0, "seconds": 1.0},
            {"phase": "release", "start": 1001.0 + batch, "seconds": 2.0},
            {"phase": "monitor", "start": 1010.0, "seconds": 10.0},
        ],
        "success_metrics": [
            {
                "metric": "history endpoint",
                "threshold": "< 500 ms",
                "measured": "3 ms",
                "pass": True,
            }
        ],
        "changed": ["release: v1.9.0-aaaa -> v2.0.0-perf-bbbb"],
        "rolled_back": ["release: back"] if "rolled back" in status else [],
        "not_rolled_back": [],
        "facts": {
            "rollout": {"batch": batch},
            "monitor": {"series": series},
            "loadtest": {"step": {"p95_ms": 12.5, "error_rate": 0.0, "rps": 99.0, "k6_exit": 0}},
        },
    }


def test_the_page_is_self_contained_and_shows_every_part_of_the_run():
    records = {
        "app2": _record(
            2,
            "failed, rolled back",
            "monitor: 2 ERROR line(s)",
            [[1010, 5, 200, 0], [1015, 900, 500, 2]],
        ),
        "app1": _record(1, "success", "", [[1010, 4, 200, 0], [1015, 6, 200, 0]]),
    }
    page = html_report("staging", "20261126-101500", records)
    seen = Collect()
    seen.feed(page)
    assert seen.sources == []  # nothing fetched: no script, stylesheet or image from elsewhere
    assert "script" not in seen.tags
    assert seen.tags.count("svg") == 2  # the timeline and the latency plot
    assert page.count("<polyline") == 2 and page.count('fill="#c62828"') == 1  # one bad sample
    text = " ".join(seen.text)
    for part in (
        "app1 (batch 1)",
        "app2 (batch 2)",
        "failed, rolled back",
        "12.5 ms",
        "99.0 req/s",
    ):
        assert part in text
    assert "ci &lt;bot&gt;" in page  # escaped
    assert text.index("app1 (batch 1)") < text.index("app2 (batch 2)")


def test_axis_ticks_are_round_values_a_person_reads():
    assert nice_ticks(0, 47) == [0, 10, 20, 30, 40]
    assert nice_ticks(0, 12.3) == [0, 2, 4, 6, 8, 10, 12]
    assert nice_ticks(0, 900, most=6) == [0, 200, 400, 600, 800]
    assert nice_ticks(0, 0.03, most=4) == [0, 0.01, 0.02, 0.03]
    assert nice_ticks(5, 5) == [5]


def test_values_read_as_a_person_expects_not_as_python_reprs():
    assert shown(None) == "-"
    assert shown({"authenticated": True, "auth_enabled": False}) == (
        '{"auth_enabled": false, "authenticated": true}'
    )
    assert shown(["a", 1]) == '["a", 1]'
    assert shown("3 ms") == "3 ms"


def test_a_first_deploy_every_phase_and_readable_axes_are_on_the_page():
    record = _record(1, "success", "", [[1010, 4, 200, 0], [1040, 120, 200, 0]])
    record["previous_release"] = None
    record["phases"].insert(1, {"phase": "env_file", "start": 1001.0, "seconds": 0.2})
    record["success_metrics"].append(
        {
            "metric": "health",
            "threshold": "authenticated",
            "measured": {"auth_enabled": False, "authenticated": True},
            "pass": True,
        }
    )
    page = html_report("lab", "20261129-100000", {"app1": record})
    seen = Collect()
    seen.feed(page)
    text = " ".join(seen.text)
    assert "None" not in text and "'auth_enabled'" not in text
    assert "first deploy" in text
    assert '{"auth_enabled": false, "authenticated": true}' in text
    # the 0.2 s phase has no room on the timeline: the table below it lists it
    assert "env_file" in text and "0.2 s" in text
    latency_ticks = [t for t in seen.text if t.endswith(" ms") and t[:-3].isdigit()]
    assert latency_ticks[:7] == ["0 ms", "20 ms", "40 ms", "60 ms", "80 ms", "100 ms", "120 ms"]
    assert "30 s" in seen.text  # the latency plot's time axis: 0 s to 30 s in round steps


def test_the_canary_analysis_shows_both_sides_latency_and_each_metric():
    records = {"app1": _record(1, "failed, rolled back", "analysis: canary analysis: fail", [])}
    records["app1"]["facts"]["canary_analysis"] = {
        "result": "fail",
        "reason": "worse: latency",
        "metrics": ["latency FAIL: canary median 17 ms, p99 30 ms (330 requests), ..."],
        "quantiles": [0.1, 0.5, 0.99],
        "canary_ms": [16, 17, 30],
        "baseline_ms": [1, 2, 9],
        "requests": {"canary": 330, "baseline": 660},
        "seconds": 20,
        "rejected": True,
    }
    page = html_report("production", "20261129-101500", records)
    seen = Collect()
    seen.feed(page)
    text = " ".join(seen.text)
    assert "canary (330 requests)" in text and "baseline (660 requests)" in text
    assert "rejected: the canary went back" in text and "latency FAIL" in text
    assert "canary p50: 17 ms" in page and "baseline p50: 2 ms" in page
    for label in ("p10", "p50", "p99", "0 ms", "30 ms"):
        assert label in text
    empty = html_report("production", "x", {"app1": _record(1, "success", "", [])})
    assert "No canary analysis in this run." in empty
