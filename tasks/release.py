"""Build and release (checklist step 5): fetch the version on the host, `go build` into a new
release folder (and, with `release_method: docker`, the image of that folder), switch `current`
atomically, restart only on change, wait for a healthy HTTP answer, keep N releases (and their
images)."""

from __future__ import annotations

import atexit
import hashlib
import shutil
import tempfile
from io import StringIO
from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.files import File
from pyinfra.facts.server import Command
from pyinfra.operations import files, python, server, systemd

from tasks import commands, operations, service, slots
from tasks.config import Settings
from tasks.rollout import phase_check
from tasks.runtime import DEPLOYMENT, DeployError, Plan, migration_host_name, run_for, say, sh

UNIT_TEMPLATE = Path(__file__).resolve().parent.parent / "files" / "monitoring-dashboard.service"


def make_plan(s: Settings) -> Plan:
    """Read, before any change: which commit the ref names and what `current` is now."""
    p = commands.paths(s)
    ok, out = host.run_shell_command(
        command=commands.ls_remote(s.app_repo_url, s.app_version), _timeout=60
    )
    if not ok:
        raise DeployError(
            f"[{host.name}] cannot reach the repository {s.app_repo_url}: "
            f"{out.stderr.strip()[-500:]}"
        )
    commit = commands.parse_ls_remote(out.stdout, s.app_version)
    if not commit:
        raise DeployError(
            f"[{host.name}] app_version {s.app_version!r} names no tag, branch "
            f"or commit in {s.app_repo_url}"
        )
    release = commands.release_id(s.app_version, commit)
    release_dir = f"{p['releases']}/{release}"
    _, out = host.run_shell_command(command=f"readlink {commands.q(p['current'])} || true")
    previous = out.stdout.strip() or None
    return Plan(
        ref=s.app_version,
        commit=commit,
        release=release,
        release_dir=release_dir,
        previous_dir=previous,
        previous_version=previous.rsplit("/", 1)[-1] if previous else None,
        is_migration_host=host.name == migration_host_name(s),
        release_changes=previous != release_dir,
    )


@deploy("Build the release")
def build(s: Settings, plan: Plan) -> OperationMeta:
    p = commands.paths(s)
    server.group(name=f"Ensure group {s.app_user} exists", group=s.app_user, system=True)
    server.user(
        name=f"Ensure service user {s.app_user} exists (no login)",
        user=s.app_user,
        group=s.app_user,
        system=True,
        shell="/usr/sbin/nologin",
        home=s.app_dir,
        create_home=False,
    )
    files.directory(name=f"Ensure {p['releases']} exists", path=p["releases"], mode="755")
    log_dir = str(Path(s.app_log_file).parent)
    files.directory(
        name=f"Ensure {log_dir} exists",
        path=log_dir,
        user=s.app_user,
        group=s.app_user,
        mode="750",
    )
    builder = migration_host_name(s)
    built = build = None
    if s.app_build == "each" or host.name == builder:
        # A failed build is reported (and the lock released) by _check_built.
        built = build = operations.release_built(
            name=f"Ensure release {plan.release} is built ({plan.commit[:12]})",
            repo_url=s.app_repo_url,
            commit=plan.commit,
            cache=p["repo_cache"],
            release_dir=plan.release_dir,
            user=s.app_user,
            _timeout=s.app_build_timeout,
            _ignore_errors=True,
        )
    if s.app_build == "once":
        # On every host, so that it orders the builder's build before any host's receive.
        python.call(
            name=f"Pack the release on {builder} for the other app hosts",
            function=_pack,
            s=s,
            plan=plan,
            builder=builder,
        )
    if built is None and not host.get_fact(
        File, path=f"{plan.release_dir}/{commands.SERVICE_BINARY}"
    ):
        DEPLOYMENT.awaiting_release.add(host.name)
        built = python.call(
            name=f"Ensure release {plan.release} is here (built on {builder}, sha256 checked)",
            function=_receive,
            s=s,
            plan=plan,
            builder=builder,
        )
    python.call(
        name="Check the release was built",
        function=_check_built,
        s=s,
        plan=plan,
        built=build,
    )
    if service.is_docker(s):
        image = service.image_built(
            name=f"Ensure image {service.image(s, plan.release_dir)} is built (files/Dockerfile)",
            settings=s,
            release_dir=plan.release_dir,
        )
        built = built or image
    return built


def _pack(state, host, s: Settings, plan: Plan, builder: str) -> bool:
    """On the builder: the built release as a tarball on the deploying machine, with its
    sha256, for the hosts that do not have it (nothing to do when none lacks it)."""
    if host.name != builder or not DEPLOYMENT.awaiting_release or not _binary_here(host, plan):
        return True
    remote = f"{commands.paths(s)['state']}/{plan.release}.tar.gz"
    sh(host, commands.pack_release(plan.release_dir, remote), timeout=300, what="packing")
    local = Path(tempfile.mkdtemp(prefix="mdd-release-")) / f"{plan.release}.tar.gz"
    atexit.register(shutil.rmtree, local.parent, True)
    if not host.get_file(remote, str(local)):
        raise DeployError(f"could not fetch {remote} from {host.name}")
    sh(host, f"rm -f {commands.q(remote)}")
    digest = hashlib.sha256(local.read_bytes()).hexdigest()
    DEPLOYMENT.release_artifact = (str(local), digest)
    run_for(host).facts["artifact"] = {"sha256": digest, "built_on": host.name}
    say(host, f"packed {plan.release}: {local.stat().st_size} bytes, sha256 {digest[:16]}...")
    return True


