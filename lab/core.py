"""Bring the lab's hosts up and down, and report their state."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gevent.monkey

from lab import apprepo, commands, seed
from lab.image import ensure_redis_image, load_redis_image_script
from lab.paths import REPO_DIR, STATE_DIR
from lab.rootfs import ensure_base_root
from lab.topology import (
    BRIDGE,
    DEFAULT_APP_HOSTS,
    ENVS,
    MAX_APP_HOSTS,
    SUBNET,
    LabHost,
    topology,
)

BOOT_TIMEOUT = 90  # seconds for a host to answer SSH and reach `running`
STOP_TIMEOUT = 30
REDIS_IMAGE = "mdd-lab/redis:7"
DB_NAME = "monitoring"
DB_USER = "monitoring"
DB_PORT = 5432
REDIS_PORT = 6379
LB_PORT = 80
PROMETHEUS_CONFIG = "/etc/prometheus/prometheus.yml"
# two days of samples: plenty for a lab that boots afresh on every reset
PROMETHEUS_ARGS = "--storage.tsdb.retention.time=2d"
APP_PORT = 8080
# Environments whose database archives to repo1 (`backup_method: pgbackrest` in their
# group_vars), and their inventory.
ARCHIVED = {"production": "inventories/lab_production.py"}

Echo = Callable[[str], None]


class LabError(RuntimeError):
    """A lab operation failed; the message says what and where to look."""


# ----------------------------------------------------------------------------- paths & secrets


def _count_file(env: str) -> Path:
    return STATE_DIR / f"{env}.app-hosts"


def app_host_count(env: str) -> int:
    """How many app hosts the environment has (`lab up production --app-hosts N`)."""
    try:
        return int(_count_file(env).read_text())
    except (OSError, ValueError):
        return DEFAULT_APP_HOSTS


def hosts_of(env: str) -> list[LabHost]:
    """The environment's hosts as it is set up now."""
    return topology(env, app_host_count(env))


def every_host(env: str) -> list[LabHost]:
    """Every host the environment can have (for cleaning up)."""
    return topology(env, MAX_APP_HOSTS)


def ssh_dir() -> Path:
    return STATE_DIR / "ssh"


def ssh_key() -> Path:
    return ssh_dir() / "id_ed25519"


def known_hosts() -> Path:
    return ssh_dir() / "known_hosts"


def secret_file(name: str) -> Path:
    return STATE_DIR / "secrets" / name


def host_dir(host: LabHost) -> Path:
    return STATE_DIR / "hosts" / host.machine


def _ensure_secret(name: str) -> str:
    path = secret_file(name)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(24))
    return path.read_text().strip()


def _ensure_ssh_key() -> None:
    if ssh_key().exists():
        return
    ssh_dir().mkdir(parents=True, exist_ok=True, mode=0o700)
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mdd-lab", "-f", str(ssh_key())])


# ----------------------------------------------------------------------------- process helpers


def _run(
    cmd: list[str], timeout: float = 120, check: bool = True, input: bytes | None = None
) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(cmd, capture_output=True, timeout=timeout, input=input)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout:.0f} s: {' '.join(cmd[:6])}") from exc
    if check and result.returncode != 0:
        err = result.stderr.decode(errors="replace").strip()
        raise LabError(f"command failed ({result.returncode}): {' '.join(cmd[:8])}\n{err}")
    return result


def _on_each(work: Callable[[LabHost], object], hosts: list[LabHost]) -> None:
    """WORK on every host: at once, in threads, unless gevent has patched `subprocess` (a test
    process that imported pyinfra's command line), then one host after the other: that
    subprocess run from several threads at once mixed up the children's pipes (an ssh got
    part of its input, another's output), and from greenlets it left forked children behind."""
    if gevent.monkey.is_module_patched("subprocess"):
        for host in hosts:
            work(host)
        return
    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        list(pool.map(work, hosts))


