"""The rollout: the layer between `deploy.py` and the release switch.

The app hosts are cut into batches (`rollout_canary` hosts first, then `rollout_batch` at a
time). A batch starts when the one before it ended well. Each host of a batch is taken out of
the load balancer (`lb_mode`), switched to the new release, health-gated, checked through its
own port, and put back. When more than `rollout_max_fail` hosts failed, the rollout stops:
hosts of later batches are never touched, and every host this run switched goes back to the
release it had. Database work (backup, migrations) ran once, before the first batch.

pyinfra runs one operation on every host at once (one greenlet per host), so the batches are
kept in order by events that each host's callback waits on, every wait bounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import click
import gevent
import gevent.pool
from pyinfra import host, inventory
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import python

from tasks import analysis, promql, slots, telemetry
from tasks.batches import Rollout, batch_plan
from tasks.commands import haproxy
from tasks.config import Settings
from tasks.context import Plan, RunContext
from tasks.hosts import app_hosts, connected, migration_host_name, unreachable_app_hosts
from tasks.operations import deploy
from tasks.outcome import deploy_failed
from tasks.remote import DeployError, Remote, haproxy_wait, timed_get
from tasks.strategy import Strategy
from tasks.transport import remote, say, sh

LB_GROUP = "lb_servers"

# what the failure path is handed: (phase, error, the strategy to switch back with or None)
Fail = Callable[[str, "DeployError | str", "Strategy | None"], bool]


@dataclass
class Fleet:
    """The hosts a rollout works on, as Remotes: the app hosts still in the run (in host
    order), those pyinfra could not reach, and the balancer (lb_mode haproxy), connected
    only when first asked."""

    hosts: list[Remote]
    unreachable: list[str] = field(default_factory=list)
    balancer: Callable[[], Remote] | None = None

    def lb(self) -> Remote:
        if self.balancer is None:
            raise DeployError(f"lb_mode haproxy needs a host in group {LB_GROUP}")
        return self.balancer()


def planned(ctx: RunContext, s: Settings, fleet: Fleet) -> Rollout:
    """This run's rollout, planned by the first host that gets here, from the app hosts still
    in the run (a host that failed earlier takes no part)."""
    if ctx.deploy.rollout is None:
        # One batch: drain, start, health gate, check, back in service; twice that, plus
        # slack for the SSH round trips, before a wait gives up.
        batch = s.release_drain_timeout + s.app_health_timeout + 2 * s.lb_health_wait
        judging = s.rollout_analysis_seconds if s.rollout_analysis else 0
        ctx.deploy.rollout = Rollout(
            batch_plan([h.name for h in fleet.hosts], s.rollout_batch, s.rollout_canary),
            s.rollout_max_fail,
            bound=2 * batch + 120 + judging,
            unreachable=fleet.unreachable,
        )
    return ctx.deploy.rollout


# ----------------------------------------------------------------------------- the balancer


def _on_balancer(h: Remote, s: Settings, lb: Remote, state: str, until: str, t: float) -> str:
    """Set H's server on the balancer LB to STATE, then wait until it is UNTIL (see
    remote.haproxy_wait)."""
    socket, backend = s.lb_haproxy_socket, s.lb_haproxy_backend
    lb.run(
        haproxy.haproxy_api(socket, f"set server {backend}/{h.name} state {state}"),
        what=f"setting {h.name} to {state} on {lb.name}",
    )
    return haproxy_wait(lb, socket, backend, h.name, until, t)


def _others_in_service(s: Settings, lb: Remote, batch: list[str]) -> list[str]:
    """The servers the balancer sends requests to now, BATCH's hosts left out."""
    command = haproxy.server_statuses(s.lb_haproxy_socket, s.lb_haproxy_backend)
    _, out, _ = lb.run(command, what="reading the balancer's servers")
    return haproxy.in_service(out, batch)


def _drain(h: Remote, s: Settings, fleet: Fleet, batch: list[str], strategy: Strategy) -> bool:
    """Take H out of the balancer; False when it stays in (see out_of_service)."""
    if s.lb_mode == "haproxy":
        lb = fleet.lb()
        if not _others_in_service(s, lb, batch):
            if strategy.seamless:
                h.say(
                    f"stays in service on {lb.name}: no other server is in service there, and "
                    f"{strategy.name} switches without a failed request",
                )
                return False
            h.say(
                f"WARNING: no other server is in service on {lb.name}: requests fail while "
                f"{h.name} restarts (release_strategy blue_green switches without)",
            )
        left = _on_balancer(h, s, lb, "drain", "drained", s.release_drain_timeout)
        h.say(f"drained on {lb.name} (status, sessions, queued: {left})")
    elif s.lb_mode == "health_check":
        slots.set_draining(h, s, True)
        h.say(f"failing the balancer's health check; waiting {s.lb_health_wait}s")
        gevent.sleep(s.lb_health_wait)
    return True


