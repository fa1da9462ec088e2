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

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
import gevent.event
from pyinfra import host, inventory
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import python

from tasks import commands, lock, notify, report, service, slots
from tasks.config import Settings
from tasks.runtime import (
    DEPLOYMENT,
    DeployError,
    Plan,
    app_hosts,
    connected,
    haproxy_wait,
    inventory_arg,
    migration_host_name,
    run_for,
    say,
    sh,
    timed_get,
    unreachable_app_hosts,
    wait_healthy,
)

LB_GROUP = "lb_servers"


def batch_plan(hosts: list[str], batch: str, canary: int) -> list[list[str]]:
    """Cut HOSTS (in order) into batches: CANARY hosts first, then BATCH at a time, where
    BATCH is a count ("2") or a share of all the hosts ("25%", rounded up)."""
    if batch.endswith("%"):
        size = max(1, math.ceil(len(hosts) * int(batch[:-1]) / 100))
    else:
        size = int(batch)
    if size < 1:
        raise ValueError(f"a batch needs at least one host, got {batch!r}")
    batches = [hosts[:canary]] if canary > 0 and hosts else []
    rest = hosts[canary:] if canary > 0 else list(hosts)
    batches += [rest[i : i + size] for i in range(0, len(rest), size)]
    return batches


class Rollout:
    """One run's batches and what happened to them, shared by every host's callback."""

    def __init__(
        self,
        batches: list[list[str]],
        max_fail: int,
        bound: float,
        unreachable: list[str] | None = None,
    ) -> None:
        self.batches = batches
        self.max_fail = max_fail
        self.bound = bound  # seconds any one wait may take
        self.batch_of = {name: i for i, names in enumerate(batches) for name in names}
        self.ended = [gevent.event.Event() for _ in batches]
        self.left = [len(names) for names in batches]
        self.failed: list[str] = list(unreachable or [])  # count against max_fail from the start
        self.switched: list[str] = []
        self.stopped_at: int | None = None

    def label(self, index: int) -> str:
        canary = " (canary)" if index == 0 and len(self.batches) > 1 else ""
        names = ", ".join(self.batches[index])
        return f"batch {index + 1}/{len(self.batches)}{canary} [{names}]"

    def wait(self, index: int) -> None:
        """Wait until batch INDEX has ended."""
        limit = self.bound * (index + 1)
        if not self.ended[index].wait(timeout=limit):
            raise DeployError(f"{self.label(index)} did not end within {limit:.0f}s")

    def finish(self, name: str, ok: bool) -> None:
        """One host of its batch is done; the last one ends the batch (and maybe the rollout)."""
        index = self.batch_of[name]
        if not ok:
            self.failed.append(name)
        self.left[index] -= 1
        if self.left[index] == 0:
            if self.stopped_at is None and len(self.failed) > self.max_fail:
                self.stopped_at = index
            self.ended[index].set()


def _rollout(s: Settings) -> Rollout:
    """This run's rollout, planned by the first host that gets here, from the app hosts still
    in the run (a host that failed earlier takes no part)."""
    if DEPLOYMENT.rollout is None:
        # One batch: drain, start, health gate, check, back in service; twice that, plus
        # slack for the SSH round trips, before a wait gives up.
        batch = s.release_drain_timeout + s.app_health_timeout + 2 * s.lb_health_wait
        DEPLOYMENT.rollout = Rollout(
            batch_plan([h.name for h in app_hosts()], s.rollout_batch, s.rollout_canary),
            s.rollout_max_fail,
            bound=2 * batch + 120,
            unreachable=unreachable_app_hosts(),
        )
    return DEPLOYMENT.rollout


# ----------------------------------------------------------------------------- one host's switch


