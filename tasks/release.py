"""Build (checklist step 5): fetch the version on the host, `go build` into a new release
folder (built once and shipped, or on each host), plus what the release method builds from it
(Docker: its image); keep N releases (and their images). The switch is the rollout's."""

from __future__ import annotations

import atexit
import functools
import hashlib
import shutil
import tempfile
from pathlib import Path

from gevent.event import AsyncResult
from pyinfra import host
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.files import File
from pyinfra.operations import python, server

from tasks import ledger, operations
from tasks.commands import docker, git, shell
from tasks.config import Settings
from tasks.context import Artifact, Plan, RunContext
from tasks.hosts import migration_host_name
from tasks.method import Method
from tasks.operations import deploy
from tasks.outcome import phase_check
from tasks.remote import DeployError
from tasks.transport import say, sh

NO_LOGIN = "/usr/sbin/nologin"


def _commit(ctx: RunContext, s: Settings) -> str:
    """The commit app_version names, asked of the repository once per run, by the first host
    to get here: every host deploys the same commit even if a branch moves meanwhile, and a
    fleet does not open one connection per host to the repository at once."""
    key = (s.app_repo_url, s.app_version)
    asked = ctx.deploy.commits.get(key)
    if asked is not None:
        return asked.get(timeout=90)
    asked = ctx.deploy.commits[key] = AsyncResult()
    try:
        ok, out = host.run_shell_command(
            command=git.ls_remote(s.app_repo_url, s.app_version), _timeout=60
        )
        if not ok:
            raise DeployError(
                f"[{host.name}] cannot reach the repository {s.app_repo_url}: "
                f"{out.stderr.strip()[-500:]}"
            )
        commit = git.parse_ls_remote(out.stdout, s.app_version)
        if not commit:
            raise DeployError(
                f"[{host.name}] app_version {s.app_version!r} names no tag, branch "
                f"or commit in {s.app_repo_url}"
            )
    except BaseException as exc:  # the hosts waiting on it get it too
        asked.set_exception(exc)
        raise
    asked.set(commit)
    return commit


def make_plan(ctx: RunContext, s: Settings) -> Plan:
    """Read, before any change: which commit the ref names and what `current` is now."""
    p = shell.paths(s)
    commit = _commit(ctx, s)
    release = git.release_id(s.app_version, commit)
    release_dir = f"{p['releases']}/{release}"
    _, out = host.run_shell_command(
        command=f"{shell.read_link(p['current'])}; echo =; "
        f"grep -F {shell.q(release)} {shell.q(p['records'])} 2>/dev/null | tail -n 200 || true"
    )
    lines = out.stdout.splitlines()
    split = lines.index("=") if "=" in lines else len(lines)
    previous = "".join(lines[:split]).strip() or None
    records = "\n".join(lines[split + 1 :])
    verdict = ledger.verdicts(ledger.parse_records(records)).get(release)
    if verdict and verdict.bad and previous != release_dir:
        say(
            host,
            f"WARNING: {release} is marked bad on this host: {verdict}; deploying it as asked "
            "(releases.py lists every release's verdict)",
        )
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


def _account_is(h, s: Settings) -> bool:
    """The service user exists as the two operations below make it (its group, home and
    shell): one remote check, where their facts take five (every user's last login among
    them) on each run."""
    user = shell.q(s.app_user)
    ok, out, _ = sh(h, f"getent passwd {user} | cut -d: -f6,7 && id -gn {user}", check=False)
    return ok and out.split() == [f"{s.app_dir}:{NO_LOGIN}", s.app_user]


def _account_and_folders(s: Settings) -> None:
    """Operations: the service's user and group (no login), the releases and log folders."""
    p = shell.paths(s)
    missing = functools.cache(lambda: not _account_is(host, s))
    server.group(
        name=f"Ensure group {s.app_user} exists", group=s.app_user, system=True, _if=missing
    )
    server.user(
        name=f"Ensure service user {s.app_user} exists (no login)",
        user=s.app_user,
        group=s.app_user,
        system=True,
        shell=NO_LOGIN,
        home=s.app_dir,
        create_home=False,
        _if=missing,
    )
    log_dir = str(Path(s.app_log_file).parent)
    operations.folders(
        name=f"Ensure {p['releases']} and {log_dir} exist",
        wanted=((p["releases"], 755, "root", "root"), (log_dir, 750, s.app_user, s.app_user)),
    )