def ssh(
    host: LabHost, remote: str, timeout: float = 120, check: bool = True, input: bytes | None = None
) -> subprocess.CompletedProcess:
    """Run a shell command on a lab host as root over SSH."""
    return _run(
        commands.ssh_command(host, ssh_key(), known_hosts(), remote),
        timeout=timeout,
        check=check,
        input=input,
    )


def _pid(host: LabHost) -> int | None:
    """The host's systemd-nspawn, while it runs. One this process started and that has ended
    is reaped here: until then its pid would still answer as a zombie."""
    path = host_dir(host) / "pid"
    try:
        pid = int(path.read_text())
    except (OSError, ValueError):
        return None
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return None
    except ChildProcessError:
        pass  # started by another process
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    return pid


def _netns_exists(host: LabHost) -> bool:
    return Path("/run/netns", host.netns).exists()


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def is_running(host: LabHost) -> bool:
    return _pid(host) is not None and _netns_exists(host)


# ----------------------------------------------------------------------------- create a host


def _prepare_root(host: LabHost, base: Path, env_hosts: list[LabHost]) -> Path:
    """Overlay the cached base root and give the copy its own identity and role."""
    d = host_dir(host)
    for sub in ("upper", "work", "rootfs", "docker"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    root = d / "rootfs"
    _run(commands.overlay_mount_command(base, d / "upper", d / "work", root))

    (root / "etc/machine-id").write_text(secrets.token_hex(16) + "\n")
    dbus_id = root / "var/lib/dbus/machine-id"
    dbus_id.unlink(missing_ok=True)
    dbus_id.parent.mkdir(parents=True, exist_ok=True)
    dbus_id.symlink_to("/etc/machine-id")
    (root / "etc/hostname").write_text(host.name + "\n")
    hosts_lines = ["127.0.0.1 localhost", f"127.0.1.1 {host.name}"]
    hosts_lines += [f"{h.address} {h.name}" for h in env_hosts if h.name != host.name]
    (root / "etc/hosts").write_text("\n".join(hosts_lines) + "\n")

    keyfile = root / "etc/ssh/ssh_host_ed25519_key"
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", host.name, "-f", str(keyfile)])
    auth = root / "root/.ssh/authorized_keys"
    auth.parent.mkdir(mode=0o700, exist_ok=True)
    auth.write_text(ssh_key().with_suffix(".pub").read_text())
    auth.chmod(0o600)

    services = []
    if host.is_app:
        services += [
            "containerd.service",
            "docker.service",
            "docker.socket",
            "mdd-lab-cgroups.service",
        ]
        (root / "etc/systemd/system/mdd-lab-cgroups.service").write_text(commands.CGROUP_UNIT)
    if "db_servers" in host.groups:
        services.append("postgresql.service")
        conf = root / "etc/postgresql/15/main"
        (conf / "conf.d/lab.conf").write_text("listen_addresses = '*'\nmax_connections = 400\n")
        with open(conf / "pg_hba.conf", "a") as hba:
            hba.write(f"host {DB_NAME} all {SUBNET} scram-sha-256\n")
    if "cache_servers" in host.groups:
        services.append("redis-server.service")
        password = _ensure_secret("redis_password")
        conf = root / "etc/redis/redis.conf"
        conf.write_text(conf.read_text() + f"\nbind 0.0.0.0\nrequirepass {password}\n")
    if "lb_servers" in host.groups:
        services.append("haproxy.service")
        (root / "etc/haproxy/haproxy.cfg").write_text(_lb_config(env_hosts))
    if "monitoring_servers" in host.groups:
        services += ["prometheus.service", "prometheus-pushgateway.service"]
        (root / PROMETHEUS_CONFIG.lstrip("/")).write_text(commands.prometheus_config(env_hosts))
        (root / "etc/default/prometheus").write_text(f'ARGS="{PROMETHEUS_ARGS}"\n')
    if services:
        _run(["systemctl", f"--root={root}", "enable", *services])
    return root


def _known_hosts_line(host: LabHost) -> str:
    pub = host_dir(host) / "rootfs/etc/ssh/ssh_host_ed25519_key.pub"
    keytype, key = pub.read_text().split()[:2]
    return f"{host.address} {keytype} {key}"


def _boot(host: LabHost, root: Path) -> None:
    for cmd in commands.netns_commands(host):
        _run(cmd)
    binds: dict[str, str] = {}
    if host.is_app:
        binds[str(host_dir(host) / "docker")] = "/var/lib/docker"
        controllers = sorted(p.name for p in Path("/sys/fs/cgroup").iterdir() if p.is_dir())
        binds.update(commands.cgroup_binds(host, controllers))
    log = open(host_dir(host) / "boot.log", "wb")
    cmd = commands.in_own_cgroup(host, commands.nspawn_command(host, root, binds))
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, "SYSTEMD_NSPAWN_API_VFS_WRITABLE": "1"},
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    (host_dir(host) / "pid").write_text(str(proc.pid))