def roll_back_release(h, s: Settings, plan: Plan, reason: str) -> str:
    """Quick rollback to the release that served before this run; returns what it did."""
    run = run_for(h)
    if not plan.release_changes:
        run.not_rolled_back.append("release: this run did not change it")
        return "the release was not changed by this run, nothing to switch back"
    blue_green = s.release_strategy == "blue_green"
    if not plan.previous_dir:
        if blue_green:
            slots.stop_all(h, s)
        else:
            service.stop(h, s)
        run.not_rolled_back.append("release: first deploy, no previous release; service stopped")
        return "first deploy on this host: no previous release, the service was stopped"
    say(h, f"rolling back to {plan.previous_version} ({reason})")
    if blue_green:
        done = slots.activate(h, s, plan.previous_dir)
        if done is None:
            run.not_rolled_back.append(
                f"release: {plan.release} never took a request, {plan.previous_version} "
                "kept serving"
            )
            return f"{plan.release} never served a request: {plan.previous_version} kept serving"
    else:
        restart_single(h, s, plan.previous_dir)
    run.rolled_back.append(f"release: {plan.release} -> {plan.previous_version}")
    return f"switched back to {plan.previous_version}, which answers healthy"


def serves(h, s: Settings, release_dir: str) -> bool:
    """RELEASE_DIR is what answers on app_port now (as far as the units tell)."""
    if s.release_strategy == "blue_green":
        state = slots.read_state(h, s)
        return (
            state.serving == release_dir == state.current
            and state.proxy_running
            and not state.stray
        )
    current = commands.q(commands.paths(s)["current"])
    _, out, _ = sh(h, f"readlink {current} || true; {service.form_command(s)}")
    return out.split() == [release_dir, service.serving_form(s)]


def put_in_service(h, s: Settings, release_dir: str, restart: bool) -> str | None:
    """Make RELEASE_DIR serve on app_port, health-gated (the caller found that it does not, or
    RESTART is asked); returns what was done, None when a blue/green switch found nothing left
    to do. Raises DeployError when the release is not healthy (a health metric is recorded)."""
    if s.release_strategy == "blue_green":
        try:
            return slots.activate(h, s, release_dir, restart=restart)
        except DeployError as exc:
            run_for(h).metric(
                "health check before traffic",
                f"200 within {s.app_health_timeout}s",
                str(exc),
                False,
            )
            raise
    try:
        return restart_single(h, s, release_dir)
    except DeployError as exc:
        run_for(h).metric(
            "health check after restart",
            f"200 within {s.app_health_timeout}s",
            str(exc).split("; ")[-1],
            False,
        )
        raise


def restart_single(h, s: Settings, release_dir: str) -> str:
    """The checklist's stop/start (`release_strategy: restart`): `current` switched, the one
    instance restarted, then the health check through app_port."""
    p = commands.paths(s)
    sh(h, commands.switch_current(p["current"], release_dir), what="switching current")
    started = service.start(h, s, release_dir)
    answer = wait_healthy(h, s)
    return f"{started} restarted on {release_dir.rsplit('/', 1)[-1]}, healthy: {answer}"


# ----------------------------------------------------------------------------- failing a host


def rollback_command(plan: Plan, host_name: str) -> str:
    if not plan.previous_version:
        return "(first deploy on this host: there is no earlier release to go back to)"
    return f"pyinfra -y {inventory_arg()} rollback.py --limit {host_name}"


def fail(
    h, s: Settings, plan: Plan, phase: str, error: Exception | str, roll_back: bool = False
) -> bool:
    """Stop this host's deploy: roll back when asked (and allowed), write the record and the
    report, tell the operator what failed, the state things are in and how to roll back.

    Returns False, which a callback returns to pyinfra to fail its operation (and the host)."""
    run = run_for(h)
    run.outcome, run.failure = "failed", f"{phase}: {error}"
    run.completed = time.time()
    state = "the previous release keeps serving (nothing was switched)"
    if roll_back and s.auto_rollback:
        try:
            state = roll_back_release(h, s, plan, f"{phase} failed")
            run.outcome = "failed, rolled back" if run.rolled_back else run.outcome
        except DeployError as exc:
            state = f"AUTOMATIC ROLLBACK FAILED: {exc}"
    elif roll_back:
        state = f"auto_rollback is off: {plan.release} stays current"
    applied = run.facts.get("migrations", {}).get("applied", [])
    if applied:
        run.not_rolled_back.append(f"migrations {', '.join(applied)}: never reverted automatically")
    report.mark_phase(h, "done")
    notify.failed(s, "deploy", plan.ref, h.name, run.failure, bool(run.rolled_back))
    lock.release_when_last(h, s)
    try:
        path = report.write_records(h, s, plan)
    except DeployError as exc:
        path = f"(could not write the record: {exc})"
    report.print_table(run)
    lines = [
        f"--> DEPLOY FAILED on {h.name} in phase {phase}",
        f"    what failed: {error}",
        f"    state now:   {state}",
    ]
    if run.not_rolled_back:
        lines.append(f"    not rolled back: {'; '.join(run.not_rolled_back)}")
    if run.rolled_back:
        lines.append(f"    rolled back: {'; '.join(run.rolled_back)}")
    else:
        lines.append(f"    roll back:   {rollback_command(plan, h.name)}")
    lines.append(f"    report:      {path}")
    click.echo(click.style("\n" + "\n".join(lines) + "\n", fg="red"), err=True)
    return False


