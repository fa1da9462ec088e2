"""Build (checklist step 5): fetch the version on the host, `go build` into a new release
folder (built once and shipped, or on each host), plus what the release method builds from it
(Docker: its image); keep N releases (and their images). The switch is the rollout's."""

from __future__ import annotations

import atexit
import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

from gevent.event import AsyncResult
from pyinfra import host, inventory
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.files import File
from pyinfra.operations import python, server

from tasks import ledger, operations, promotion
from tasks.commands import docker, git, shell
from tasks.config import Settings
from tasks.context import Artifact, Plan, RunContext
from tasks.hosts import app_hosts, builder_of, builds_here, connected, migration_host_name
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
    earlier = ledger.parse_records(records)
    verdict = ledger.verdicts(earlier).get(release)
    shipped = [r["artifact"] for r in earlier if r.get("release") == release and r.get("artifact")]
    if shipped:  # what a run that changes nothing records: the artifact serving
        ctx.run(host).artifact = Artifact(shipped[-1]["sha256"], shipped[-1].get("built_on", ""))
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


def check_build_host(s: Settings) -> None:
    """build_host names `local` or a host of the inventory (before any change)."""
    if s.build_host in ("", "local") or inventory.get_host(s.build_host, None) is not None:
        return
    names = ", ".join(h.name for h in inventory)
    raise DeployError(
        f"build_host {s.build_host}: not a host of this inventory ({names}) nor local"
    )


@deploy("Build the release")
def build(ctx: RunContext, s: Settings, plan: Plan, method: Method) -> OperationMeta | None:
    p = shell.paths(s)
    _account_and_folders(s)
    builder = builder_of(s)
    built = build = None
    if builds_here(host, s):
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
    if builder is not None and s.app_build == "once":
        # On every host, so that it orders the build before any host's receive.
        python.call(
            name=f"Pack the release built on {builder} (its sha256 kept in {s.artifact_dir}/)",
            function=_pack,
            ctx=ctx,
            s=s,
            plan=plan,
            builder=builder,
        )
    if built is None and not host.get_fact(File, path=f"{plan.release_dir}/{git.SERVICE_BINARY}"):
        ctx.deploy.awaiting_release.add(host.name)
        source = builder or f"{s.promote_from}'s passed deploy"
        built = python.call(
            name=f"Ensure release {plan.release} is here (from {source}, sha256 checked)",
            function=_receive,
            ctx=ctx,
            s=s,
            plan=plan,
            source=source,
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


def _fetch(h, remote_path: str) -> Path:
    """REMOTE_PATH of host H copied into a private folder of this machine (gone at exit)."""
    local = Path(tempfile.mkdtemp(prefix="mdd-release-")) / remote_path.rsplit("/", 1)[-1]
    atexit.register(shutil.rmtree, local.parent, True)
    if not h.get_file(remote_path, str(local)):
        raise DeployError(f"could not fetch {remote_path} from {h.name}")
    return local


def _build_on(h, s: Settings, plan: Plan) -> Path:
    """On a host that gets no deploy: build, pack, fetch the tarball; only its caches stay."""
    folder = f"{shell.paths(s)['state']}/build"
    release_dir, tarball = f"{folder}/{plan.release}", f"{folder}/{plan.release}.tar.gz"
    cache = f"{folder}/repo.git"
    sh(h, f"umask 077 && mkdir -p {shell.q(folder)} && rm -rf {shell.q(release_dir)}")
    sh(
        h,
        git.build_release(s.app_repo_url, plan.commit, cache, release_dir, None),
        timeout=s.app_build_timeout,
        what=f"building {plan.release} on {h.name}",
    )
    sh(h, git.pack_release(release_dir, tarball), timeout=300, what="packing")
    local = _fetch(h, tarball)
    sh(h, f"rm -rf {shell.q(release_dir)} {shell.q(tarball)}")
    return local


def _build_locally(s: Settings, plan: Plan) -> Path:
    """On the deploying machine: build under artifact_dir/.build (its caches stay there), pack
    into a private folder (gone at exit)."""
    missing = [tool for tool in ("git", "go", "tar", "gzip") if shutil.which(tool) is None]
    if missing:
        raise DeployError(f"build_host local: {', '.join(missing)} not installed on this machine")
    folder = Path(s.artifact_dir).resolve() / ".build"
    release_dir = folder / plan.release
    tarball = Path(tempfile.mkdtemp(prefix="mdd-release-")) / f"{plan.release}.tar.gz"
    atexit.register(shutil.rmtree, tarball.parent, True)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(release_dir, ignore_errors=True)
    steps = (
        (
            "building",
            git.build_release(
                s.app_repo_url, plan.commit, str(folder / "repo.git"), str(release_dir), None
            ),
            s.app_build_timeout,
        ),
        (
            "packing",
            git.pack_release(str(release_dir), str(tarball)),
            300,
        ),
    )
    for what, command, timeout in steps:
        try:
            done = subprocess.run(
                ["sh", "-c", command], capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise DeployError(f"build_host local: {what} took over {timeout} s") from None
        if done.returncode != 0:
            raise DeployError(f"build_host local: {what} failed: {done.stderr.strip()[-500:]}")
    shutil.rmtree(release_dir, ignore_errors=True)
    return tarball


def _pack(state, host, ctx: RunContext, s: Settings, plan: Plan, builder: str) -> bool:
    """Once per run: the release as a tarball kept in artifact_dir under its sha256, for the
    record and for the hosts that lack the release. An app host that built it packs it (when
    the release changed, or another host needs it); `local` or another host builds and packs
    it unless artifact_dir already holds it."""
    packs_here = builder == host.name
    by_app_host = builder in {h.name for h in app_hosts()}
    if not packs_here and (by_app_host or host.name != migration_host_name(s)):
        return True  # the app host that built it packs; else the migration host fetches it
    if not (plan.release_changes or ctx.deploy.awaiting_release):
        return True
    if packs_here:
        if not _binary_here(host, plan):
            return True  # _check_built says why
        remote_path = f"{shell.paths(s)['state']}/{plan.release}.tar.gz"
        sh(host, git.pack_release(plan.release_dir, remote_path), timeout=300, what="packing")
        tarball = _fetch(host, remote_path)
        sh(host, f"rm -f {shell.q(remote_path)}")
    elif kept_before := promotion.kept(s.artifact_dir, plan.release):
        tarball = promotion.checked(*kept_before[0])
    elif builder == "local":
        tarball = _build_locally(s, plan)
    else:
        tarball = _build_on(connected(inventory.get_host(builder), "build_host"), s, plan)
    digest = promotion.sha256_of(tarball)
    kept = promotion.keep(s.artifact_dir, plan.release, tarball, digest)
    ctx.deploy.release_artifact = (str(kept), digest)
    if packs_here:
        ctx.run(host).artifact = Artifact(sha256=digest, built_on=builder)
    say(host, f"packed {plan.release} on {builder}: {kept.stat().st_size} bytes, sha256 {digest}")
    return True


@phase_check("build")
def _receive(ctx: RunContext, host, s: Settings, plan: Plan, source: str) -> None:
    if ctx.deploy.release_artifact is None:
        raise DeployError(f"release {plan.release} (from {source}) is not here: nothing to receive")
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
    ctx.run(host).artifact = Artifact(sha256=digest, built_on=source)
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
