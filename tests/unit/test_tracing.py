"""A failed rolling deploy as one trace (tasks/tracing.py), exported in memory: run -> phase
-> batch -> host, the failing host's span ERROR with its check."""

from __future__ import annotations

import json
from dataclasses import replace

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from tasks import config, tracing
from tasks.batches import Rollout
from tasks.context import Run, RunContext
from tasks.transport import Command

S, _ = config.validate(
    {"deploy_env": "lab-production", "app_repo_url": "git://x/r.git", "db_host": "db"},
    {"DB_PASSWORD": "pw"},
)
T0 = 1765000000.0


def failed_rolling_deploy() -> RunContext:
    """app1 (the canary) and app2 deployed; app2 failed its verification."""
    ctx = RunContext("deploy", ["inventories/lab_production.py", "deploy.py"])
    ctx.started = T0
    for name, offset in (("app1", 0.0), ("app2", 0.5)):
        run = Run(host=name, env="lab-production", started=T0 + offset)
        run.phases = [
            {"phase": "preflight", "start": T0 + offset, "seconds": 2.0},
            {"phase": "release", "start": T0 + offset + 2, "seconds": 8.0},
            {"phase": "verify", "start": T0 + offset + 10, "seconds": 1.0},
        ]
        run.completed = T0 + offset + 11
        ctx.runs[name] = run
    ctx.runs["app2"].failure = "verify: database connections 120 > 100"
    rollout = Rollout([["app1"], ["app2"]], max_fail=0, bound=60)
    rollout.ended_at = [T0 + 6, T0 + 10.5]
    ctx.deploy.rollout = rollout
    return ctx


def spans(ctx: RunContext, commands: dict[str, list[Command]] | None = None) -> dict[str, list]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace = tracing.of(ctx, S, "v2.1.0", T0 + 12, commands)
    tracing.record(provider.get_tracer("test"), trace)
    found: dict[str, list] = {}
    for span in memory.get_finished_spans():
        found.setdefault(span.name, []).append(span)
    return found


def test_one_span_per_phase_and_host_under_the_run_and_the_batches():
    found = spans(failed_rolling_deploy())
    [root] = found["deploy lab-production v2.1.0"]
    assert root.parent is None and root.status.status_code == StatusCode.ERROR
    assert (root.end_time - root.start_time) / 1e9 == 12
    for phase in ("preflight", "release", "verify"):
        [span] = found[phase]
        assert span.parent.span_id == root.context.span_id
    canary, second = found["batch 1/2 (canary) [app1]"][0], found["batch 2/2 [app2]"][0]
    assert canary.parent.span_id == found["release"][0].context.span_id
    assert (canary.end_time / 1e9, second.start_time / 1e9) == (T0 + 6, T0 + 6)
    hosts = {(s.attributes["mdd.phase"], s.name): s for s in found["app1"] + found["app2"]}
    assert len(hosts) == 6
    assert hosts[("release", "app1")].parent.span_id == canary.context.span_id
    assert hosts[("preflight", "app2")].parent.span_id == found["preflight"][0].context.span_id


def test_the_failing_host_and_its_phase_carry_error_and_the_check():
    found = spans(failed_rolling_deploy())
    failing = [s for s in found["app2"] if s.attributes["mdd.phase"] == "verify"][0]
    assert failing.status.status_code == StatusCode.ERROR
    assert failing.attributes["mdd.failed_check"] == "verify: database connections 120 > 100"
    assert found["verify"][0].status.status_code == StatusCode.ERROR
    ok = [s for s in found["app1"] if s.attributes["mdd.phase"] == "verify"][0]
    assert ok.status.status_code == StatusCode.UNSET
    assert found["release"][0].status.status_code == StatusCode.UNSET


def test_each_remote_command_is_an_event_of_its_hosts_span_in_the_phase_it_started_in():
    commands = {
        "app2": [
            Command("reading the releases", T0 + 1.0, 0.25, True),
            Command("the health check", T0 + 10.75, 0.5, False),
        ]
    }
    found = spans(failed_rolling_deploy(), commands)
    by_phase = {s.attributes["mdd.phase"]: s for s in found["app2"]}
    [event] = by_phase["preflight"].events
    assert (event.name, event.timestamp / 1e9) == ("reading the releases", T0 + 1.0)
    assert dict(event.attributes) == {"mdd.seconds": 0.25, "mdd.ok": True}
    [event] = by_phase["verify"].events
    assert event.name == "the health check" and event.attributes["mdd.ok"] is False
    assert not by_phase["release"].events and not any(s.events for s in found["app1"])


def test_the_file_exporter_writes_one_json_span_per_line(tmp_path):
    path = tmp_path / "trace.jsonl"
    tracing.export(failed_rolling_deploy(), replace(S, otel_exporter=f"file:{path}"), "v2.1.0")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 1 + 3 + 2 + 6  # run, phases, batches, hosts
    assert len({line["context"]["trace_id"] for line in lines}) == 1


def test_the_exporter_setting_is_checked():
    _, problems = config.validate(
        {
            **{"deploy_env": "x", "app_repo_url": "git://x/r.git", "db_host": "db"},
            "otel_exporter": "jaeger",
        },
        {"DB_PASSWORD": "pw"},
    )
    assert problems == ["otel_exporter: otlp or file:<path>, got 'jaeger'"]