def _wait_ready(host: LabHost) -> None:
    """Wait for SSH and for systemd to finish booting; bounded by BOOT_TIMEOUT."""
    deadline = time.monotonic() + BOOT_TIMEOUT
    while True:
        if _pid(host) is None:
            raise LabError(f"{host.machine}: the container exited during boot")
        try:
            with socket.create_connection((host.address, 22), timeout=2):
                break
        except OSError:
            if time.monotonic() > deadline:
                raise LabError(f"{host.machine}: sshd silent for {BOOT_TIMEOUT} s") from None
            time.sleep(0.3)
    left = max(5.0, deadline - time.monotonic())
    result = ssh(
        host,
        f"timeout {int(left)} systemctl is-system-running --wait",
        check=False,
        timeout=left + 10,
    )
    # `--wait` may print a state more than once ("running" twice was seen): the last counts
    state = (result.stdout.decode().split() or [""])[-1]
    if state != "running":
        failed = ssh(host, "systemctl --failed --no-legend --plain", check=False).stdout.decode()
        raise LabError(
            f"{host.machine}: systemd is {state or 'not answering'}; failed units:\n"
            f"{failed.strip() or '(none listed)'}"
        )


def _provision(host: LabHost) -> None:
    """Role setup that needs the host running; every step is safe to repeat."""
    if host.is_app:
        ssh(
            host,
            load_redis_image_script(REDIS_IMAGE),
            input=ensure_redis_image().read_bytes(),
            timeout=180,
        )
    if "db_servers" in host.groups:
        _provision_database(host)


def seed_rows() -> int:
    """How many rows of metrics the lab seeds (MDD_LAB_ROWS)."""
    return int(os.environ.get("MDD_LAB_ROWS", seed.DEFAULT_ROWS))


def _provision_database(host: LabHost) -> None:
    """The service's role with the lab's password, no settings of its own and CREATEROLE
    (rotate-db-password makes its two login roles; a rotation's roles are made unable to log
    in again), and its database as the lab seeds it: a copy of a database seeded once per db
    host (under a name the service cannot reach), so that reset() gets the same database back
    in seconds."""
    password = _ensure_secret("db_password")
    sql = (
        f"DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{DB_USER}') "
        f"THEN CREATE ROLE {DB_USER} LOGIN; END IF; END$$;"
        f"ALTER ROLE {DB_USER} LOGIN CREATEROLE PASSWORD '{password}';"
        f"ALTER ROLE {DB_USER} RESET ALL;"
        + "".join(
            f"DO $$BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{DB_USER}_{x}') "
            f"THEN ALTER ROLE {DB_USER}_{x} NOLOGIN PASSWORD NULL; END IF; END$$;"
            for x in "ab"
        )
    )
    psql = "cd / && runuser -u postgres -- psql -q -v ON_ERROR_STOP=1"
    # The password goes over stdin, never on a command line.
    ssh(host, psql, input=sql.encode())
    copy = f"{DB_NAME}_seed_{seed_rows()}"
    kept = ssh(host, f"{psql} -tAc \"SELECT 1 FROM pg_database WHERE datname='{copy}'\"")
    if not kept.stdout.strip():  # seeded under another name first: a copy is whole or absent
        partial = f"{copy}_partial"
        ssh(host, f"{psql} -c 'DROP DATABASE IF EXISTS {partial}'")
        ssh(host, f"cd / && runuser -u postgres -- createdb -O {DB_USER} {partial}")
        data = f"SET ROLE {DB_USER};\n{seed.legacy_schema_sql()}\n{seed.seed_sql(seed_rows())}"
        ssh(host, f"{psql} -d {partial}", input=data.encode(), timeout=600)
        ssh(host, f"{psql} -c 'ALTER DATABASE {partial} RENAME TO {copy}'")
    ssh(host, psql, input=commands.database_from_copy_sql(DB_NAME, copy, DB_USER).encode())


