"""The zero-downtime switch (`release_strategy: blue_green`, the default).

Two instances of the service, slots `blue` and `green`, listen on loopback ports of their own
(`app_blue_port`, `app_green_port`); a local HAProxy alone listens on `app_port`. One slot is
active. A switch starts the new release (or the same one with a new `.env`) in the idle slot
while the proxy holds that slot in maintenance, checks its health on its own port, lets it in,
drains the active slot (requests in flight finish) and stops it. A release that fails its
health check is stopped before the proxy ever sends it a request: the active slot keeps
serving. Quick and automatic rollbacks are the same switch, back to the previous release.

On the host: `<app_dir>/slots/{blue,green}` link to releases, `slots/active` names the active
slot, `current` links to the active release (as with `restart`), the proxy's unit
`<service>-proxy`, and each slot runs as the unit `<service>@<slot>` or, with `release_method:
docker`, the container `<app_container>-<slot>` (tasks/method.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from pyinfra import host
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.server import Command
from pyinfra.operations import apt, files, systemd
from pyinfra.operations.util import any_changed

from tasks import operations, service
from tasks.commands import git, guard, haproxy, http, replaced, shell, units
from tasks.config import Settings
from tasks.method import Systemd
from tasks.remote import HEALTHY, DeployError, haproxy_wait
from tasks.transport import remote, say, sh

FILES = Path(__file__).resolve().parent.parent / "files"
SLOTS = ("blue", "green")
BACKEND = "slots"
q = shell.q


def proxy_service(s: Settings) -> str:
    return f"{s.app_service}-proxy"


def _paths(s: Settings) -> dict[str, str]:
    slots = f"{s.app_dir}/slots"
    return {
        "slots": slots,
        "active": f"{slots}/active",
        "config": f"/etc/{s.app_service}/proxy.cfg",
        "socket": f"/run/{proxy_service(s)}/admin.sock",
        "drain_map": f"/etc/{s.app_service}/drain.map",
        "slot_unit": f"/etc/systemd/system/{s.app_service}@.service",
        "proxy_unit": f"/etc/systemd/system/{proxy_service(s)}.service",
    }


def proxy_config_text(s: Settings) -> str:
    return (
        (FILES / "proxy.cfg")
        .read_text()
        .format(
            socket=_paths(s)["socket"],
            drain_map=_paths(s)["drain_map"],
            bind="*",
            port=s.app_port,
            health_path=s.app_health_path,
            liveness_path=s.app_liveness_path,
            retry_after=s.runbook_maintenance_retry_after,
            maintenance_message=s.runbook_maintenance_message,
            blue_port=service.port(s, "blue"),
            green_port=service.port(s, "green"),
            metrics=_metrics_frontend(s.metrics_proxy_port),
        )
    )


def _metrics_frontend(port: int) -> str:
    """proxy.cfg's last part: HAProxy's own Prometheus exporter on PORT (metrics_proxy_port),
    nothing when it is 0."""
    if not port:
        return ""
    return (
        "\n# Prometheus (metrics_proxy_port): HAProxy's own exporter, the slots' figures\n"
        + haproxy.prometheus_frontend(port)
    )


def slot_unit_text(s: Settings) -> str:
    p = shell.paths(s)
    return (
        (FILES / "monitoring-dashboard@.service")
        .read_text()
        .format(
            proxy_service=proxy_service(s),
            user=s.app_user,
            slots=_paths(s)["slots"],
            env_file=p["env_file"],
            binary=git.SERVICE_BINARY,
            log_dir=str(Path(s.app_log_file).parent),
        )
    )


def proxy_unit_text(s: Settings) -> str:
    return (
        (FILES / "monitoring-dashboard-proxy.service")
        .read_text()
        .format(
            service=s.app_service,
            port=s.app_port,
            config=_paths(s)["config"],
            runtime_dir=proxy_service(s),
        )
    )


def _proxy_and_slot_folders(s: Settings) -> None:
    """Operations: HAProxy and socat installed, the slots' folder with each slot's address,
    the proxy's folder and its drain map."""
    p = _paths(s)
    apt.packages(name="Ensure haproxy and socat are installed", packages=["haproxy", "socat"])
    config_dir = str(Path(p["config"]).parent)
    operations.folders(
        name=f"Ensure {p['slots']} and {config_dir} exist",
        wanted=((p["slots"], 755, "root", "root"), (config_dir, 755, "root", "root")),
    )
    for slot in SLOTS:
        operations.text_file(
            name=f"Ensure slot {slot} listens on 127.0.0.1:{service.port(s, slot)}",
            path=f"{p['slots']}/{slot}.env",
            content=f"LISTEN_ADDR=127.0.0.1:{service.port(s, slot)}\n",
            mode=644,
        )
    files.file(name=f"Ensure {p['drain_map']} exists", path=p["drain_map"], mode="644")


