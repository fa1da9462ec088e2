"""The deploy's own pyinfra operations, each owning one resource and yielding only the
difference (as pyinfra's built-in operations do)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from io import StringIO
from pathlib import PurePosixPath
from typing import Any, TypeVar, cast

from pyinfra import host
from pyinfra.api import FactBase, FileUploadCommand, StringCommand, operation
from pyinfra.api import deploy as pyinfra_deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.server import Command

from tasks.commands import docker, git, rediscli, replaced, shell
from tasks.config import Settings

q = shell.q
F = TypeVar("F", bound=Callable[..., Any])


def deploy(name: str) -> Callable[[F], F]:
    """pyinfra's @deploy(NAME), typed as the function it decorates: pyinfra types a deploy's
    call with its own global arguments first, so a type checker reads every positional call
    of ours as wrong."""
    return cast(Callable[[F], F], pyinfra_deploy(name))


class FileState(FactBase):
    """A regular file's mode, owner and sha256 in one command: {"mode": 600, "user": ...,
    "group": ..., "sha256": ...}, or None when there is no such file."""

    def command(self, path: str) -> str:
        return (
            f"if [ -f {q(path)} ]; then stat -c '%a %U %G' {q(path)} && "
            f"sha256sum {q(path)} | cut -d' ' -f1; fi"
        )

    def process(self, output: list[str]) -> dict[str, Any] | None:
        if len(output) != 2 or len(output[0].split()) != 3:
            return None
        mode, user, group = output[0].split()
        return {"mode": int(mode), "user": user, "group": group, "sha256": output[1].strip()}


class FolderStates(FactBase):
    """Of each of PATHS that is a folder: {path: (mode, user, group)}, in one command."""

    def command(self, paths: tuple[str, ...]) -> str:
        return (
            f"for p in {' '.join(q(p) for p in paths)}; do "
            'if [ -d "$p" ]; then stat -c \'%a %U %G %n\' "$p"; fi; done'
        )

    @staticmethod
    def default() -> dict[str, tuple[int, str, str]]:
        return {}  # what pyinfra gives when the command printed nothing: none of them exists

    def process(self, output: list[str]) -> dict[str, tuple[int, str, str]]:
        found = {}
        for line in output:
            mode, user, group, path = line.split(" ", 3)
            found[path] = (int(mode), user, group)
        return found


@operation()
def folders(wanted: tuple[tuple[str, int, str, str], ...]):
    """
    Ensure folders exist, each with its mode and owner: one remote check for all of them,
    where ``files.directory`` makes one for each.

    + wanted: ``(path, mode, user, group)`` of each folder, parents before children

    **Example:** ``folders(wanted=(("/var/lib/x", 700, "root", "root"),))``
    """
    found = host.get_fact(FolderStates, paths=tuple(path for path, *_ in wanted))
    wrong = [w for w in wanted if found.get(w[0]) != w[1:]]
    if not wrong:
        host.noop("the folders exist with their modes and owners")
    for path, mode, user, group in wrong:
        make = "" if path in found else f"mkdir -p {q(path)} && "
        yield StringCommand(f"{make}chown {q(user)}:{q(group)} {q(path)} && chmod {mode} {q(path)}")


def _content(
    path: str,
    content: str,
    user: str,
    group: str,
    mode: int,
    what: str,
    check: str | None = None,
    keep_in: str | None = None,
):
    """The commands that make PATH hold CONTENT with its owner and MODE (none when it does);
    the new content goes through a candidate file of mode 0600 beside PATH, checked by CHECK
    (a command that reads the candidate) and renamed into place only when it passes. With
    KEEP_IN, the content PATH had is kept there first (tasks/commands/replaced.py)."""
    state = host.get_fact(FileState, path=path)
    same_content = (
        state is not None and state["sha256"] == hashlib.sha256(content.encode()).hexdigest()
    )
    if same_content and (state["mode"], state["user"], state["group"]) == (mode, user, group):
        host.noop(f"{path} is up to date{what}")
        return
    keep = replaced.keep_previous(path, keep_in) + " && " if keep_in and state is not None else ""
    tmp = replaced.candidate(path)
    if not same_content:
        yield StringCommand(f"umask 077 && rm -f {q(tmp)} && touch {q(tmp)}")
        yield FileUploadCommand(StringIO(content), tmp)
        if check:
            yield StringCommand(replaced.checked(check, tmp))
        yield StringCommand(
            f"chown {q(user)}:{q(group)} {q(tmp)} && chmod {mode} {q(tmp)} && "
            f"{keep}mv -f {q(tmp)} {q(path)}"
        )
    else:
        yield StringCommand(f"{keep}chown {q(user)}:{q(group)} {q(path)} && chmod {mode} {q(path)}")


@operation()
def secret_file(
    path: str,
    content: str,
    user: str = "root",
    group: str = "root",
    mode: int = 600,
    keep_in: str | None = None,
):
    """
    Ensure a file holds a secret, with its owner and mode; its content is never printed
    (not with ``--diff`` either) and never readable by others, even while uploading.

    + path: file on the host
    + content: what the file must hold
    + user, group, mode: owner and permissions (mode 600 unless told)
    + keep_in: a root-only folder where the content it replaces is kept, for the failure path

    **Example:** ``secret_file(path="/app/.env", content=text, user="svc")``
    """
    yield from _content(path, content, user, group, mode, " (content not shown)", None, keep_in)


@operation()
def text_file(
    path: str,
    content: str,
    user: str = "root",
    group: str = "root",
    mode: int = 644,
    check: str | None = None,
    keep_in: str | None = None,
):
    """
    Ensure a file holds a text, with its owner and mode: one remote check (mode, owner and
    checksum together) where ``files.put`` makes three, for the units and configuration
    files every run checks. The parent folder must exist.

    + path: file on the host
    + content: what the file must hold
    + user, group, mode: owner and permissions (mode 644 unless told)
    + check: a command that checks the new content, written to ``replaced.candidate(path)``,
      before it replaces the file (``haproxy -c``, ``systemd-analyze verify``)
    + keep_in: a root-only folder where the content it replaces is kept, for the failure path

    **Example:** ``text_file(path="/etc/systemd/system/x.service", content=unit)``
    """
    yield from _content(path, content, user, group, mode, "", check, keep_in)


@operation()
def release_built(repo_url: str, commit: str, cache: str, release_dir: str, user: str):
    """
    Ensure a release folder holds the service built from one commit.

    + repo_url: where the code is fetched from
    + commit: the commit to build
    + cache: bare repository kept on the host between releases
    + release_dir: the release folder (made under a .partial name, renamed when built)
    + user: group owner of the release (the service user reads it)
    """
    binary = f"{release_dir}/{git.SERVICE_BINARY}"
    if host.get_fact(Command, command=f"test -x {q(binary)} && echo yes || echo no") == "yes":
        host.noop(f"release {release_dir} is already built")
        return
    yield git.build_release(repo_url, commit, cache, release_dir, user)


@operation()
def redis_container(settings: Settings, auth_conf: str | None):
    """
    Ensure the redis-cache container runs with exactly the checklist's flags; a container
    whose spec differs is replaced, a matching one is left alone.

    + settings: the deploy's settings (redis_* variables)
    + auth_conf: host path of a config file holding ``requirepass`` (None: no password)
    """
    spec = rediscli.redis_run(settings, "", auth_conf)
    spec_hash = hashlib.sha256(spec.encode()).hexdigest()[:16]
    name = settings.redis_container
    label = '{{index .Config.Labels "monitoring-dashboard.spec"}} {{.State.Running}}'
    state = host.get_fact(
        Command, command=f"docker inspect -f {q(label)} {q(name)} 2>/dev/null || true"
    )
    if state == f"{spec_hash} true":
        host.noop(f"container {name} runs with the wanted flags")
        return
    yield docker.container_remove(name)
    yield rediscli.redis_run(settings, spec_hash, auth_conf)


def unit_file(name: str, path: str, content: str, keep_in: str) -> OperationMeta:
    """Ensure the systemd unit file PATH holds CONTENT (mode 644), verified by
    `systemd-analyze verify` under its own name before it replaces the file; the content it
    replaces is kept in KEEP_IN for the failure path. NAME: the operation's name."""
    return text_file(
        name=name,
        path=path,
        content=content,
        mode=644,
        check=replaced.unit_verify(replaced.candidate(path), PurePosixPath(path).name),
        keep_in=keep_in,
    )
