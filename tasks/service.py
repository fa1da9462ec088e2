"""One instance of the service on an app host, whatever the release method: its names (the unit
`<app_service>[@slot]`, the container `<app_container>[-slot]`), its port, the image of a
release, and stopping it in both forms. The release method (tasks/method.py) starts it.

An instance is either the single one on app_port (`release_strategy: restart`, slot None) or
one slot of the blue/green switch on its loopback port (tasks/slots.py). The release folder is
the unit of release either way: a unit runs its binary, a container runs the image made from
it on the host (`<app_image>:<release>`, kept as long as the folder is: app_keep_releases).
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import StringCommand, operation
from pyinfra.facts.server import Command

from tasks.commands import docker, git, shell, units
from tasks.config import Settings
from tasks.transport import say, sh

q = shell.q


def unit(s: Settings, slot: str | None = None) -> str:
    return f"{s.app_service}@{slot}" if slot else s.app_service


def container(s: Settings, slot: str | None = None) -> str:
    return f"{s.app_container}-{slot}" if slot else s.app_container


def port(s: Settings, slot: str | None = None) -> int:
    """Where the instance answers: its slot's loopback port, or app_port."""
    return getattr(s, f"app_{slot}_port") if slot else s.app_port


def image(s: Settings, release_dir: str) -> str:
    return f"{s.app_image}:{release_dir.rsplit('/', 1)[-1]}"


def image_labels(release_dir: str) -> dict[str, str]:
    """The release's version and commit, read back from its folder name (release_id)."""
    release = release_dir.rsplit("/", 1)[-1]
    version, _, commit = release.rpartition("-")
    return {
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.revision": commit,
        "monitoring-dashboard.release": release,
    }


def _load(s: Settings, release_dir: str) -> str:
    config = docker.image_config(
        image_labels(release_dir), "/" + git.SERVICE_BINARY.rsplit("/", 1)[-1], s.app_port
    )
    return docker.image_load(release_dir, git.SERVICE_BINARY, image(s, release_dir), config)


def _image_exists_command(s: Settings, release_dir: str) -> str:
    return f"docker image inspect {q(image(s, release_dir))} >/dev/null 2>&1 && echo yes || echo no"


@operation()
def image_built(settings: Settings, release_dir: str):
    """
    Ensure the image of a release exists on the host, made from its folder's binary (the same
    image ID for one release on every host).

    + settings: the deploy's settings (app_image, app_port)
    + release_dir: the release folder (its binary is all the image holds)
    """
    if host.get_fact(Command, command=_image_exists_command(settings, release_dir)) == "yes":
        host.noop(f"image {image(settings, release_dir)} exists")
        return
    yield StringCommand(_load(settings, release_dir))


def ensure_image(h, s: Settings, release_dir: str) -> None:
    """At execution time: make the release's image when it is missing (a rollback to a
    release deployed before with systemd, or whose image was removed by hand)."""
    _, out, _ = sh(h, _image_exists_command(s, release_dir))
    if out.strip() == "yes":
        return
    sh(h, _load(s, release_dir), timeout=300, what=f"making image {image(s, release_dir)}")
    say(h, f"made image {image(s, release_dir)}")


def cache_container(s: Settings) -> str | None:
    """The redis-cache container the service reaches by name on the network (container
    mode), or None (an external endpoint, reached at its address)."""
    return s.redis_container if s.redis_mode == "container" else None


def run_command(s: Settings, release_dir: str, slot: str | None = None) -> str:
    """The container of the instance, started on RELEASE_DIR's image."""
    publish = f"127.0.0.1:{port(s, slot)}" if slot else str(s.app_port)
    return docker.container_run(
        s, container(s, slot), image(s, release_dir), publish, s.app_user, cache_container(s)
    )


def form_command(s: Settings, slot: str | None = None) -> str:
    """Prints `systemd`, `docker` or nothing: the form the instance runs in now."""
    return units.instance_form(unit(s, slot), container(s, slot))


def stop(h, s: Settings, slot: str | None = None) -> None:
    """Stop the instance in both forms (disabled, or removed): it does not come back at boot."""
    sh(h, units.instance_stop(unit(s, slot), container(s, slot)), what="stopping an instance")