def ensure_units(s: Settings) -> OperationMeta:
    """The proxy, its configuration and the slots' units (operations; nothing starts here).
    Returns the slots' unit, whose change means the instances must restart."""
    p = _paths(s)
    _proxy_and_slot_folders(s)
    keep_in = shell.paths(s)["replaced"]
    config = operations.text_file(
        name=f"Ensure the proxy configuration {p['config']} is current (haproxy -c)",
        path=p["config"],
        content=proxy_config_text(s),
        mode=644,
        check=replaced.haproxy_check(replaced.candidate(p["config"])),
        keep_in=keep_in,
    )
    proxy_unit = operations.unit_file(
        f"Ensure systemd unit {proxy_service(s)} is installed",
        p["proxy_unit"],
        proxy_unit_text(s),
        keep_in,
    )
    unit = operations.unit_file(
        f"Ensure systemd unit {s.app_service}@.service (slots) is installed",
        p["slot_unit"],
        slot_unit_text(s),
        keep_in,
    )
    systemd.daemon_reload(name="Reload systemd (units changed)", _if=any_changed(proxy_unit, unit))
    # A running proxy reloads without closing its port; a stopped one starts in activate().
    if host.get_fact(Command, command=is_active_command(s)) == "active":
        systemd.service(
            name=f"Reload {proxy_service(s)} (configuration changed)",
            service=proxy_service(s),
            reloaded=True,
            _if=any_changed(config, proxy_unit),
        )
    return unit


@dataclass
class SlotState:
    """What runs on one host now, read at execution time. A form is `systemd`, `docker` or
    "" (not running); see tasks/service.py."""

    active: str | None
    links: dict[str, str]
    current: str  # where `current` points (it names the active release)
    forms: dict[str, str]
    proxy_running: bool
    wanted_form: str  # the form release_method starts instances in

    @property
    def running(self) -> dict[str, bool]:
        return {slot: bool(self.forms[slot]) for slot in SLOTS}

    @property
    def settled(self) -> bool:
        """Exactly the active slot runs (what every finished switch leaves)."""
        return self.active is not None and self.running == {
            slot: slot == self.active for slot in SLOTS
        }

    @property
    def stray(self) -> str | None:
        """The idle slot when it runs (left by a killed run): it must not serve."""
        if self.active and self.running[self.active]:
            idle = "green" if self.active == "blue" else "blue"
            return idle if self.running[idle] else None
        return None

    @property
    def serving(self) -> str | None:
        """The release the active slot serves, when it runs in the wanted form (one in the
        other form is switched over like a new release)."""
        if self.active and self.forms[self.active] == self.wanted_form:
            return self.links.get(self.active)
        return None


def read_state(h, s: Settings, wanted_form: str) -> SlotState:
    """What runs on host H now; WANTED_FORM is the form the release method starts."""
    p = _paths(s)
    instances = [(service.unit(s, slot), service.container(s, slot)) for slot in SLOTS]
    _, out, _ = sh(
        h,
        units.slot_state(
            p["active"],
            [f"{p['slots']}/{slot}" for slot in SLOTS] + [shell.paths(s)["current"]],
            instances,
            proxy_service(s),
        ),
        what="reading the slots",
    )
    lines = out.splitlines() + [""] * 7
    active, blue, green, current, blue_form, green_form, proxy = lines[:7]
    return SlotState(
        active=active if active in SLOTS else None,
        links={"blue": blue, "green": green},
        current=current,
        forms={"blue": blue_form, "green": green_form},
        proxy_running=proxy == "active",
        wanted_form=wanted_form,
    )


def _api(h, s: Settings, *lines: str) -> None:
    sh(h, haproxy.haproxy_api(_paths(s)["socket"], *lines), what="the proxy's admin socket")


def _wait(h, s: Settings, slot: str, until: str, timeout: float) -> str:
    return haproxy_wait(remote(h), _paths(s)["socket"], BACKEND, slot, until, timeout)