@deploy("Build the release")
def build(ctx: RunContext, s: Settings, plan: Plan, method: Method) -> OperationMeta | None:
    p = shell.paths(s)
    _account_and_folders(s)
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
            ctx=ctx,
            s=s,
            plan=plan,
            builder=builder,
        )
    if built is None and not host.get_fact(File, path=f"{plan.release_dir}/{git.SERVICE_BINARY}"):
        ctx.deploy.awaiting_release.add(host.name)
        built = python.call(
            name=f"Ensure release {plan.release} is here (built on {builder}, sha256 checked)",
            function=_receive,
            ctx=ctx,
            s=s,
            plan=plan,
            builder=builder,
        )
    python.call(
        name="Check the release was built",
        function=_check_built,
        ctx=ctx,
        s=s,
        plan=plan,
        built=build,
    )
    image = method.image(plan)  # with Docker, the image of the release folder
    return built or image


def _pack(state, host, ctx: RunContext, s: Settings, plan: Plan, builder: str) -> bool:
    """On the builder: the built release as a tarball on the deploying machine, with its
    sha256, for the hosts that do not have it (nothing to do when none lacks it)."""
    if host.name != builder or not ctx.deploy.awaiting_release or not _binary_here(host, plan):
        return True
    remote = f"{shell.paths(s)['state']}/{plan.release}.tar.gz"
    sh(host, git.pack_release(plan.release_dir, remote), timeout=300, what="packing")
    local = Path(tempfile.mkdtemp(prefix="mdd-release-")) / f"{plan.release}.tar.gz"
    atexit.register(shutil.rmtree, local.parent, True)
    if not host.get_file(remote, str(local)):
        raise DeployError(f"could not fetch {remote} from {host.name}")
    sh(host, f"rm -f {shell.q(remote)}")
    digest = hashlib.sha256(local.read_bytes()).hexdigest()
    ctx.deploy.release_artifact = (str(local), digest)
    ctx.run(host).artifact = Artifact(sha256=digest, built_on=host.name)
    say(host, f"packed {plan.release}: {local.stat().st_size} bytes, sha256 {digest[:16]}...")
    return True


@phase_check("build")
def _receive(ctx: RunContext, host, s: Settings, plan: Plan, builder: str) -> None:
    if ctx.deploy.release_artifact is None:
        raise DeployError(f"release {plan.release} was not built on {builder}: nothing to receive")
    local, digest = ctx.deploy.release_artifact
    remote = f"{shell.paths(s)['state']}/{plan.release}.tar.gz"
    if not host.put_file(local, remote):
        raise DeployError(f"could not upload the release to {remote}")
    sh(
        host,
        git.unpack_release(remote, digest, plan.release_dir, s.app_user),
        timeout=300,
        what=f"unpacking {plan.release} (sha256 {digest[:16]}...)",
    )
    ctx.run(host).artifact = Artifact(sha256=digest, built_on=builder)
    say(host, f"received {plan.release}, sha256 {digest[:16]}... verified")


def _binary_here(host, plan: Plan) -> bool:
    binary = f"{plan.release_dir}/{git.SERVICE_BINARY}"
    return sh(host, f"test -x {shell.q(binary)}", check=False)[0]


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
def _check_built(
    ctx: RunContext, host, s: Settings, plan: Plan, built: OperationMeta | None
) -> None:
    if built is not None and built.did_succeed() and not built.executed:
        return  # the build ran no command: it found the binary in place, executable
    if not _binary_here(host, plan):
        raise DeployError(
            f"release {plan.release} was not built (fetch or go build failed, or took over "
            f"app_build_timeout={s.app_build_timeout}s): " + (build_output(built) or "no output")
        )


@deploy("Keep releases")
def prune(s: Settings, plan: Plan) -> None:
    if not plan.release_changes:
        return
    p = shell.paths(s)
    server.shell(
        name=f"Ensure at most {s.app_keep_releases} releases (and their images) are kept",
        commands=[
            git.prune_releases(
                p["releases"],
                s.app_keep_releases,
                [plan.release] + ([plan.previous_version] if plan.previous_version else []),
            ),
            # also after a switch back to systemd: an image lives as long as its release
            docker.prune_images(s.app_image, p["releases"]),
        ],
    )
