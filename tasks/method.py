"""The release method (`release_method`), an object chosen once by the entry script: how the
service runs. Each owns its commands, so no other module asks which one is in use.

- Systemd (Option A): each instance is a systemd unit running the release folder's binary.
- Docker (Option B): each instance is a container of the image built from the release folder.
- Helm (Option C): the service runs on Kubernetes; nothing of it runs on the app hosts, which
  build the release and do the database work (tasks/helm.py holds its commands).

Starting an instance in one form stops its other form first, so moving a host from systemd to
docker (or back) is a normal deploy that leaves nothing of the old method running.
"""

from __future__ import annotations

from pathlib import Path

from pyinfra import host
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.server import Command
from pyinfra.operations import server, systemd

from tasks import operations, service
from tasks.commands import docker, git, shell, units
from tasks.config import Settings
from tasks.context import Plan
from tasks.transport import sh

UNIT_TEMPLATE = Path(__file__).resolve().parent.parent / "files" / "monitoring-dashboard.service"
q = shell.q


def unit_text(s: Settings) -> str:
    """The single instance's systemd unit (`release_strategy: restart`)."""
    p = shell.paths(s)
    return UNIT_TEMPLATE.read_text().format(
        user=s.app_user,
        current=p["current"],
        env_file=p["env_file"],
        binary=git.SERVICE_BINARY,
        log_dir=str(Path(s.app_log_file).parent),
    )


class Systemd:
    """Option A: an instance is the unit `<app_service>` (or `<app_service>@<slot>`)."""

    name = "systemd"
    on_hosts = True  # the service runs on the app hosts
    tools = ("redis-cli", "curl", "systemctl")  # what pre-flight requires on each app host

    def __init__(self, s: Settings) -> None:
        self.s = s

    def image(self, plan: Plan) -> OperationMeta | None:
        """The operation that builds what an instance runs, beyond the release folder."""
        return None

    def ensure_ready(
        self, single: bool, redis_op: OperationMeta | None
    ) -> dict[str, OperationMeta]:
        """What instances need on the host before a switch (SINGLE: one instance on app_port,
        no slots); returns the operations whose change means the instances must restart."""
        if not single:
            return {}
        p = shell.paths(self.s)
        unit = operations.unit_file(
            f"Ensure systemd unit {self.s.app_service} is installed",
            p["unit"],
            unit_text(self.s),
            p["replaced"],
        )
        systemd.daemon_reload(name="Reload systemd (unit changed)", _if=unit.did_change)
        return {"systemd unit": unit}

    def problems(self, h) -> tuple[list[str], dict[str, str]]:
        """What this method needs on host H beyond the tools: (problems, facts)."""
        return [], {}

    def clients(self, app_hosts: int) -> tuple[int, str]:
        """How many processes open database connections, and who they are."""
        return app_hosts, f"{app_hosts} app hosts"

    def start(self, h, release_dir: str, slot: str | None = None) -> str:
        """(Re)start the instance on RELEASE_DIR, its other form stopped first. A unit runs what
        its link points at: the caller points the slot's link (or `current`) at RELEASE_DIR
        before. Returns what was started."""
        s, name = self.s, service.unit(self.s, slot)
        sh(
            h,
            f"{docker.container_remove(service.container(s, slot))}; "
            f"systemctl enable -q {q(name)} && systemctl restart {q(name)}",
            what=f"starting {name}",
        )
        return f"unit {name}"

    def stop(self, h, slot: str | None = None) -> None:
        service.stop(h, self.s, slot)


class Docker(Systemd):
    """Option B: an instance is the container `<app_container>` (or `<app_container>-<slot>`)
    of the image `<app_image>:<release>`, on the Docker network shared with redis-cache."""

    name = "docker"

    def image(self, plan: Plan) -> OperationMeta | None:
        return service.image_built(
            name=f"Ensure image {service.image(self.s, plan.release_dir)} is made from the "
            "release's binary",
            settings=self.s,
            release_dir=plan.release_dir,
        )

    def ensure_ready(
        self, single: bool, redis_op: OperationMeta | None
    ) -> dict[str, OperationMeta]:
        """The user-defined network (with redis-cache on it) and the container's spec, a file
        whose change (a variable the `docker run` flags depend on) means the containers must
        restart."""
        s = self.s
        network, redis = s.docker_network, service.cache_container(s)
        command = docker.network_ready(network, redis)
        if host.get_fact(Command, command=docker.network_state(network, redis)) != "ready":
            server.shell(name=f"Ensure Docker network {network} exists", commands=[command])
        elif redis_op is not None:  # a new redis-cache container must join the network again
            server.shell(
                name=f"Ensure {s.redis_container} is on Docker network {network}",
                commands=[command],
                _if=redis_op.did_change,
            )
        spec = operations.text_file(
            name="Ensure the container spec is current (docker run flags)",
            path=f"{shell.paths(s)['state']}/container.spec",
            content=service.run_command(s, "<release>") + "\n",
            mode=600,
        )
        return {"container": spec}

    def problems(self, h) -> tuple[list[str], dict[str, str]]:
        ok, out, err = sh(h, "docker info -f '{{.ServerVersion}}'", check=False)
        if ok:
            return [], {"docker": out.strip()}
        return [f"Docker Engine does not answer (release_method docker): {err.strip()}"], {}

    def start(self, h, release_dir: str, slot: str | None = None) -> str:
        s, name, image = self.s, service.container(self.s, slot), service.image(self.s, release_dir)
        service.ensure_image(h, s, release_dir)
        sh(
            h,
            f"{units.unit_stop(service.unit(s, slot))}; "
            f"{docker.network_ready(s.docker_network, service.cache_container(s))} && "
            f"{service.run_command(s, release_dir, slot)}",
            what=f"starting container {name}",
        )
        return f"container {name} ({image})"


class Helm:
    """Option C: the pods run the service (tasks/helm.py); the app hosts build the release and
    do the database work, and no instance runs on them."""

    name = "helm"
    on_hosts = False
    tools = ()

    def __init__(self, s: Settings) -> None:
        self.s = s

    def image(self, plan: Plan) -> OperationMeta | None:
        return None  # the cluster pulls helm_image

    def problems(self, h) -> tuple[list[str], dict[str, str]]:
        redis = f"{self.s.redis_host} in the cluster (not reachable from here, not checked)"
        return [], {"redis": redis}

    def clients(self, app_hosts: int) -> tuple[int, str]:
        return self.s.helm_replicas, f"{self.s.helm_replicas} pods"


Method = Systemd | Docker | Helm


def method_for(s: Settings) -> Method:
    """The release method S names."""
    methods: dict[str, type[Systemd] | type[Helm]] = {
        "systemd": Systemd,
        "docker": Docker,
        "helm": Helm,
    }
    return methods[s.release_method](s)