def _put_back(h: Remote, s: Settings, fleet: Fleet) -> None:
    if s.lb_mode == "haproxy":
        lb = fleet.lb()
        _on_balancer(h, s, lb, "ready", "up", 15)
        h.say(f"back in service on {lb.name}")
    elif s.lb_mode == "health_check":
        slots.set_draining(h, s, False)
        h.say(f"passing the balancer's health check again; waiting {s.lb_health_wait}s")
        gevent.sleep(s.lb_health_wait)


@contextmanager
def out_of_service(
    h: Remote, s: Settings, fleet: Fleet, batch: list[str], strategy: Strategy
) -> Iterator[None]:
    """The host out of the balancer for the block, back in afterwards whatever happened. With
    lb_mode haproxy, a host whose BATCH holds every server in service stays in when STRATEGY
    switches without a failed request: draining it would leave the balancer nothing to send
    requests to."""
    drained = _drain(h, s, fleet, batch, strategy)
    try:
        yield
    finally:
        if drained:
            _put_back(h, s, fleet)


# ----------------------------------------------------------------------------- the canary


def _read_side(hosts: list[Remote], strategy: Strategy, seconds: float) -> analysis.Sample:
    """The requests HOSTS served in the last SECONDS, read from every host at once."""
    texts = gevent.pool.Group().map(lambda h: strategy.recent_requests(h, seconds) or "", hosts)
    sample = analysis.Sample()
    for text in texts:
        sample.add(analysis.parse_events(text))
    return sample


def _not_judged(
    fleet: Fleet, r: Rollout, strategy: Strategy, release_dir: str
) -> tuple[list[Remote], list[Remote], str | None]:
    """(the canary hosts, the baseline hosts, why the canary is not judged): the reason is None
    when it is judged, and empty when nothing changes anywhere (nothing to say)."""
    canary = [h for h in fleet.hosts if h.name in r.batches[0]]
    baseline = [h for h in fleet.hosts if r.batch_of.get(h.name, 0) > 0]
    if not set(r.switched) & set(r.batches[0]) and all(
        strategy.serves(h, release_dir) for h in baseline
    ):
        return canary, baseline, ""  # a run again of a finished deploy
    if not baseline or not strategy.logs_requests:
        why = (
            f"release_strategy {strategy.name}: nothing logs the requests"
            if baseline
            else "no host left on the old release to compare with"
        )
        return canary, baseline, f"canary analysis skipped: {why}"
    if strategy.in_maintenance(canary[0]):
        why = "canary analysis skipped: maintenance mode (no real traffic to judge)"
        return canary, baseline, why
    return canary, baseline, None


def _verdict(
    s: Settings,
    fleet: Fleet,
    strategy: Strategy,
    canary: list[Remote],
    baseline: list[Remote],
    seconds: float,
) -> tuple[analysis.Verdict, str]:
    """The two sides' requests of the last SECONDS (rollout_analysis_source), judged: (the
    verdict, where they came from)."""
    try:
        if s.rollout_analysis_source == "prometheus":
            source = "Prometheus (the balancer's HAProxy exporter)"
            url, backend, at = s.rollout_analysis_prometheus, s.lb_haproxy_backend, time.time()
            window = round(seconds)
            canary_side = promql.side(url, backend, [h.name for h in canary], window, at)
            baseline_side = promql.side(url, backend, [h.name for h in baseline], window, at)
        elif s.lb_mode == "haproxy" and s.lb_haproxy_ring:
            source = "the balancer's log"
            command = haproxy.recent_events(s.lb_haproxy_socket, s.lb_haproxy_ring, seconds)
            _, text, _ = fleet.lb().run(command, what="reading the balancer's request log")
            canary_side = analysis.parse_events(text, {h.name for h in canary})
            baseline_side = analysis.parse_events(text, {h.name for h in baseline})
        else:
            source = "each host's local proxy log"
            canary_side = _read_side(canary, strategy, seconds)
            baseline_side = _read_side(baseline, strategy, seconds)
    except DeployError as exc:
        why = f"the canary's figures could not be read from {source}: {exc}"
        empty = analysis.Sample()
        return analysis.Verdict("inconclusive", (), why, empty, analysis.Sample()), source
    verdict = analysis.judge(
        canary_side,
        baseline_side,
        alpha=s.rollout_analysis_alpha,
        min_requests=s.rollout_analysis_min_requests,
        latency_margin_ms=s.rollout_analysis_latency_margin_ms,
        latency_margin_pct=s.rollout_analysis_latency_margin_pct,
    )
    return verdict, source


