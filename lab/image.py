"""A local Redis 7 container image for the lab (no registry is reachable from the lab).

The image holds Debian's redis-server with the libraries it links, a shell, and an entrypoint
that behaves like the official image's: started as root it drops to uid/gid 999 (the official
image's `redis` user) before redis-server runs, and with no configuration file it turns
protected mode off, so the published port answers and a password is what guards it.
"""

from __future__ import annotations

import hashlib
import io
import shlex
import subprocess
import tarfile
from pathlib import Path

from lab.paths import CACHE_DIR
from lab.rootfs import base_root

REDIS_UID = 999
ENTRYPOINT = f"""#!/bin/sh
set -e
if [ "${{1#-}}" != "$1" ]; then set -- redis-server "$@"; fi
if [ "$1" = "redis-server" ]; then
    case "$2" in *.conf) ;; *) shift; set -- redis-server --protected-mode no "$@" ;; esac
    while read -r key uid _; do [ "$key" = "Uid:" ] && break; done < /proc/self/status
    if [ "$uid" = 0 ]; then
        exec setpriv --reuid={REDIS_UID} --regid={REDIS_UID} --clear-groups --inh-caps=-all "$@"
    fi
fi
exec "$@"
"""
BINARIES = ["/usr/bin/redis-check-rdb", "/bin/dash", "/usr/bin/setpriv"]
# changes whenever what goes into the image changes: names the cached tar, labels the image
DIGEST = hashlib.sha256((ENTRYPOINT + repr(BINARIES)).encode()).hexdigest()[:12]
LINKS = {"/usr/bin/redis-server": "redis-check-rdb", "/bin/sh": "dash"}


def image_tar() -> Path:
    return CACHE_DIR / f"{base_root().name}-redis-image-{DIGEST}.tar"


def _libraries(root: Path, binary: str) -> list[str]:
    out = subprocess.run(
        ["chroot", str(root), "ldd", binary], check=True, capture_output=True, text=True, timeout=30
    ).stdout
    libs = []
    for line in out.splitlines():
        words = line.split()
        path = words[2] if "=>" in words and len(words) > 2 else words[0]
        if path.startswith("/"):
            libs.append(path)
    return libs


def ensure_redis_image(root: Path | None = None, echo=print) -> Path:
    """The image as a tar for `docker import`, built once from the base root and cached."""
    tar_path = image_tar()
    if tar_path.exists():
        return tar_path
    root = root or base_root()
    echo(f"building the lab's Redis image into {tar_path}")
    files = set(BINARIES)
    for binary in BINARIES:
        files.update(_libraries(root, binary))
    partial = tar_path.with_suffix(".partial")
    with tarfile.open(partial, "w") as tar:
        for path in sorted(files):
            real = (root / path.lstrip("/")).resolve()
            if not str(real).startswith(str(root)):
                real = root / str(real).lstrip("/")
            tar.add(real, arcname=path.lstrip("/"))
        for link, target in LINKS.items():
            info = tarfile.TarInfo(link.lstrip("/"))
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
        for directory in ("data", "tmp"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777
            tar.addfile(info)
        data = ENTRYPOINT.encode()
        info = tarfile.TarInfo("usr/local/bin/docker-entrypoint.sh")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    partial.rename(tar_path)
    return tar_path


def load_redis_image_script(image: str) -> str:
    """Remote shell: import the tar on stdin as IMAGE unless the engine already has this
    build of it (its label carries DIGEST)."""
    changes = [
        f"LABEL mdd-lab.image={DIGEST}",
        'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]',
        'CMD ["redis-server"]',
        "ENV PATH=/usr/local/bin:/usr/bin:/bin",
        "WORKDIR /data",
        "EXPOSE 6379",
    ]
    flags = " ".join(f"--change {shlex.quote(c)}" for c in changes)
    label = shlex.quote('{{index .Config.Labels "mdd-lab.image"}}')
    return (
        f'[ "$(docker image inspect -f {label} {shlex.quote(image)} 2>/dev/null)" = {DIGEST} ] '
        f"&& cat >/dev/null || docker import {flags} - {shlex.quote(image)} >/dev/null"
    )
