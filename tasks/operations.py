"""The deploy's own pyinfra operations, each owning one resource and yielding only the
difference (as pyinfra's built-in operations do)."""

from __future__ import annotations

import hashlib
from io import StringIO

from pyinfra import host
from pyinfra.api import FileUploadCommand, StringCommand, operation
from pyinfra.facts.files import File, Sha256File
from pyinfra.facts.server import Command

from tasks.commands import docker, git, rediscli, shell
from tasks.config import Settings

q = shell.q


@operation()
def secret_file(path: str, content: str, user: str = "root", group: str = "root", mode: int = 600):
    """
    Ensure a file holds a secret, with its owner and mode; its content is never printed
    (not with ``--diff`` either) and never readable by others, even while uploading.

    + path: file on the host
    + content: what the file must hold
    + user, group, mode: owner and permissions (mode 600 unless told)

    **Example:** ``secret_file(path="/app/.env", content=text, user="svc")``
    """
    digest = hashlib.sha256(content.encode()).hexdigest()
    info = host.get_fact(File, path=path)
    same_content = info and host.get_fact(Sha256File, path=path) == digest
    same_meta = (
        info
        and info.get("mode") == mode
        and info.get("user") == user
        and info.get("group") == group
    )
    if same_content and same_meta:
        host.noop(f"{path} is up to date (content not shown)")
        return
    tmp = f"{path}.upload"
    if not same_content:
        yield StringCommand(f"umask 077 && rm -f {q(tmp)} && touch {q(tmp)}")
        yield FileUploadCommand(StringIO(content), tmp)
        yield StringCommand(
            f"chown {q(user)}:{q(group)} {q(tmp)} && chmod {mode} {q(tmp)} && "
            f"mv -f {q(tmp)} {q(path)}"
        )
    else:
        yield StringCommand(f"chown {q(user)}:{q(group)} {q(path)} && chmod {mode} {q(path)}")


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
    if host.get_fact(File, path=binary):
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
