"""Each run as one OpenTelemetry trace (`otel_exporter`): run -> phase -> batch -> host.

The spans are made when the run is over, from the timings every host's record already keeps
(each phase's start and length, each rollout batch's end; each remote command, an event on
its host's span: what it was for, its seconds, whether it succeeded), with opentelemetry-sdk
and its exporters: `otlp` (OTLP over HTTP, to OTEL_EXPORTER_OTLP_ENDPOINT, the SDK's own
variables) or `file:<path>` (one JSON span per line, appended). A host that failed carries
status ERROR with the failing check on the span of the phase it failed in, and so do that
phase and the run. No secret is in any span: names, hosts, releases, phases and the failure's
text (which the deploy's output shows already).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Status, StatusCode, Tracer, set_span_in_context
from pyinfra import state as pyinfra_state
from pyinfra.context import ctx_state

from tasks.config import Settings
from tasks.context import RunContext
from tasks.transport import Command, commands_run

SERVICE = "monitoring-dashboard-deploy"
NS = 1_000_000_000


@dataclass
class HostPhase:
    start: float
    end: float
    error: str | None = None  # the failing check, when the host failed in this phase
    commands: list[Command] = field(default_factory=list)  # the span's events


@dataclass
class Trace:
    """What the trace is made of: the run, each host's phases, the rollout's batches."""

    name: str
    env: str
    start: float
    end: float
    phases: dict[str, dict[str, HostPhase]]  # phase -> host -> its part, in phase order
    batches: list[tuple[str, list[str], float | None]] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)


def of(
    ctx: RunContext,
    s: Settings,
    version: str,
    end: float,
    commands: dict[str, list[Command]] | None = None,
) -> Trace:
    """The trace of CTX's run, ended at END; COMMANDS: each host's remote commands, placed in
    the phase they started in."""
    phases: dict[str, dict[str, HostPhase]] = {}
    for name, run in sorted(ctx.runs.items()):
        failed_in = (run.failure or "").split(":", 1)[0] if run.failure else None
        for p in run.phases:
            last = run.completed or end
            part = HostPhase(p["start"], p["start"] + p["seconds"] if "seconds" in p else last)
            if p["phase"] == failed_in:
                part.error = run.failure
            part.commands = [
                c for c in (commands or {}).get(name, []) if part.start <= c.started < part.end
            ]
            phases.setdefault(p["phase"], {})[name] = part
    rollout = ctx.deploy.rollout
    batches = (
        [(rollout.label(i), names, rollout.ended_at[i]) for i, names in enumerate(rollout.batches)]
        if rollout is not None
        else []
    )
    return Trace(
        name=f"{ctx.kind} {s.deploy_env} {version}",
        env=s.deploy_env,
        start=ctx.started,
        end=end,
        phases=phases,
        batches=batches,
        attributes={"mdd.kind": ctx.kind, "mdd.version": version, "mdd.run": ctx.stamp},
    )


def _error(span: Any, text: str) -> None:
    span.set_status(Status(StatusCode.ERROR, text))
    span.set_attribute("mdd.failed_check", text)


def record(tracer: Tracer, trace: Trace) -> None:
    """TRACE as spans: the run, a span per phase, in the release phase one per batch, and one
    per host under its phase (or batch)."""
    root = tracer.start_span(
        trace.name,
        start_time=int(trace.start * NS),
        attributes={
            "deployment.environment": trace.env,
            **trace.attributes,
        },
    )
    under_root = set_span_in_context(root)
    failed = False
    for phase, hosts in trace.phases.items():
        start = min(h.start for h in hosts.values())
        end = max(h.end for h in hosts.values())
        span = tracer.start_span(phase, context=under_root, start_time=int(start * NS))
        parents = {name: set_span_in_context(span) for name in hosts}
        batch_spans = []
        if phase == "release" and trace.batches:
            begun = start
            for label, names, ended in trace.batches:
                mine = [hosts[n] for n in names if n in hosts]
                if not mine:
                    continue
                done = ended or max(h.end for h in mine)
                batch = tracer.start_span(
                    label, context=set_span_in_context(span), start_time=int(begun * NS)
                )
                batch_spans.append((batch, done, [n for n in names if n in hosts]))
                parents.update({n: set_span_in_context(batch) for n in names if n in hosts})
                begun = done
        errors = []
        for name, part in hosts.items():
            host_span = tracer.start_span(
                name,
                context=parents[name],
                start_time=int(part.start * NS),
                attributes={"host.name": name, "mdd.phase": phase},
            )
            for command in part.commands:
                host_span.add_event(
                    command.what,
                    {"mdd.seconds": round(command.seconds, 3), "mdd.ok": command.ok},
                    timestamp=int(command.started * NS),
                )
            if part.error:
                _error(host_span, part.error)
                errors.append((name, part.error))
            host_span.end(end_time=int(part.end * NS))
        for batch, done, names in batch_spans:
            bad = [e for n, e in errors if n in names]
            if bad:
                _error(batch, bad[0])
            batch.end(end_time=int(done * NS))
        if errors:
            failed = True
            _error(span, f"{errors[0][0]}: {errors[0][1]}")
        span.end(end_time=int(end * NS))
    if failed:
        root.set_status(Status(StatusCode.ERROR, "a host failed"))
    root.end(end_time=int(trace.end * NS))


def _send(ctx: RunContext, s: Settings, version: str, exporter: SpanExporter) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    commands = (
        {h.name: commands_run(h) for h in pyinfra_state.inventory}
        if ctx_state.isset()  # unset: not in a pyinfra run (the unit tests)
        else {}
    )
    record(provider.get_tracer(SERVICE), of(ctx, s, version, time.time(), commands))
    provider.shutdown()


def export(ctx: RunContext, s: Settings, version: str) -> None:
    """The run's trace sent where otel_exporter says (nothing when it is empty); an exporter
    that cannot deliver logs why, and the run's outcome stands."""
    if s.otel_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        _send(ctx, s, version, OTLPSpanExporter(timeout=5))
    elif s.otel_exporter:
        with open(s.otel_exporter.removeprefix("file:"), "a") as out:
            lines = ConsoleSpanExporter(
                service_name=SERVICE,
                out=out,
                formatter=lambda span: span.to_json(indent=None) + "\n",
            )
            _send(ctx, s, version, lines)