@phase_check("build")
def _receive(host, s: Settings, plan: Plan, builder: str) -> None:
    if DEPLOYMENT.release_artifact is None:
        raise DeployError(f"release {plan.release} was not built on {builder}: nothing to receive")
    local, digest = DEPLOYMENT.release_artifact
    remote = f"{commands.paths(s)['state']}/{plan.release}.tar.gz"
    if not host.put_file(local, remote):
        raise DeployError(f"could not upload the release to {remote}")
    sh(
        host,
        commands.unpack_release(remote, digest, plan.release_dir, s.app_user),
        timeout=300,
        what=f"unpacking {plan.release} (sha256 {digest[:16]}...)",
    )
    run_for(host).facts["artifact"] = {"sha256": digest, "built_on": builder}
    say(host, f"received {plan.release}, sha256 {digest[:16]}... verified")


def _binary_here(host, plan: Plan) -> bool:
    binary = f"{plan.release_dir}/{commands.SERVICE_BINARY}"
    return sh(host, f"test -x {commands.q(binary)}", check=False)[0]


def build_output(op: OperationMeta | None, lines: int = 12) -> str:
    """The last LINES of what a finished build operation printed (stderr first)."""
    if op is None or not op.is_complete():
        return ""
    try:
        printed = [*op.stderr_lines, *op.stdout_lines]
    except AssertionError:  # pyinfra kept no output (the command never ran)
        return ""
    return "\n".join(printed[-lines:]).strip()


@phase_check("build")
def _check_built(host, s: Settings, plan: Plan, built: OperationMeta | None) -> None:
    if not _binary_here(host, plan):
        raise DeployError(
            f"release {plan.release} was not built (fetch or go build failed, or took over "
            f"app_build_timeout={s.app_build_timeout}s): " + (build_output(built) or "no output")
        )


def unit_text(s: Settings) -> str:
    p = commands.paths(s)
    return UNIT_TEMPLATE.read_text().format(
        user=s.app_user,
        current=p["current"],
        env_file=p["env_file"],
        binary=commands.SERVICE_BINARY,
        log_dir=str(Path(s.app_log_file).parent),
    )


@deploy("Release")
def prepare(s: Settings, plan: Plan, redis_op: OperationMeta | None) -> dict[str, OperationMeta]:
    """Everything the release needs on the host before the rollout switches it (units, the
    local proxy, the Docker network); nothing starts or stops here. Returns the operations
    whose change means the service must restart."""
    restart_on: dict[str, OperationMeta] = {}
    if s.release_strategy == "blue_green":
        restart_on["slot unit"] = slots.ensure_units(s)
    elif host.get_fact(Command, command=slots.is_active_command(s)) == "active":
        server.shell(
            name="Ensure the blue_green proxy and slots are stopped (release_strategy: restart)",
            commands=[slots.stop_all_command(s)],
        )
    if service.is_docker(s):
        restart_on["container"] = _container_ready(s, redis_op)
    elif s.release_strategy == "restart":
        unit = files.put(
            name=f"Ensure systemd unit {s.app_service} is installed",
            src=StringIO(unit_text(s)),
            dest=commands.paths(s)["unit"],
            mode="644",
        )
        systemd.daemon_reload(name="Reload systemd (unit changed)", _if=unit.did_change)
        restart_on["systemd unit"] = unit
    return restart_on


def _container_ready(s: Settings, redis_op: OperationMeta | None) -> OperationMeta:
    """The user-defined network (with redis-cache on it) and the container's spec, a file whose
    change (a variable the `docker run` flags depend on) means the containers must restart."""
    network, redis = s.docker_network, service.cache_container(s)
    command = commands.network_ready(network, redis)
    if host.get_fact(Command, command=commands.network_state(network, redis)) != "ready":
        server.shell(name=f"Ensure Docker network {network} exists", commands=[command])
    elif redis_op is not None:  # a new redis-cache container must join the network again
        server.shell(
            name=f"Ensure {s.redis_container} is on Docker network {network}",
            commands=[command],
            _if=redis_op.did_change,
        )
    return files.put(
        name="Ensure the container spec is current (docker run flags)",
        src=StringIO(service.run_command(s, "<release>") + "\n"),
        dest=f"{commands.paths(s)['state']}/container.spec",
        mode="600",
    )


@deploy("Keep releases")
def prune(s: Settings, plan: Plan) -> None:
    if not plan.release_changes:
        return
    p = commands.paths(s)
    server.shell(
        name=f"Ensure at most {s.app_keep_releases} releases (and their images) are kept",
        commands=[
            commands.prune_releases(
                p["releases"],
                s.app_keep_releases,
                [plan.release] + ([plan.previous_version] if plan.previous_version else []),
            ),
            # also after a switch back to systemd: an image lives as long as its release
            commands.prune_images(s.app_image, p["releases"]),
        ],
    )