def proxy_statuses(h, s: Settings) -> dict[str, str]:
    """Each slot's status on the local proxy (UP, DRAIN, MAINT, DOWN...)."""
    command = haproxy.server_statuses(_paths(s)["socket"], BACKEND)
    _, out, _ = sh(h, command, what="the proxy's stats")
    found = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    return {slot: found.get(slot, "") for slot in SLOTS}


def _make_active(h, s: Settings, slot: str, release_dir: str) -> None:
    """Record SLOT as the active one and `current` as its release (one atomic rename each)."""
    marker = f"{_paths(s)['active']}.new"
    sh(
        h,
        f"echo {slot} > {q(marker)} && mv -f {q(marker)} {q(_paths(s)['active'])} && "
        + git.switch_current(shell.paths(s)["current"], release_dir),
        what=f"making slot {slot} the active one",
    )


def _adopt_serving(h, s: Settings, state: SlotState) -> SlotState:
    """A switch killed after its new slot took traffic leaves `slots/active` naming the old
    one: the slot the proxy sends requests to, alone, is the active one."""
    statuses = proxy_statuses(h, s)
    serving = [x for x in SLOTS if state.running[x] and statuses[x].startswith("UP")]
    if len(serving) != 1 or serving[0] == state.active:
        return state
    slot = serving[0]
    _make_active(h, s, slot, state.links[slot])
    say(h, f"slot {slot} takes the traffic (an interrupted switch got that far): made it active")
    return replace(state, active=slot, current=state.links[slot])


def _settle_leftovers(h, s: Settings, state: SlotState) -> SlotState:
    """What an earlier, killed run left: the slot the proxy serves from made the active one,
    a stray idle slot drained and stopped. Returns the state after."""
    if state.proxy_running and not state.settled:
        state = _adopt_serving(h, s, state)
    if state.stray:  # drained first: it may have been taking requests when the run died
        if state.proxy_running:
            _api(h, s, f"set server {BACKEND}/{state.stray} state drain")
            _wait(h, s, state.stray, "drained", s.release_drain_timeout)
            _api(h, s, f"set server {BACKEND}/{state.stray} state maint")
        service.stop(h, s, state.stray)
        say(h, f"drained and stopped slot {state.stray}, left running by an earlier run")
    return state


def _start_idle(h, method: Systemd, state: SlotState, new: str, release_dir: str) -> None:
    """RELEASE_DIR started in slot NEW, held out of the proxy, health-checked and warmed up on
    its own port; stopped again, and DeployError, when it is not healthy."""
    s, p, port = method.s, _paths(method.s), service.port(method.s, new)
    if state.proxy_running:
        _api(h, s, f"set server {BACKEND}/{new} state maint")
    sh(h, git.switch_current(f"{p['slots']}/{new}", release_dir), what=f"linking slot {new}")
    started = method.start(h, release_dir, new)
    url = f"http://127.0.0.1:{port}{s.app_health_path}"
    ok, out, err = sh(
        h,
        http.wait_healthy(url, HEALTHY, s.app_health_timeout),
        timeout=s.app_health_timeout + 15,
        check=False,
    )
    if not ok:
        service.stop(h, s, new)
        old = state.active if state.active and state.running[state.active] else None
        serving = f"slot {old} keeps serving" if old else "nothing served before"
        raise DeployError(
            f"the new instance (slot {new}, port {port}) is not healthy; it was stopped "
            f"before it received any request, {serving}: {(err or out).strip()[-300:]}"
        )
    say(h, f"slot {new} ({started}) healthy on port {port}: {out.strip()}")
    if s.release_warmup_requests:
        warm = f"http://127.0.0.1:{port}{s.verify_history_path}"
        command = http.warm_up(warm, s.release_warmup_requests, s.release_warmup_parallel)
        _, answered, _ = sh(h, command, timeout=60, what=f"warming slot {new} up")
        say(h, f"slot {new} warmed up before any traffic: {answered.strip()}")