def phase_check(phase: str, roll_back: bool = False):
    """Make BODY(host, s, plan, **kwargs) the execution-time callback of PHASE: a DeployError
    it raises fails the host through fail() (rolling back first when ROLL_BACK). pyinfra passes
    state and host to a callback that names them, and fails the operation when it returns
    False."""

    def wrap(body):
        def callback(state, host, s: Settings, plan: Plan, **kwargs: Any) -> bool:
            try:
                body(host, s, plan, **kwargs)
            except DeployError as exc:
                return fail(host, s, plan, phase, exc, roll_back=roll_back)
            return True

        callback.__name__ = body.__name__
        return callback

    return wrap


# ----------------------------------------------------------------------------- the balancer


def _balancer(s: Settings):
    """The lb_servers host, connected (a `--limit` to app hosts leaves it out of the run)."""
    hosts = inventory.get_group(LB_GROUP, None) or []
    if not hosts:
        raise DeployError(f"lb_mode haproxy needs a host in group {LB_GROUP}")
    return connected(hosts[0], "to drain the app hosts")


def _on_balancer(h, s: Settings, state: str, until: str, timeout: float) -> str:
    """Set H's server on the balancer to STATE, then wait until it is UNTIL (see
    runtime.haproxy_wait)."""
    lb, socket, backend = _balancer(s), s.lb_haproxy_socket, s.lb_haproxy_backend
    sh(
        lb,
        commands.haproxy_api(socket, f"set server {backend}/{h.name} state {state}"),
        what=f"setting {h.name} to {state} on {lb.name}",
    )
    return haproxy_wait(lb, socket, backend, h.name, until, timeout)


def _drain(h, s: Settings) -> None:
    if s.lb_mode == "haproxy":
        left = _on_balancer(h, s, "drain", "drained", s.release_drain_timeout)
        say(h, f"drained on {_balancer(s).name} (status, sessions, queued: {left})")
    elif s.lb_mode == "health_check":
        slots.set_draining(h, s, True)
        say(h, f"failing the balancer's health check; waiting {s.lb_health_wait}s")
        time.sleep(s.lb_health_wait)


def _put_back(h, s: Settings) -> None:
    if s.lb_mode == "haproxy":
        _on_balancer(h, s, "ready", "up", 15)
        say(h, f"back in service on {_balancer(s).name}")
    elif s.lb_mode == "health_check":
        slots.set_draining(h, s, False)
        say(h, f"passing the balancer's health check again; waiting {s.lb_health_wait}s")
        time.sleep(s.lb_health_wait)


@contextmanager
def out_of_service(h, s: Settings) -> Iterator[None]:
    """The host out of the balancer for the block, back in afterwards whatever happened."""
    _drain(h, s)
    try:
        yield
    finally:
        _put_back(h, s)


# ----------------------------------------------------------------------------- one host


def _gate(h, s: Settings) -> None:
    """The host's own check before it takes the balancer's traffic again: the history
    endpoint and the version, through app_port."""
    base = f"http://127.0.0.1:{s.app_port}"
    code, seconds, _ = timed_get(h, base + s.verify_history_path)
    if code != 200:
        raise DeployError(f"the history endpoint answered {code} through port {s.app_port}")
    code, _, body = timed_get(h, base + "/api/v1/version")
    if code != 200:
        raise DeployError(f"/api/v1/version answered {code} through port {s.app_port}")
    say(h, f"gate passed: history 200 in {seconds * 1000:.0f} ms, {body.strip()}")


