"""Every run where a monitoring team already looks: OpenMetrics (prometheus-client) pushed to a
Pushgateway (`metrics_pushgateway`) and/or written on each app host for node_exporter's
textfile collector (`metrics_textfile_dir`), and an annotation on Grafana's graphs
(`grafana_url`, its token from GRAFANA_TOKEN) when a deploy or a rollback ends and when the
canary analysis gives its verdict. Neither ever fails a run: what cannot be delivered is a
warning. No secret is in any metric or annotation: their labels and text are the
environment, the kind of run, host names, releases and outcomes.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from dataclasses import dataclass, field

import click
from prometheus_client import CollectorRegistry, Gauge, generate_latest, push_to_gateway

from tasks.commands import shell
from tasks.config import Settings
from tasks.context import RunContext
from tasks.dora import Dora
from tasks.remote import DeployError
from tasks.transport import remote, say, sh

PREFIX = "monitoring_dashboard_deploy"
JOB = "monitoring_dashboard_deploy"
TIMEOUT = 5  # seconds a push or an annotation may take
TEXTFILE = f"{PREFIX}.prom"


@dataclass
class HostEnd:
    """How one app host's part of a run ended."""

    succeeded: bool
    seconds: float
    phases: dict[str, float] = field(default_factory=dict)  # phase -> seconds
    release: str | None = None  # the release it serves afterwards, when known


@dataclass
class RunEnd:
    """How a run ended, everywhere it ran."""

    env: str
    kind: str  # deploy, rollback, or the runbook's name
    version: str
    seconds: float
    ended_at: float  # epoch seconds
    hosts: dict[str, HostEnd]

    @property
    def succeeded(self) -> bool:
        return all(h.succeeded for h in self.hosts.values())


def registry(run: RunEnd, only: str | None = None) -> CollectorRegistry:
    """RUN as metrics; ONLY: one host's part, with the release it serves, for that host's
    textfile (pushed, each host's release goes in a group of its own: serving())."""
    reg = CollectorRegistry()
    labels = {"env": run.env, "kind": run.kind}
    per_run = [
        ("run_success", "1 when the run succeeded on every app host, else 0", run.succeeded),
        ("run_duration_seconds", "how long the run took", run.seconds),
        ("run_end_timestamp_seconds", "when the run ended (epoch seconds)", run.ended_at),
        ("run_hosts", "app hosts the run reached", len(run.hosts)),
    ]
    for name, doc, value in per_run if only is None else []:  # a host's file: its own part
        Gauge(f"{PREFIX}_{name}", doc, list(labels), registry=reg).labels(**labels).set(value)
    host_ok = Gauge(
        f"{PREFIX}_host_success",
        "1 when the host's part succeeded",
        [*labels, "host"],
        registry=reg,
    )
    phase = Gauge(
        f"{PREFIX}_phase_duration_seconds",
        "how long each phase took on each host",
        [*labels, "host", "phase"],
        registry=reg,
    )
    for name, end in sorted(run.hosts.items()):
        if only is not None and name != only:
            continue
        host_ok.labels(**labels, host=name).set(end.succeeded)
        for phase_name, seconds in end.phases.items():
            phase.labels(**labels, host=name, phase=phase_name).set(seconds)
    if only is not None:
        _release_info(reg, run, only)
    return reg


def serving(run: RunEnd, host: str) -> CollectorRegistry:
    """The release HOST serves after RUN: pushed in the host's own group ({env, host}), so
    that whichever run touched a host last says what it serves, one series per host."""
    reg = CollectorRegistry()
    _release_info(reg, run, host)
    return reg


def _release_info(reg: CollectorRegistry, run: RunEnd, host: str) -> None:
    release = run.hosts[host].release if host in run.hosts else None
    if release:
        Gauge(
            f"{PREFIX}_release_info",
            "1 for the release the app host serves",
            ["env", "host", "release"],
            registry=reg,
        ).labels(env=run.env, host=host, release=release).set(1)


def run_end(ctx: RunContext, s: Settings, version: str, ending: str | None = None) -> RunEnd:
    """The run as it ended (or stands now) on every app host it reached; ENDING: a host whose
    part is ending now."""
    hosts = {}
    for name in sorted(ctx.ended_hosts | ctx.failed_hosts | ({ending} if ending else set())):
        run = ctx.runs.get(name)
        phases = {p["phase"]: p["seconds"] for p in run.phases if "seconds" in p} if run else {}
        took = ((run.completed or time.time()) - run.started) if run else time.time() - ctx.started
        hosts[name] = HostEnd(
            succeeded=name not in ctx.failed_hosts,
            seconds=round(took, 2),
            phases=phases,
            release=ctx.serving.get(name),
        )
    return RunEnd(
        env=s.deploy_env,
        kind=version if ctx.kind == "runbook" else ctx.kind,  # a runbook: its name
        version=version,
        seconds=round(time.time() - ctx.started, 2),
        ended_at=time.time(),
        hosts=hosts,
    )


