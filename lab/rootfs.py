"""Build and cache the lab's base root file system (Debian 12) from Debian packages."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

from lab.paths import CACHE_DIR

SUITE = "bookworm"
# debootstrap's own set: enough to boot systemd and log in over SSH.
BOOT_PACKAGES = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "iproute2",
    "sudo",
]
# Everything any lab host role needs, installed once; each host enables only its own services.
ROLE_PACKAGES = [
    "ca-certificates",
    "curl",
    "procps",
    "iptables",
    "docker.io",
    "git",
    "golang-go",
    "golang-github-lib-pq-dev",
    "golang-github-gomodule-redigo-dev",
    "postgresql",
    "postgresql-client",
    "pgbackrest",
    "redis-server",
    "redis-tools",
    "haproxy",
    "socat",
    "prometheus",
    "prometheus-pushgateway",
]
# Services that ship enabled but run only where a host's role asks for them.
ROLE_SERVICES = [
    "docker.service",
    "docker.socket",
    "containerd.service",
    "postgresql.service",
    "redis-server.service",
    "haproxy.service",
    "prometheus.service",
    "prometheus-pushgateway.service",
]
REVISION = "1"  # bump to force a rebuild when the build steps below change


def cache_key() -> str:
    """A short digest naming one base root: the suite, the package lists and the steps' revision."""
    text = "|".join([SUITE, REVISION, *BOOT_PACKAGES, "+", *ROLE_PACKAGES])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def base_root() -> Path:
    return CACHE_DIR / f"rootfs-{SUITE}-{cache_key()}"


def debian_mirror() -> str:
    """The Debian mirror this machine's apt already uses (the lab adds no source of its own)."""
    for path in [Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")]:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            words = line.split()
            if words[:1] == ["URIs:"] and "security" not in words[1]:
                return words[1]
            if words[:1] == ["deb"] and "security" not in line:
                url = next(w for w in words[1:] if "://" in w)
                return url
    return "http://deb.debian.org/debian"


def _run(cmd: list[str], log) -> None:
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, timeout=1800)


def ensure_base_root(echo=print) -> Path:
    """Return the cached base root, building it first when it is missing (about 3 minutes)."""
    root = base_root()
    if (root / "etc" / "os-release").exists():
        return root
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = root.with_name(root.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    logfile = CACHE_DIR / f"{root.name}.log"
    echo(f"building the lab's base root file system in {root} (log: {logfile})")
    started = time.monotonic()
    with open(logfile, "w") as log:
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=" + ",".join(BOOT_PACKAGES),
                SUITE,
                str(tmp),
                debian_mirror(),
            ],
            log,
        )
        # The sources.list debootstrap wrote is enough for the role packages.
        subprocess.run(["mount", "-t", "proc", "proc", str(tmp / "proc")], check=True)
        try:
            policy = tmp / "usr/sbin/policy-rc.d"
            policy.write_text("#!/bin/sh\nexit 101\n")  # no service starts inside the chroot
            policy.chmod(0o755)
            env = ["env", "DEBIAN_FRONTEND=noninteractive"]
            _run(["chroot", str(tmp), *env, "apt-get", "update", "-q"], log)
            _run(
                [
                    "chroot",
                    str(tmp),
                    *env,
                    "apt-get",
                    "install",
                    "-y",
                    "-q",
                    "--no-install-recommends",
                    *ROLE_PACKAGES,
                ],
                log,
            )
            _run(["chroot", str(tmp), "apt-get", "clean"], log)
            policy.unlink()
            _run(["chroot", str(tmp), "systemctl", "disable", *ROLE_SERVICES], log)
            # Hosts get their identity (machine-id, host keys) when they are created.
            for key in (tmp / "etc/ssh").glob("ssh_host_*"):
                key.unlink()
            (tmp / "etc/machine-id").write_text("")
        finally:
            subprocess.run(["umount", str(tmp / "proc")], check=False)
    tmp.rename(root)
    echo(f"base root file system ready in {time.monotonic() - started:.0f} s")
    return root


if __name__ == "__main__":
    ensure_base_root(echo=lambda m: print(m, file=sys.stderr))