def _lb_config(hosts: list[LabHost]) -> str:
    """lb1's HAProxy configuration, balancing the app hosts among HOSTS."""
    return commands.lb_config([h for h in hosts if h.is_app], LB_PORT, APP_PORT)


def _reconfigure(host: LabHost, hosts: list[LabHost]) -> None:
    """Point the load balancer, or Prometheus, at the environment's app hosts (a reload drops
    no connection and keeps what Prometheus stored)."""
    if "lb_servers" in host.groups:
        config, path, unit = _lb_config(hosts), "/etc/haproxy/haproxy.cfg", "haproxy"
    else:
        config, path, unit = commands.prometheus_config(hosts), PROMETHEUS_CONFIG, "prometheus"
    ssh(host, f"cat > {path} && systemctl reload {unit}", input=config.encode())


# ----------------------------------------------------------------------------- up / down


# Every host's systemd, journald and Docker Engine take inotify instances from root's share;
# the kernel's default (128) stops a dozen hosts short of the production fleet's 32.
KERNEL_MINIMUMS = {
    "fs.inotify.max_user_instances": 8192,
    "fs.inotify.max_user_watches": 1048576,
}


def _ensure_kernel_limits(echo: Echo) -> None:
    """Raise the machine's limits that many hosts share to KERNEL_MINIMUMS (never lower)."""
    for key, least in KERNEL_MINIMUMS.items():
        path = Path("/proc/sys") / key.replace(".", "/")
        if int(path.read_text()) < least:
            _run(["sysctl", "-q", "-w", f"{key}={least}"])
            echo(f"lab: raised {key} to {least} (the hosts' systemd share it)")


def _ensure_bridge() -> None:
    if not _link_exists(BRIDGE):
        for cmd in commands.bridge_commands():
            _run(cmd)


def _boot_log_tail(host: LabHost, lines: int = 40) -> str:
    try:
        text = (host_dir(host) / "boot.log").read_text(errors="replace")
    except OSError:
        return "(no boot log)"
    return "\n".join(text.splitlines()[-lines:])


def up(env: str, echo: Echo = print, app_hosts: int | None = None) -> list[LabHost]:
    """Bring one environment's hosts up; hosts already running are left as they are.
    APP_HOSTS (production) changes the number of app hosts: extra ones boot, surplus ones go,
    and the load balancer is told."""
    if app_hosts is not None and app_hosts != app_host_count(env):
        hosts = topology(env, app_hosts)  # checks the count before anything changes
        surplus = [h for h in every_host(env) if h not in hosts and is_running(h)]
        for host in surplus:
            echo(f"lab {env}: removing {host.name}")
            _teardown_host(host)
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        _count_file(env).write_text(f"{app_hosts}\n")
        watching = {"lb_servers", "monitoring_servers"}
        for host in (h for h in hosts if watching & set(h.groups) and is_running(h)):
            _reconfigure(host, hosts)
    hosts = hosts_of(env)
    todo = [h for h in hosts if not is_running(h)]
    if not todo and apprepo.daemon_running():
        apprepo.ensure_repo(ensure_base_root(echo), echo)  # the service's source may have changed
        echo(f"lab {env}: all {len(hosts)} hosts already running, nothing to do")
        return hosts
    _start(env, hosts, todo, echo)
    return hosts


