"""How a host's part of a run ends, in one place for deploys, rollbacks and runbooks.

- `failed()`: the team told, the lock released once the last app host of the run has ended, and
  the operator told what failed, the state things are in and what to do next.
- `deploy_failed()`: a deploy's failure: the switch undone when the phase asks for it (and
  auto_rollback allows), the deployment record, the manifest and the report written, then
  `failed()`.
- `ended()`: the last operation of every run that went well on a host.
- `phase_check()`: makes a phase's execution-time check a pyinfra callback whose DeployError
  goes down deploy_failed().
- `deploy_ends_on_any_failure()`: any other operation that fails on a host (pyinfra's own, a
  command, a lost connection) goes down deploy_failed() too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from pyinfra.operations import python

from tasks import lock, notify, slots, telemetry, tracing
from tasks.commands import replaced, shell
from tasks.config import Settings
from tasks.context import Plan, RunContext
from tasks.records import mark_phase, print_table, write_records
from tasks.remote import DeployError
from tasks.strategy import Strategy
from tasks.transport import say, sh

# the phases that run once the host serves the new release: a failure there switches back
SWITCH_BACK = ("verify", "loadtest", "monitor")


def failed(
    ctx: RunContext,
    h,
    s: Settings,
    version: str,
    step: str,
    error: Exception | str,
    lines: list[str],
    rolled_back: bool = False,
) -> bool:
    """Host H's part of the run failed in STEP. Returns False, which a callback returns to
    pyinfra to fail its operation (and the host)."""
    notify.failed(ctx, s, version, h.name, f"{step}: {error}", rolled_back)
    telemetry.host_ended(ctx, h, s, version)
    lock.release_when_last(ctx, h, s)
    block = [f"--> {ctx.kind.upper()} FAILED on {h.name} in {step}", f"    what failed: {error}"]
    click.echo(click.style("\n" + "\n".join(block + lines) + "\n", fg="red"), err=True)
    return False


def switch_back(ctx: RunContext, h, plan: Plan, strategy: Strategy, reason: str) -> str:
    """Quick rollback of host H to the release that served before this run (STRATEGY switches
    it); returns the state it left."""
    run = ctx.run(h)
    if not plan.release_changes:
        run.not_rolled_back.append("release: this run did not change it")
        return "the release was not changed by this run, nothing to switch back"
    if not plan.previous_dir:
        strategy.stop(h)
        run.not_rolled_back.append("release: first deploy, no previous release; service stopped")
        return "first deploy on this host: no previous release, the service was stopped"
    say(h, f"rolling back to {plan.previous_version} ({reason})")
    if strategy.put_in_service(h, plan.previous_dir, restart=False) is None:
        run.not_rolled_back.append(
            f"release: {plan.release} never took a request, {plan.previous_version} kept serving"
        )
        return f"{plan.release} never served a request: {plan.previous_version} kept serving"
    run.rolled_back.append(f"release: {plan.release} -> {plan.previous_version}")
    return f"switched back to {plan.previous_version}, which answers healthy"


def restore_replaced(h, s: Settings) -> list[str]:
    """Put back on host H every file this run replaced (.env, the units, the proxy
    configuration: tasks/commands/replaced.py), then have systemd and the running proxy read
    them again. Returns the files put back."""
    restored = sh(
        h,
        replaced.restore_previous(shell.paths(s)["replaced"]),
        what="putting back the files this run replaced",
    )[1].split()
    after = []
    if any(path.endswith(".service") for path in restored):
        after.append("systemctl daemon-reload")
    if slots.config_path(s) in restored:
        after.append(slots.reload_proxy_command(s))
    if after:
        sh(h, " && ".join(after), what="reloading what was put back")
    return restored


def _undo(
    ctx: RunContext, h, s: Settings, plan: Plan, phase: str, strategy: Strategy | None
) -> tuple[str, list[str]]:
    """What a failed deploy undoes on host H: the files it replaced, while the previous release
    serves (nothing was switched here, or it is switched back now), and the switch when
    STRATEGY is given and auto_rollback allows. Returns (the state it left, the files put
    back)."""
    run = ctx.run(h)
    switched = ctx.deploy.rollout is not None and h.name in ctx.deploy.rollout.switched
    switching_back = strategy if s.auto_rollback else None
    restored: list[str] = []
    if not switched or switching_back is not None:
        try:
            restored = restore_replaced(h, s)
        except DeployError as exc:
            run.not_rolled_back.append(f"the files this run replaced: {exc}")
    if restored:
        run.facts["files_put_back"] = restored
    state = "the previous release keeps serving (nothing was switched)"
    if switching_back is not None:
        try:
            state = switch_back(ctx, h, plan, switching_back, f"{phase} failed")
            run.outcome = "failed, rolled back" if run.rolled_back else run.outcome
        except DeployError as exc:
            state = f"AUTOMATIC ROLLBACK FAILED: {exc}"
    elif strategy is not None:
        state = f"auto_rollback is off: {plan.release} stays current"
    return state, restored


def deploy_failed(
    ctx: RunContext,
    h,
    s: Settings,
    plan: Plan,
    phase: str,
    error: Exception | str,
    strategy: Strategy | None = None,
) -> bool:
    """Stop host H's deploy in PHASE: undo what can be (_undo), write the record and the
    report, and end through failed()."""
    run = ctx.run(h)
    run.outcome, run.failure = "failed", f"{phase}: {error}"
    run.completed = time.time()
    state, restored = _undo(ctx, h, s, plan, phase, strategy)
    applied = run.applied_migrations()
    if applied:
        run.not_rolled_back.append(f"migrations {', '.join(applied)}: never reverted automatically")
    mark_phase(run, "done")
    path: Path | str
    try:
        path = write_records(ctx, h, s, plan)
    except DeployError as exc:
        path = f"(could not write the record: {exc})"
    print_table(run)
    lines = [f"    state now:   {state}"]
    if restored:
        lines.append(f"    put back:    {', '.join(restored)} (as they were before this run)")
    if run.not_rolled_back:
        lines.append(f"    not rolled back: {'; '.join(run.not_rolled_back)}")
    if run.rolled_back:
        lines.append(f"    rolled back: {'; '.join(run.rolled_back)}")
    elif plan.previous_version:
        lines.append(f"    roll back:   pyinfra -y {ctx.inventory} rollback.py --limit {h.name}")
    else:
        lines.append(
            "    roll back:   (first deploy on this host: no earlier release to go back to)"
        )
    lines.append(f"    report:      {path}")
    return failed(ctx, h, s, plan.ref, phase, error, lines, bool(run.rolled_back))


def phase_check(phase: str) -> Callable:
    """Make BODY(ctx, host, s, plan, **kwargs) the execution-time callback of PHASE: a
    DeployError it raises fails the host through deploy_failed(), switching back first when
    PHASE is one of SWITCH_BACK (the operation is then given `strategy=`, the run's strategy).
    pyinfra passes state and host to a callback that names them, and fails the operation when
    it returns False."""
    roll_back = phase in SWITCH_BACK

    def wrap(body: Callable) -> Callable:
        def callback(
            state,
            host,
            ctx: RunContext,
            s: Settings,
            plan: Plan,
            strategy: Strategy | None = None,
            **kwargs: Any,
        ) -> bool:
            try:
                body(ctx, host, s, plan, **kwargs)
            except DeployError as exc:
                return deploy_failed(
                    ctx, host, s, plan, phase, exc, strategy if roll_back else None
                )
            return True

        callback.__name__ = body.__name__
        return callback

    return wrap


def deploy_ends_on_any_failure(
    ctx: RunContext, h, s: Settings, plan: Plan, strategy: Strategy | None
) -> None:
    """Any operation that fails on host H (after the lock is taken) ends H's deploy through
    deploy_failed(), in the phase it was in, switching back (STRATEGY) in a phase of
    SWITCH_BACK: the same end as a failed check."""

    def ending(error: str) -> bool:
        run = ctx.run(h)
        phase = run.phases[-1]["phase"] if run.phases else "preflight"
        return deploy_failed(
            ctx, h, s, plan, phase, error, strategy if phase in SWITCH_BACK else None
        )

    ctx.on_failure(h, ending)


def _ended(state, host, ctx: RunContext, s: Settings, version: str) -> bool:
    telemetry.host_ended(ctx, host, s, version)
    lock.release_when_last(ctx, host, s)
    notify.ended(ctx, host, s, version)
    return True


def ended(ctx: RunContext, s: Settings, version: str) -> None:
    """The last operation of a run: the last app host to get here releases the lock and tells
    the team how the run ended; once pyinfra has left every host, the run's metrics and
    annotation go out (tasks/telemetry.py), and its trace (tasks/tracing.py)."""
    ctx.at_end["telemetry"] = lambda: telemetry.run_ended(ctx, s, version)
    ctx.at_end["trace"] = lambda: tracing.export(ctx, s, version)
    python.call(
        name="Release the deploy lock and tell the team, once every app host is done",
        function=_ended,
        ctx=ctx,
        s=s,
        version=version,
    )