def _hand_over(h, s: Settings, state: SlotState, new: str, old: str | None) -> None:
    """The proxy sends requests to slot NEW, then OLD drains; on a host's first switch the
    proxy takes app_port over from the single instance."""
    if state.proxy_running:
        _api(h, s, f"set server {BACKEND}/{new} state ready")
        _wait(h, s, new, "up", 10)
        if old:
            _api(h, s, f"set server {BACKEND}/{old} state drain")
            left = _wait(h, s, old, "drained", s.release_drain_timeout)
            _api(h, s, f"set server {BACKEND}/{old} state maint")
            say(h, f"slot {old} drained ({left})")
    else:
        service.stop(h, s)
        sh(h, f"systemctl enable --now {q(proxy_service(s))}", what="starting the proxy")
        _wait(h, s, new, "up", 10)


def activate(h, method: Systemd, release_dir: str, restart: bool = False) -> str | None:
    """Make RELEASE_DIR serve on app_port through the proxy, no request failing on the way.

    Nothing happens (None is returned) when it already serves and RESTART is not asked;
    otherwise returns what was done. Raises DeployError when the new instance is not healthy,
    after stopping it: the slot that served before still serves, and got every request."""
    s = method.s
    state = _settle_leftovers(h, s, read_state(h, s, method.name))
    if state.serving == release_dir and state.proxy_running and not restart:
        if state.current != release_dir:  # left stale by hand or by an interrupted run
            sh(h, git.switch_current(shell.paths(s)["current"], release_dir))
        return None
    old = state.active if state.active and state.running[state.active] else None
    new = "green" if old == "blue" else "blue"
    _start_idle(h, method, state, new, release_dir)
    _hand_over(h, s, state, new, old)
    if old:
        service.stop(h, s, old)
    _make_active(h, s, new, release_dir)
    release = release_dir.rsplit("/", 1)[-1]
    return f"slot {new} serves {release}" + (f", slot {old} drained and stopped" if old else "")


def set_draining(h, s: Settings, draining: bool) -> None:
    """Make the health path on app_port answer 503 (DRAINING) or pass through again, at once
    (the admin socket; a proxy restart forgets it, which ends the drain)."""
    drain_map = _paths(s)["drain_map"]
    line = f"add map {drain_map} drain 1" if draining else f"del map {drain_map} drain"
    _api(h, s, line)


def in_maintenance(h, s: Settings) -> bool:
    """Maintenance mode is on on host H (runbook=maintenance-on; its map's file says so)."""
    drain_map = _paths(s)["drain_map"]
    ok, _, _ = sh(h, f"grep -qx 'maintenance 1' {q(drain_map)}", check=False)
    return ok


def recent_requests(h, s: Settings, seconds: float) -> str:
    """The requests host H's local proxy served in the last SECONDS, one per line (`time status
    total-ms`, see files/proxy.cfg's ring)."""
    command = haproxy.recent_events(_paths(s)["socket"], "access", seconds)
    _, out, _ = sh(h, command, what="reading the local proxy's request log")
    return out


def latencies(s: Settings, seconds: float) -> str:
    """A command printing the total milliseconds of each request the local proxy served in the
    last SECONDS (tasks/guard.py's sample)."""
    return guard.ring_latencies(_paths(s)["socket"], "access", seconds)


def set_maintenance(h, s: Settings, on: bool) -> bool:
    """Maintenance mode ON or off on host H; whether that changed anything."""
    p = _paths(s)
    command = haproxy.map_flag(p["socket"], p["drain_map"], "maintenance", on)
    _, out, _ = sh(h, command, what="maintenance mode in the proxy's map")
    return out.strip() == "changed"


def config_path(s: Settings) -> str:
    """The local proxy's configuration file."""
    return _paths(s)["config"]


def reload_proxy_command(s: Settings) -> str:
    """The running local proxy reads its configuration again (nothing when it is stopped)."""
    proxy = q(proxy_service(s))
    return f"if systemctl is-active -q {proxy}; then systemctl reload {proxy}; fi"


def is_active_command(s: Settings) -> str:
    """Prints `active` when the proxy runs (the host is in the blue_green shape)."""
    return f"systemctl is-active {q(proxy_service(s))} || true"


def stop_all_command(s: Settings) -> str:
    """Leave the blue_green shape: proxy and slots (units or containers) stopped and disabled
    (then the single instance of `release_strategy: restart` can take app_port)."""
    slots = [units.instance_stop(service.unit(s, x), service.container(s, x)) for x in SLOTS]
    return "; ".join([units.unit_stop(proxy_service(s)), *slots])


def stop_all(h, s: Settings) -> None:
    sh(h, stop_all_command(s))