def _start(env: str, hosts: list[LabHost], todo: list[LabHost], echo: Echo) -> None:
    """Boot the hosts TODO of ENV (HOSTS: all of them) and provision them, all at once; if one
    does not come up, ENV goes down and LabError says why."""
    started = time.monotonic()
    base = ensure_base_root(echo)
    if any(h.is_app for h in todo):
        ensure_redis_image(base, echo)
    _ensure_ssh_key()
    _ensure_secret("db_password")
    _ensure_kernel_limits(echo)
    _ensure_bridge()
    apprepo.ensure_repo(base, echo)
    apprepo.ensure_daemon()
    booted = [h for h in todo if not is_running(h)]  # reset(): the db host keeps running
    try:
        for host in booted:
            _teardown_host(host)  # clear anything a killed earlier run left behind
            echo(f"lab {env}: booting {host.name} ({host.address})")
            _boot(host, _prepare_root(host, base, hosts))
        _write_known_hosts()
        _on_each(_wait_ready, booted)
        echo(f"lab {env}: {len(booted)} hosts booted in {time.monotonic() - started:.1f} s")
        _on_each(_provision, todo)
    except LabError as exc:
        logs = "\n".join(f"--- boot log of {h.machine} ---\n{_boot_log_tail(h)}" for h in booted)
        down(env, echo=lambda _m: None)
        raise LabError(
            f"lab {env} did not come up: {exc}\n{logs}\nThe lab {env} was taken down again."
        ) from exc
    if env in ARCHIVED and any(
        "db_servers" in h.groups or "backup_servers" in h.groups for h in booted
    ):
        _set_up_archiving(env, echo)
    echo(f"lab {env}: up in {time.monotonic() - started:.1f} s")


