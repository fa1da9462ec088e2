"""Docker (Option B): the release's image, the service's container, the network it shares
with redis-cache, images pruned with their releases."""

from __future__ import annotations

import json
import shlex

from tasks.commands.git import commit_time
from tasks.commands.shell import paths, q
from tasks.config import Settings

CONTAINER_ENV_FILE = "/run/monitoring-dashboard/.env"  # where a container sees the .env


def image_config(labels: dict[str, str], entrypoint: str, port: int) -> str:
    """The image's configuration as Docker reads it, with @CREATED@ and @DIFF@ left for the
    shell to fill in: one layer, the binary run as nobody (the deploy runs it as the service
    user), its port, its labels; the same bytes for the same release wherever it is made."""
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "@CREATED@",
        "config": {
            "User": "65534:65534",
            "ExposedPorts": {f"{port}/tcp": {}},
            "Entrypoint": [entrypoint],
            "Labels": dict(sorted(labels.items())),
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:@DIFF@"]},
        "history": [{"created": "@CREATED@", "created_by": "monitoring-dashboard-deploy"}],
    }
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


def image_load(release_dir: str, binary: str, image: str, config: str) -> str:
    """IMAGE made from RELEASE_DIR's BINARY (a path inside it) without `docker build`: one
    layer holding the binary at /, packed like the release (name order, owner 0:0, every time
    the commit's), CONFIG
    (image_config) completed with that time and the layer's digest, loaded with `docker load`
    from an archive packed the same way (made twice, the same bytes). The image ID is the
    digest of that configuration: the same for one release wherever it is made. Prints
    nothing but errors."""
    folder, name = f"{release_dir}/{binary}".rsplit("/", 1)
    return " && ".join(
        [
            "set -e",
            "work=$(mktemp -d)",
            "trap 'rm -rf \"$work\"' EXIT",
            f"epoch={commit_time(release_dir)}",
            'created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)',
            f"tar -C {q(folder)} --sort=name --mtime=@$epoch --owner=0 --group=0 --numeric-owner "
            f'--mode=go-w -cf "$work/layer.tar" {q(name)}',
            "diff=$(sha256sum \"$work/layer.tar\" | cut -d' ' -f1)",
            f'printf %s {q(config)} | sed "s/@CREATED@/$created/g; s/@DIFF@/$diff/" '
            '> "$work/config.json"',
            "config=$(sha256sum \"$work/config.json\" | cut -d' ' -f1)",
            'mkdir "$work/$diff"',
            'mv "$work/layer.tar" "$work/$diff/layer.tar"',
            'mv "$work/config.json" "$work/$config.json"',
            f'printf \'[{{"Config":"%s.json","RepoTags":["%s"],"Layers":'
            f'["%s/layer.tar"]}}]\' "$config" {q(image)} "$diff" > "$work/manifest.json"',
            'tar -C "$work" --mtime=@$epoch --owner=0 --group=0 --numeric-owner '
            '-cf "$work/image.tar" manifest.json "$config.json" "$diff/layer.tar"',
            'docker load -q -i "$work/image.tar" >/dev/null',
        ]
    )


def container_run(
    s: Settings, name: str, image: str, publish: str, user: str, redis_host: str | None
) -> str:
    """Replace container NAME by one running IMAGE as the checklist's Option B runs it
    (restart unless-stopped, the .env, the service's port published as PUBLISH), on the
    user-defined network `docker_network` instead of the deprecated --link, as USER's uid and
    gid, read-only, without capabilities. The .env is mounted, not passed with --env-file:
    its secrets stay out of `docker inspect`. REDIS_HOST, when given, overrides the .env's
    (the cache's container name on the network, where the .env says localhost)."""
    log_dir = s.app_log_file.rsplit("/", 1)[0]
    run = [
        "docker",
        "run",
        "-d",
        "--name",
        name,
        "--restart",
        "unless-stopped",
        "--network",
        s.docker_network,
        "-p",
        f"{publish}:{s.app_port}",
        "-v",
        f"{paths(s)['env_file']}:{CONTAINER_ENV_FILE}:ro",
        "-v",
        f"{log_dir}:{log_dir}",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
    ]
    if redis_host:
        run += ["-e", f"REDIS_HOST={redis_host}"]
    user_arg = f'--user "$(id -u {q(user)}):$(id -g {q(user)})"'
    return (
        f"{container_remove(name)}; "
        f"{shlex.join(run)} {user_arg} {q(image)} --env-file {CONTAINER_ENV_FILE} >/dev/null"
    )


def _on_network(network: str, container: str) -> str:
    key = q(f'"{network}":')  # in the JSON of the container's networks
    return (
        f"docker inspect -f '{{{{json .NetworkSettings.Networks}}}}' {q(container)} 2>/dev/null "
        f"| grep -qF {key}"
    )


def network_state(network: str, container: str | None) -> str:
    """Prints `ready` when NETWORK exists and CONTAINER (if any) is connected to it."""
    check = f"docker network inspect {q(network)} >/dev/null 2>&1"
    if container:
        check += f" && {_on_network(network, container)}"
    return f"if {check}; then echo ready; else echo missing; fi"


def network_ready(network: str, container: str | None) -> str:
    """Create NETWORK if missing, and connect CONTAINER to it if it is not."""
    steps = [
        f"(docker network inspect {q(network)} >/dev/null 2>&1 || "
        f"docker network create {q(network)} >/dev/null)"
    ]
    if container:
        steps.append(
            f"({_on_network(network, container)} || "
            f"docker network connect {q(network)} {q(container)})"
        )
    return " && ".join(steps)


def prune_images(image: str, releases: str) -> str:
    """Remove the tags of IMAGE whose release folder under RELEASES is gone (an image is kept
    as long as its release: app_keep_releases of them); one in use stays. Nothing to do on a
    host without Docker."""
    return (
        f"if command -v docker >/dev/null; then docker images --format '{{{{.Tag}}}}' {q(image)} "
        f'| while read -r tag; do [ -d {q(releases)}/"$tag" ] || '
        f'docker rmi {q(image)}:"$tag" >/dev/null 2>&1 || true; done; fi'
    )


def container_remove(container: str) -> str:
    """CONTAINER removed (nothing to do when it, or Docker, is not there); always succeeds."""
    return (
        "if command -v docker >/dev/null; then "
        f"docker rm -f {q(container)} >/dev/null 2>&1; fi; true"
    )