def _analyse(
    ctx: RunContext, s: Settings, fleet: Fleet, r: Rollout, strategy: Strategy, release_dir: str
) -> str | None:
    """Let the canary batch take real traffic beside the hosts still on the old release for
    rollout_analysis_seconds, then judge it (tasks/analysis.py). Returns why the canary is
    rejected, None when it goes on."""
    canary, baseline, skipped = _not_judged(fleet, r, strategy, release_dir)
    first = canary[0]
    if skipped is not None:
        if skipped:
            first.say(skipped)
        return None
    seconds = s.rollout_analysis_seconds
    names = ", ".join(h.name for h in canary)
    first.say(
        f"canary analysis: {names} take real traffic beside {len(baseline)} host(s) on the old "
        f"release for {seconds}s",
    )
    gevent.sleep(seconds)
    verdict, source = _verdict(s, fleet, strategy, canary, baseline, seconds)
    rejected = verdict.rejects(s.rollout_analysis_inconclusive)
    for h in canary:
        run = ctx.run(h)
        run.facts["canary_analysis"] = {
            **verdict.facts(),
            "seconds": seconds,
            "rejected": rejected,
            "source": source,
        }
        for j in verdict.judgements:
            run.metric(f"canary {j.metric} vs baseline", j.margin, j.line(), j.passed)
    for line in [f"canary analysis: {verdict.result} ({verdict.reason}; from {source})"] + [
        f"  {j.line()}" for j in verdict.judgements
    ]:
        first.say(line)
    if verdict.result == "inconclusive":
        goes = "the canary goes back" if rejected else "the rollout goes on"
        first.say(f"rollout_analysis_inconclusive is {s.rollout_analysis_inconclusive}: {goes}")
    release = release_dir.rstrip("/").rsplit("/", 1)[-1]
    outcome = f"canary {'rejected' if rejected else 'passed'} ({verdict.result})"
    body = telemetry.annotation(s.deploy_env, "canary", release, outcome, time.time(), names)
    telemetry.annotate(s, body)
    return verdict.summary() if rejected else None


def _judge_canary(
    ctx: RunContext,
    s: Settings,
    fleet: Fleet,
    r: Rollout,
    strategy: Strategy,
    release_dir: str,
    ok: bool,
) -> None:
    """A canary host is back in service (OK: its switch went well) with RELEASE_DIR, the same
    folder on every host. The last one judges the batch; the others wait for the verdict
    (bounded)."""
    if r.canary_back(ok):
        try:
            rejection = _analyse(ctx, s, fleet, r, strategy, release_dir)
        except Exception as exc:  # noqa: BLE001 - the other canary hosts wait on the verdict
            rejection = f"canary analysis failed: {type(exc).__name__}: {exc}"
        if rejection:
            r.reject(rejection)
        else:
            r.judged.set()
    elif not r.judged.wait(timeout=s.rollout_analysis_seconds + 120):
        r.reject("the canary analysis gave no verdict in time")


# ----------------------------------------------------------------------------- one host


def _gate(h: Remote, s: Settings) -> None:
    """The host's own check before it takes the balancer's traffic again: the history
    endpoint and the version, through app_port."""
    base = f"http://127.0.0.1:{s.app_port}"
    code, seconds, _ = timed_get(h, base + s.verify_history_path)
    if code != 200:
        raise DeployError(f"the history endpoint answered {code} through port {s.app_port}")
    code, _, body = timed_get(h, base + "/api/v1/version")
    if code != 200:
        raise DeployError(f"/api/v1/version answered {code} through port {s.app_port}")
    h.say(f"gate passed: history 200 in {seconds * 1000:.0f} ms, {body.strip()}")


def wait_for_turn(r: Rollout, h: Remote, plan: Plan) -> DeployError | None:
    """Wait until the batches before H's have ended; why H must not switch, or None. A host
    that may not go on is finished in the bookkeeping here."""
    index = r.batch_of[h.name]
    try:
        if index > 0:
            r.wait(index - 1)
    except DeployError as exc:
        r.finish(h.name, False)
        return exc
    if r.stopped_at is not None:
        r.finish(h.name, True)
        return DeployError(
            f"the rollout stopped at {r.label(r.stopped_at)}"
            + (" (the canary analysis rejected it)" if r.rejection else "")
            + f"; this host was not touched and keeps {plan.previous_version}"
        )
    return None