def _switch_host(state, host, s: Settings, plan: Plan, restart: bool, migration_host: str) -> bool:
    if migration_host not in {h.name for h in inventory.get_active_hosts()}:
        return fail(
            host,
            s,
            plan,
            "rollout",
            f"the database work on {migration_host} failed (see above): no host is switched",
        )
    r = _rollout(s)
    index = r.batch_of[host.name]
    run = run_for(host)
    try:
        if index > 0:
            r.wait(index - 1)
    except DeployError as exc:
        r.finish(host.name, False)
        return fail(host, s, plan, "rollout", exc)
    if r.stopped_at is not None:
        r.finish(host.name, True)
        run.facts["serving"] = plan.previous_version
        return fail(
            host,
            s,
            plan,
            "rollout",
            f"the rollout stopped at {r.label(r.stopped_at)}; this host was not touched and "
            f"keeps {plan.previous_version}",
        )
    error: DeployError | None = None
    started = time.monotonic()
    if not restart and serves(host, s, plan.release_dir):
        say(host, f"{r.label(index)}: {plan.release} already serves, nothing to switch")
    else:
        say(host, f"{r.label(index)}: switching to {plan.release}")
        try:
            with out_of_service(host, s):
                done = put_in_service(host, s, plan.release_dir, restart)
                if done is None:
                    say(host, f"{plan.release} already serves: nothing to switch")
                else:
                    r.switched.append(host.name)
                    run.changed.append(f"switch: {done}")
                    say(host, done)
                _gate(host, s)
        except DeployError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - the batch must end whatever happened here
            error = DeployError(f"unexpected {type(exc).__name__}: {exc}")
    run.facts["rollout"] = {
        "batch": index + 1,
        "batches": len(r.batches),
        "seconds": round(time.monotonic() - started, 2),  # drain, switch, gate, back in service
    }
    r.finish(host.name, error is None)
    try:
        r.wait(len(r.batches) - 1)
    except DeployError as exc:
        error = error or exc
    switched = host.name in r.switched
    if error is None and r.stopped_at is not None and switched:
        failed = ", ".join(r.failed)
        error = DeployError(
            f"{r.label(r.stopped_at)} failed ({failed}): every host this run switched goes back"
        )
    if error is None:
        run.facts["serving"] = plan.release
        return True
    run.facts["serving"] = plan.previous_version
    if not switched:  # the new release never took a request here
        return fail(host, s, plan, "release", error, roll_back=True)
    with out_of_service(host, s):
        return fail(host, s, plan, "release", error, roll_back=True)


@deploy("Rollout")
def roll_out(s: Settings, plan: Plan, restart_if_changed: list[OperationMeta]) -> None:
    """Switch the app hosts batch by batch (see the module's docstring)."""
    restart = any(op.will_change for op in restart_if_changed)
    python.call(
        name=f"Ensure {plan.release} serves on port {s.app_port}, batch by batch"
        + (" (restart: .env or unit changed)" if restart else ""),
        function=_switch_host,
        s=s,
        plan=plan,
        restart=restart,
        migration_host=migration_host_name(s),
    )


def _check_balancer(state, host, s: Settings) -> bool:
    """The balancer answers on its admin socket and knows every app host as a server."""
    apps = [h.name for h in app_hosts()]
    ok, out, _ = sh(host, commands.haproxy_api(s.lb_haproxy_socket, "show stat"), check=False)
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


def check_reachable(s: Settings) -> None:
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
    if not DEPLOYMENT.warned_unreachable:
        DEPLOYMENT.warned_unreachable = True
        click.echo(
            click.style(
                f"--> {names} unreachable: not deployed (within rollout_max_fail "
                f"{s.rollout_max_fail}); they keep their release. Once they are back: "
                f"pyinfra -y {inventory_arg()} deploy.py --limit {','.join(missing)}",
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
