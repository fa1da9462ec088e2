"""The release strategy (`release_strategy`), an object chosen once by the entry script: how a
host goes from one release to the next. Each owns its commands, so no other module asks which
one is in use; both start instances through the release method (tasks/method.py).

- BlueGreen (the default): the new release starts in the idle slot behind the host's local
  proxy and takes app_port over only once healthy; no request fails (tasks/slots.py).
- Restart (the checklist's stop/start): `current` switched, the one instance restarted, then
  the health check through app_port.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.server import Command
from pyinfra.operations import server

from tasks import service, slots
from tasks.commands import git, shell
from tasks.method import Method, Systemd
from tasks.remote import wait_healthy
from tasks.transport import remote, sh


class BlueGreen:
    name = "blue_green"
    how = "blue/green, no failed request"
    health_metric = "health check before traffic"  # what a failed switch records
    logs_requests = True  # the local proxy: the canary analysis can read what each host served
    seamless = True  # a switch fails no request: the last server in service need not drain

    def __init__(self, method: Systemd) -> None:
        self.method = method
        self.s = method.s

    def ensure_ready(self, redis_op: OperationMeta | None) -> dict[str, OperationMeta]:
        """Operations: everything a switch needs on the host (the proxy, the slots' units, what
        the method needs); nothing starts here. Returns the operations whose change means the
        instances must restart."""
        restart_on = {"slot unit": slots.ensure_units(self.s)}
        restart_on.update(self.method.ensure_ready(False, redis_op))
        return restart_on

    def serves(self, h, release_dir: str) -> bool:
        """RELEASE_DIR is what answers on app_port now (as far as the units tell)."""
        state = slots.read_state(h, self.s, self.method.name)
        return (
            state.serving == release_dir == state.current
            and state.proxy_running
            and not state.stray
        )

    def put_in_service(self, h, release_dir: str, restart: bool) -> str | None:
        """Make RELEASE_DIR serve on app_port, health-gated (RESTART: even if it serves now);
        returns what was done, None when it already served and nothing was left to do. Raises
        DeployError when the release is not healthy: the release that served keeps serving."""
        return slots.activate(h, self.method, release_dir, restart=restart)

    def stop(self, h) -> None:
        """Nothing serves on the host any more."""
        slots.stop_all(h, self.s)

    def recent_requests(self, h, seconds: float) -> str:
        """The requests host H served in the last SECONDS (its local proxy's log), one per
        line."""
        return slots.recent_requests(h, self.s, seconds)

    def in_maintenance(self, h) -> bool:
        return slots.in_maintenance(h, self.s)


class Restart:
    name = "restart"
    how = "restart"
    health_metric = "health check after restart"
    logs_requests = False  # no local proxy: no canary analysis
    seamless = False  # requests fail while the one instance restarts, drained or not

    def __init__(self, method: Systemd) -> None:
        self.method = method
        self.s = method.s

    def ensure_ready(self, redis_op: OperationMeta | None) -> dict[str, OperationMeta]:
        if host.get_fact(Command, command=slots.is_active_command(self.s)) == "active":
            server.shell(
                name="Ensure the blue_green proxy and slots are stopped "
                "(release_strategy: restart)",
                commands=[slots.stop_all_command(self.s)],
            )
        return self.method.ensure_ready(True, redis_op)

    def serves(self, h, release_dir: str) -> bool:
        current = shell.read_link(shell.paths(self.s)["current"])
        _, out, _ = sh(h, f"{current}; {service.form_command(self.s)}")
        return out.split() == [release_dir, self.method.name]

    def put_in_service(self, h, release_dir: str, restart: bool) -> str:
        """`current` switched, the one instance restarted (whatever RESTART says: the caller
        found that RELEASE_DIR does not serve, or asked), then the health check."""
        p = shell.paths(self.s)
        sh(h, git.switch_current(p["current"], release_dir), what="switching current")
        started = self.method.start(h, release_dir)
        answer = wait_healthy(remote(h), self.s)
        return f"{started} restarted on {release_dir.rsplit('/', 1)[-1]}, healthy: {answer}"

    def stop(self, h) -> None:
        self.method.stop(h)

    def recent_requests(self, h, seconds: float) -> str:
        """No local proxy logs the requests (logs_requests is False): none to read."""
        return ""

    def in_maintenance(self, h) -> bool:
        """Maintenance mode needs the local proxy: never on with this strategy."""
        return False


Strategy = BlueGreen | Restart


def strategy_for(method: Method) -> Strategy:
    """The release strategy the method's settings name (a method that runs the service on the
    app hosts: systemd or docker)."""
    if not isinstance(method, Systemd):
        raise ValueError(f"release_method {method.name} runs no instance on the app hosts")
    strategies: dict[str, type[BlueGreen] | type[Restart]] = {
        "blue_green": BlueGreen,
        "restart": Restart,
    }
    return strategies[method.s.release_strategy](method)