@dataclass
class Switching:
    """What every host's switch in one rollout shares: the run, its settings and plan, the
    strategy that switches, the hosts, and the batches' bookkeeping."""

    ctx: RunContext
    s: Settings
    plan: Plan
    strategy: Strategy
    fleet: Fleet
    r: Rollout


def switch(w: Switching, h: Remote, restart: bool) -> DeployError | None:
    """Host H's turn: out of the balancer, the strategy puts the new release in service
    (RESTART: even if it serves, .env or a unit changed), the gate, back in; what went wrong,
    or None."""
    s, plan, strategy, r, run = w.s, w.plan, w.strategy, w.r, w.ctx.run(h)
    index = r.batch_of[h.name]
    if not restart and strategy.serves(h, plan.release_dir):
        h.say(f"{r.label(index)}: {plan.release} already serves, nothing to switch")
        return None
    why = " (restart: .env or unit changed)" if restart else ""
    h.say(f"{r.label(index)}: switching to {plan.release}{why}")
    try:
        with out_of_service(h, s, w.fleet, r.batches[index], strategy):
            try:
                done = strategy.put_in_service(h, plan.release_dir, restart)
            except DeployError as exc:
                threshold = f"200 within {s.app_health_timeout}s"
                run.metric(strategy.health_metric, threshold, str(exc), False)
                raise
            if done is None:
                h.say(f"{plan.release} already serves: nothing to switch")
            else:
                r.switched.append(h.name)
                run.changed.append(f"switch: {done}")
                h.say(done)
            _gate(h, s)
    except DeployError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - the batch must end whatever happened here
        return DeployError(f"unexpected {type(exc).__name__}: {exc}")
    return None


def judge(w: Switching, h: Remote, error: DeployError | None) -> tuple[DeployError | None, str]:
    """Host H's switch ended (ERROR: how it went wrong); in the canary batch, the verdict.
    Returns (what went wrong, in which phase)."""
    r = w.r
    if r.batch_of[h.name] == 0 and len(r.batches) > 1 and w.s.rollout_analysis:
        release_dir = w.plan.release_dir
        _judge_canary(w.ctx, w.s, w.fleet, r, w.strategy, release_dir, error is None)
        if error is None and r.rejection:
            return DeployError(r.rejection), "analysis"
    return error, "release"


def settle(r: Rollout, h: Remote, error: DeployError | None) -> DeployError | None:
    """Host H's batch finished (ERROR: how H went wrong), then the wait for the whole
    rollout: a host whose switch went well goes back when a later batch failed."""
    r.finish(h.name, error is None)
    try:
        r.wait(len(r.batches) - 1)
    except DeployError as exc:
        error = error or exc
    if error is None and r.stopped_at is not None and h.name in r.switched:
        failed = ", ".join(r.failed)
        error = DeployError(
            f"{r.label(r.stopped_at)} failed ({failed}): every host this run switched goes back"
        )
    return error


def switch_in_turn(
    ctx: RunContext,
    s: Settings,
    plan: Plan,
    strategy: Strategy,
    fleet: Fleet,
    h: Remote,
    restart: bool,
    fail: Fail,
) -> bool:
    """Host H's part of the rollout: its turn, its switch, the batch settled; a failure goes
    to FAIL (the run's failure path), switching back while out of service when H serves the
    new release. Returns what FAIL returned, True when all went well."""
    r, run = planned(ctx, s, fleet), ctx.run(h)
    w = Switching(ctx, s, plan, strategy, fleet, r)
    refused = wait_for_turn(r, h, plan)
    if refused is not None:
        if r.stopped_at is not None and h.name not in r.failed:
            run.facts["serving"] = plan.previous_version
        return fail("rollout", refused, None)
    started = time.monotonic()
    error, phase = judge(w, h, switch(w, h, restart))
    run.facts["rollout"] = {
        "batch": r.batch_of[h.name] + 1,
        "batches": len(r.batches),
        "seconds": round(time.monotonic() - started, 2),  # drain, switch, gate, back in service
    }
    error = settle(r, h, error)
    if error is None:
        run.facts["serving"] = plan.release
        return True
    run.facts["serving"] = plan.previous_version
    if h.name not in r.switched:  # the new release never took a request here
        return fail(phase, error, strategy)
    ended = False
    try:
        with out_of_service(h, s, fleet, r.batches[r.batch_of[h.name]], strategy):
            ended = fail(phase, error, strategy)
    except DeployError as exc:  # the failure path ran; the balancer did not take the host back
        h.say(f"WARNING: {exc}: {h.name} is left out of the balancer, put it back by hand")
    return ended