def _set_up_archiving(env: str, echo: Echo) -> None:
    """The environment's database archiving to its repo1, by the project's own runbook (the
    way a team sets it up), whenever its database or repository host booted afresh."""
    echo(f"lab {env}: runbook=backup-setup (pgBackRest archiving from db1 to repo1)")
    inventory = ARCHIVED[env]
    done = subprocess.run(
        [str(Path(sys.executable).parent / "pyinfra"), "-y", inventory, "runbook.py"]
        + ["--data", "runbook=backup-setup"],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise LabError(f"backup-setup failed on lab {env}:\n{(done.stdout + done.stderr)[-3000:]}")


def reset(env: str, echo: Echo = print) -> list[LabHost]:
    """ENV as `up` first leaves it, in less time than down and up: every host but the
    database's boots again from the base root (nothing a deploy did stays), and the database
    host, kept running, gets the seeded database back from the copy `up` kept, its role's
    settings reset. A host that is not running is brought up the way `up` does."""
    hosts = hosts_of(env)
    again = [h for h in hosts if "db_servers" not in h.groups or not is_running(h)]
    for host in again:
        _teardown_host(host)
    for host in (h for h in hosts if h not in again):
        ssh(host, "systemctl start postgresql", timeout=60)  # a test may have stopped it
        ssh(host, commands.UNARCHIVE_SCRIPT, timeout=120)
    echo(f"lab {env}: resetting {len(hosts)} hosts ({len(again)} boot again)")
    _start(env, hosts, hosts, echo)
    return hosts


def ssh_config() -> Path:
    return ssh_dir() / "config"


def _write_known_hosts() -> None:
    """known_hosts from the host keys the lab generated itself (nothing is trusted on first
    use), and an ssh_config naming each host `<env>-<name>`."""
    present = [
        h
        for env in ENVS
        for h in every_host(env)
        if (host_dir(h) / "rootfs/etc/ssh/ssh_host_ed25519_key.pub").exists()
    ]
    known_hosts().write_text("".join(_known_hosts_line(h) + "\n" for h in present))
    ssh_config().write_text(
        "".join(
            commands.ssh_config_entry(h, ssh_key(), known_hosts())
            for env in ENVS
            for h in every_host(env)
        )
    )


def _teardown_host(host: LabHost) -> None:
    pid = _pid(host)
    if pid is not None:
        os.killpg(pid, signal.SIGTERM)  # nspawn shuts the container's systemd down cleanly
        deadline = time.monotonic() + STOP_TIMEOUT
        while _pid(host) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        if _pid(host) is not None:
            os.killpg(pid, signal.SIGKILL)
            time.sleep(0.5)
    d = host_dir(host)
    root = d / "rootfs"
    if os.path.ismount(root):
        _run(["umount", "-R", str(root)], check=False)
    if _netns_exists(host):
        _run(["ip", "netns", "del", host.netns], check=False)
    if _link_exists(host.veth):
        _run(["ip", "link", "del", host.veth], check=False)
    others = [h.netns for e in ENVS for h in every_host(e) if h != host and _netns_exists(h)]
    for cmd in commands.forget_neighbour_commands(host.address, others):
        _run(cmd, check=False)
    _remove_cgroups(host)
    if d.exists() and not os.path.ismount(root):
        shutil.rmtree(d)


def _remove_cgroups(host: LabHost) -> None:
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        top = hierarchy / commands.cgroup_path(host).lstrip("/")
        if top.is_dir():
            for sub in sorted(
                (p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)
            ):
                sub.rmdir()
            top.rmdir()


def memory_bytes(host: LabHost) -> int | None:
    """Memory the host uses now (its cgroup's usage), or None where that is not readable."""
    for name in ("memory/{}/memory.usage_in_bytes", "unified/{}/memory.current"):
        path = Path("/sys/fs/cgroup", name.format(commands.cgroup_path(host).lstrip("/")))
        if path.exists():
            return int(path.read_text())
    return None


def down(env: str | None = None, echo: Echo = print) -> None:
    """Stop and remove the hosts of one environment (or all); the bridge goes with the last."""
    for name in [env] if env else ENVS:
        hosts = every_host(name)
        _on_each(_teardown_host, hosts)
        _count_file(name).unlink(missing_ok=True)
        echo(f"lab {name}: down")
    if not any(host_dir(h).exists() for e in ENVS for h in every_host(e)):
        apprepo.stop_daemon()
        if _link_exists(BRIDGE):
            _run(["ip", "link", "del", BRIDGE], check=False)
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            if (hierarchy / "mdd-lab").is_dir():
                (hierarchy / "mdd-lab").rmdir()
    if ssh_dir().exists():
        _write_known_hosts()


# ----------------------------------------------------------------------------- status


def status() -> dict:
    """Everything a script needs to reach the lab: hosts, keys, database and Redis details."""
    hosts = []
    for env in ENVS:
        for h in hosts_of(env):
            hosts.append(
                {
                    "name": h.name,
                    "env": env,
                    "groups": list(h.groups),
                    "address": h.address,
                    "machine": h.machine,
                    "running": is_running(h),
                    "ssh_user": "root",
                    "ssh_key": str(ssh_key()),
                    "ssh_known_hosts": str(known_hosts()),
                    "ssh_config": str(ssh_config()),
                    "ssh_alias": f"{env}-{h.name}",
                    "memory_bytes": memory_bytes(h),
                }
            )
    databases = {
        env: {
            "host": next(h.address for h in hosts_of(env) if h.name == "db1"),
            "port": DB_PORT,
            "name": DB_NAME,
            "user": DB_USER,
            "password_file": str(secret_file("db_password")),
        }
        for env in ENVS
    }
    cache = next(h for h in hosts_of("production") if h.name == "cache1")
    return {
        "hosts": hosts,
        "database": databases,
        "redis": {
            "production": {
                "host": cache.address,
                "port": REDIS_PORT,
                "password_file": str(secret_file("redis_password")),
            }
        },
        "redis_image": REDIS_IMAGE,
        "app_repo": apprepo.repo_url(),
        "state_dir": str(STATE_DIR),
    }
