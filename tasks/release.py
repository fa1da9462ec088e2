"""Build and release (checklist step 5, Option A): fetch the version on the host, `go build`
into a new release folder, switch `current` atomically, restart only on change, wait for a
healthy HTTP answer, keep N releases."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

from pyinfra import host, inventory
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.server import Command
from pyinfra.operations import files, python, server, systemd

from tasks import commands, operations, slots
from tasks.report import phase_check
from tasks.runtime import DeployError, Plan, run_for, say, sh

UNIT_TEMPLATE = Path(__file__).resolve().parent.parent / "files" / "monitoring-dashboard.service"
HEALTHY = '"authenticated":true'


def migration_host_name(s: dict[str, Any]) -> str:
    names = [h.name for h in inventory.get_active_hosts()] or [h.name for h in inventory]
    return s["deploy_migration_host"] or sorted(names)[0]


def make_plan(s: dict[str, Any]) -> Plan:
    """Read, before any change: which commit the ref names and what `current` is now."""
    p = commands.paths(s)
    ok, out = host.run_shell_command(
        command=commands.ls_remote(s["app_repo_url"], s["app_version"]), _timeout=60
    )
    if not ok:
        raise DeployError(
            f"[{host.name}] cannot reach the repository {s['app_repo_url']}: "
            f"{out.stderr.strip()[-500:]}"
        )
    commit = commands.parse_ls_remote(out.stdout, s["app_version"])
    if not commit:
        raise DeployError(
            f"[{host.name}] app_version {s['app_version']!r} names no tag, branch "
            f"or commit in {s['app_repo_url']}"
        )
    release = commands.release_id(s["app_version"], commit)
    release_dir = f"{p['releases']}/{release}"
    _, out = host.run_shell_command(command=f"readlink {commands.q(p['current'])} || true")
    previous = out.stdout.strip() or None
    return Plan(
        ref=s["app_version"],
        commit=commit,
        release=release,
        release_dir=release_dir,
        previous_dir=previous,
        previous_version=previous.rsplit("/", 1)[-1] if previous else None,
        is_migration_host=host.name == migration_host_name(s),
        release_changes=previous != release_dir,
    )


@deploy("Build the release")
def build(s: dict[str, Any], plan: Plan) -> OperationMeta:
    p = commands.paths(s)
    server.group(name=f"Ensure group {s['app_user']} exists", group=s["app_user"], system=True)
    server.user(
        name=f"Ensure service user {s['app_user']} exists (no login)",
        user=s["app_user"],
        group=s["app_user"],
        system=True,
        shell="/usr/sbin/nologin",
        home=s["app_dir"],
        create_home=False,
    )
    files.directory(name=f"Ensure {p['releases']} exists", path=p["releases"], mode="755")
    log_dir = str(Path(s["app_log_file"]).parent)
    files.directory(
        name=f"Ensure {log_dir} exists",
        path=log_dir,
        user=s["app_user"],
        group=s["app_user"],
        mode="750",
    )
    # A failed build is reported (and the lock released) by _check_built, not by pyinfra alone.
    built = operations.release_built(
        name=f"Ensure release {plan.release} is built ({plan.commit[:12]})",
        repo_url=s["app_repo_url"],
        commit=plan.commit,
        cache=p["repo_cache"],
        release_dir=plan.release_dir,
        user=s["app_user"],
        _timeout=s["app_build_timeout"],
        _ignore_errors=True,
    )
    python.call(name="Check the release was built", function=_check_built, s=s, plan=plan)
    return built


@phase_check("build")
def _check_built(host, s: dict[str, Any], plan: Plan) -> None:
    binary = f"{plan.release_dir}/{commands.SERVICE_BINARY}"
    ok, _, _ = sh(host, f"test -x {commands.q(binary)}", check=False)
    if not ok:
        raise DeployError(
            f"release {plan.release} was not built (fetch or go build failed, or "
            f"took over app_build_timeout={s['app_build_timeout']}s; its output is "
            "above)"
        )


def unit_text(s: dict[str, Any]) -> str:
    p = commands.paths(s)
    return UNIT_TEMPLATE.read_text().format(
        user=s["app_user"],
        current=p["current"],
        env_file=p["env_file"],
        binary=commands.SERVICE_BINARY,
        log_dir=str(Path(s["app_log_file"]).parent),
    )


def health_url(s: dict[str, Any]) -> str:
    return f"http://127.0.0.1:{s['app_port']}{s['app_health_path']}"


def wait_healthy(h, s: dict[str, Any]) -> str:
    return sh(
        h,
        commands.wait_healthy(health_url(s), HEALTHY, s["app_health_timeout"]),
        timeout=s["app_health_timeout"] + 15,
        what="the health check",
    )[1].strip()


def roll_back(h, s: dict[str, Any], plan: Plan, reason: str) -> str:
    """Quick rollback to the release that served before this run; returns what it did."""
    run = run_for(h)
    if not plan.release_changes:
        run.not_rolled_back.append("release: this run did not change it")
        return "the release was not changed by this run, nothing to switch back"
    blue_green = s["release_strategy"] == "blue_green"
    if not plan.previous_dir:
        if blue_green:
            slots.stop_all(h, s)
        else:
            sh(h, f"systemctl stop {commands.q(s['app_service'])}", check=False)
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
        p = commands.paths(s)
        sh(h, commands.switch_current(p["current"], plan.previous_dir), what="switching back")
        sh(h, f"systemctl restart {commands.q(s['app_service'])}", what="restart for rollback")
    wait_healthy(h, s)
    run.rolled_back.append(f"release: {plan.release} -> {plan.previous_version}")
    return f"switched back to {plan.previous_version}, which answers healthy"


@phase_check("release", roll_back=True)
def _await_health(host, s: dict[str, Any], plan: Plan) -> None:
    try:
        answer = wait_healthy(host, s)
    except DeployError as exc:
        run_for(host).metric(
            "health check after restart",
            f"200 within {s['app_health_timeout']}s",
            str(exc).split("; ")[-1],
            False,
        )
        raise
    say(host, f"healthy: {answer}")


@phase_check("release", roll_back=True)
def _activate(host, s: dict[str, Any], plan: Plan, restart: bool) -> None:
    run = run_for(host)
    try:
        done = slots.activate(host, s, plan.release_dir, restart=restart)
    except DeployError as exc:
        run.metric(
            "health check before traffic", f"200 within {s['app_health_timeout']}s", str(exc), False
        )
        raise
    if done is None:
        say(host, f"{plan.release} already serves: nothing to switch")
        return
    run.changed.append(f"switch: {done}")
    say(host, f"{done}; healthy through port {s['app_port']}: {wait_healthy(host, s)}")


@deploy("Release")
def switch(s: dict[str, Any], plan: Plan, env_op: OperationMeta) -> dict[str, OperationMeta]:
    """Put the release in service with the chosen strategy; returns the resource operations
    whose change the report lists."""
    p = commands.paths(s)
    if s["release_strategy"] == "blue_green":
        unit = slots.ensure_units(s)
        python.call(
            name=f"Ensure {plan.release} serves on port {s['app_port']} (blue/green, no "
            "failed request)",
            function=_activate,
            s=s,
            plan=plan,
            restart=unit.will_change or env_op.will_change,
        )
        ops = {"slot unit": unit}
        will_switch = plan.release_changes
    else:
        ops = _restart(s, plan, env_op)
        will_switch = ops["current release"].will_change
    if will_switch:
        server.shell(
            name=f"Ensure at most {s['app_keep_releases']} releases are kept",
            commands=[
                commands.prune_releases(
                    p["releases"],
                    s["app_keep_releases"],
                    [plan.release] + ([plan.previous_version] if plan.previous_version else []),
                )
            ],
        )
    return ops


def _restart(s: dict[str, Any], plan: Plan, env_op: OperationMeta) -> dict[str, OperationMeta]:
    """The checklist's stop/start: one unit on app_port, restarted when anything changed."""
    p = commands.paths(s)
    if host.get_fact(Command, command=slots.is_active_command(s)) == "active":
        server.shell(
            name="Ensure the blue_green proxy and slots are stopped (release_strategy: restart)",
            commands=[slots.stop_all_command(s)],
        )
    unit = files.put(
        name=f"Ensure systemd unit {s['app_service']} is installed",
        src=StringIO(unit_text(s)),
        dest=p["unit"],
        mode="644",
    )
    link = operations.current_release(
        name=f"Ensure current points at {plan.release}",
        current=p["current"],
        release_dir=plan.release_dir,
    )
    restart = unit.will_change or link.will_change or env_op.will_change
    systemd.service(
        name=f"Ensure {s['app_service']} is running and enabled"
        + (" (restart: release, .env or unit changed)" if restart else ""),
        service=s["app_service"],
        running=True,
        enabled=True,
        restarted=restart,
        daemon_reload=unit.will_change,
    )
    python.call(name="Wait for a healthy HTTP answer", function=_await_health, s=s, plan=plan)
    return {"systemd unit": unit, "current release": link}