def host_ended(ctx: RunContext, h, s: Settings, version: str) -> None:
    """Host H's part has ended: the release it serves now read, and its metrics written for
    the textfile collector when metrics_textfile_dir is set."""
    if not (s.metrics_textfile_dir or s.metrics_pushgateway):
        return  # no metrics asked for: nothing more to read on the host
    path = f"{s.metrics_textfile_dir.rstrip('/')}/{TEXTFILE}"
    try:
        _, out, _ = sh(h, f"readlink {shell.q(shell.paths(s)['current'])} || true", timeout=20)
        ctx.serving[h.name] = out.strip().rstrip("/").rsplit("/", 1)[-1] or None
        if s.metrics_textfile_dir:
            text = exposition(run_end(ctx, s, version, ending=h.name), only=h.name)
            remote(h).put_text(text, path, mode="644")
    except DeployError as exc:  # a host that failed may be out of reach
        say(h, f"metrics of this host not written: {exc}")


def exposition(run: RunEnd, only: str | None = None) -> str:
    """The text format a textfile collector and `promtool check metrics` read."""
    return generate_latest(registry(run, only)).decode()


def dora_registry(env: str, figures: Dora) -> CollectorRegistry:
    """DORA's four keys of ENV (and the counts behind them) as gauges; a key that cannot be
    computed (no deployment with a commit time, no change, no restored failure) is left out."""
    reg = CollectorRegistry()
    days = str(figures.days)
    keys = [
        ("dora_deploys_per_day", "deployments per day over the window", figures.deploys_per_day),
        ("dora_deployments", "deployments in the window", figures.deployments),
        ("dora_changes", "release changes attempted in the window", figures.changes),
        ("dora_failed_changes", "changes that failed or were rolled back", figures.failed_changes),
        ("dora_lead_time_seconds", "median, commit to serving", figures.lead_time_s),
        ("dora_change_failure_ratio", "failed changes / changes", figures.change_failure_rate),
        ("dora_time_to_restore_seconds", "median time to restore", figures.time_to_restore_s),
    ]
    for name, doc, value in keys:
        if value is not None:
            gauge = Gauge(f"{PREFIX}_{name}", doc, ["env", "window_days"], registry=reg)
            gauge.labels(env=env, window_days=days).set(value)
    return reg


def push(s: Settings, reg: CollectorRegistry, group: dict[str, str]) -> bool:
    """REG pushed to metrics_pushgateway in the GROUP (labels; each push replaces that
    group's metrics); False, with a warning, when it could not be."""
    if not s.metrics_pushgateway:
        return True
    try:
        push_to_gateway(
            s.metrics_pushgateway,
            job=JOB,
            registry=reg,
            grouping_key=group,
            timeout=TIMEOUT,
        )
        return True
    except OSError as exc:  # URLError, timeouts and refused connections are OSErrors
        click.echo(
            f"    metrics not pushed ({type(exc).__name__}: {exc}); the run goes on", err=True
        )
        return False


def annotation(env: str, kind: str, version: str, outcome: str, at: float, text: str) -> dict:
    """The body of Grafana's POST /api/annotations: time (ms), tags to filter on, the text."""
    return {
        "time": int(at * 1000),
        "tags": ["monitoring-dashboard-deploy", env, kind, outcome],
        "text": f"{kind} {env} {version}: {outcome}" + (f" ({text})" if text else ""),
    }


def annotate(s: Settings, body: dict) -> bool:
    """BODY posted to grafana_url's annotations API with GRAFANA_TOKEN; False, with a
    warning (never the URL or the token), when it could not be."""
    if not s.grafana_url:
        return True
    request = urllib.request.Request(
        s.grafana_url.rstrip("/") + "/api/annotations",
        data=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {os.environ.get('GRAFANA_TOKEN', '')}",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
            answer.read()
        return True
    except (OSError, ValueError) as exc:
        click.echo(f"    Grafana annotation not posted ({type(exc).__name__})", err=True)
        return False


def run_ended(ctx: RunContext, s: Settings, version: str) -> None:
    """Every app host's part has ended: the run, and each host's release, pushed to the
    Pushgateway and, for a deploy or a rollback, annotated on Grafana."""
    run = run_end(ctx, s, version)
    if push(s, registry(run), {"env": run.env, "kind": run.kind}):
        for host in run.hosts:
            push(s, serving(run, host), {"env": run.env, "host": host})
    if ctx.kind in ("deploy", "rollback"):
        failed = sorted(ctx.failed_hosts)
        outcome = "failed" if failed else "succeeded"
        text = f"failed on {', '.join(failed)}" if failed else ""
        annotate(s, annotation(run.env, ctx.kind, version, outcome, ctx.started, text))