# ----------------------------------------------------------------------------- pyinfra


def _balancer(s: Settings) -> Remote:
    """The lb_servers host, connected (a `--limit` to app hosts leaves it out of the run)."""
    hosts = inventory.get_group(LB_GROUP, None) or []
    if not hosts:
        raise DeployError(f"lb_mode haproxy needs a host in group {LB_GROUP}")
    return remote(connected(hosts[0], "to drain the app hosts"))


def _switch_host(
    state,
    host,
    ctx: RunContext,
    s: Settings,
    plan: Plan,
    strategy: Strategy,
    restart_if_changed: list[OperationMeta],
    migration_host: str,
) -> bool:
    def fail(phase: str, error: DeployError | str, strategy: Strategy | None) -> bool:
        return deploy_failed(ctx, host, s, plan, phase, error, strategy)

    active = app_hosts()
    if migration_host not in {h.name for h in active}:
        error = f"the database work on {migration_host} failed (see above): no host is switched"
        return fail("rollout", error, None)
    fleet = Fleet([remote(h) for h in active], unreachable_app_hosts(), lambda: _balancer(s))
    # read now, once they ran (asking before the run makes each check its file twice)
    restart = any(op.did_change() for op in restart_if_changed)
    return switch_in_turn(ctx, s, plan, strategy, fleet, remote(host), restart, fail)


@deploy("Rollout")
def roll_out(
    ctx: RunContext,
    s: Settings,
    plan: Plan,
    strategy: Strategy,
    restart_if_changed: list[OperationMeta],
) -> None:
    """Switch the app hosts batch by batch (see the module's docstring)."""
    python.call(
        name=f"Ensure {plan.release} serves on port {s.app_port}, batch by batch",
        function=_switch_host,
        ctx=ctx,
        s=s,
        plan=plan,
        strategy=strategy,
        restart_if_changed=restart_if_changed,
        migration_host=migration_host_name(s),
    )


def _check_balancer(state, host, s: Settings) -> bool:
    """The balancer answers on its admin socket and knows every app host as a server."""
    apps = [h.name for h in app_hosts()]
    ok, out, _ = sh(host, haproxy.haproxy_api(s.lb_haproxy_socket, "show stat"), check=False)
    known = {
        line.split(",")[1]
        for line in out.splitlines()
        if line.startswith(f"{s.lb_haproxy_backend},")
    }
    missing = [name for name in apps if name not in known]
    if not ok or missing:
        say(
            host,
            f"REFUSED: backend {s.lb_haproxy_backend} on {host.name} "
            + (f"has no server named {', '.join(missing)}" if ok else "does not answer")
            + f" (admin socket {s.lb_haproxy_socket}); nothing was changed",
        )
        return False
    say(host, f"balancer {host.name} knows {', '.join(apps)}")
    return True


def check_reachable(ctx: RunContext, s: Settings) -> None:
    """App hosts pyinfra could not connect to count against rollout_max_fail: more than it
    allows stops the run before any change; within it, the others are deployed and the
    operator is told which hosts were left behind and how to finish them."""
    missing = unreachable_app_hosts()
    if not missing:
        return
    names = ", ".join(missing)
    if len(missing) > s.rollout_max_fail:
        raise SystemExit(
            f"app host(s) {names} unreachable, and rollout_max_fail is "
            f"{s.rollout_max_fail}: the deploy stops here and nothing was changed. Bring "
            f"them back, leave them out with --limit, or allow it with --data "
            f"rollout_max_fail={len(missing)}"
        )
    if not ctx.deploy.warned_unreachable:
        ctx.deploy.warned_unreachable = True
        click.echo(
            click.style(
                f"--> {names} unreachable: not deployed (within rollout_max_fail "
                f"{s.rollout_max_fail}); they keep their release. Once they are back: "
                f"pyinfra -y {ctx.inventory} deploy.py --limit {','.join(missing)}",
                fg="yellow",
            ),
            err=True,
        )


@deploy("Load balancer")
def check_balancer(s: Settings) -> None:
    """On a lb_servers host: nothing is deployed there; with lb_mode haproxy, check it first."""
    if s.lb_mode == "haproxy":
        python.call(
            name=f"Check that {host.name} balances every app host", function=_check_balancer, s=s
        )
