"""Small pure builders for the commands the lab runs on this machine (unit-tested)."""

from __future__ import annotations

from pathlib import Path

from lab.topology import BRIDGE, BRIDGE_ADDRESS, SUBNET, LabHost
from tasks.commands import haproxy

# lb1's HAProxy exporter, and the app hosts' local proxy's (metrics_proxy_port in
# group_vars/lab_production.yml)
METRICS_PORT = 8405
PROMETHEUS_PORT = 9090
PUSHGATEWAY_PORT = 9091


def bridge_commands() -> list[list[str]]:
    """Create the lab bridge with the machine's address on it."""
    return [
        ["ip", "link", "add", BRIDGE, "type", "bridge"],
        ["ip", "addr", "add", f"{BRIDGE_ADDRESS}/{SUBNET.prefixlen}", "dev", BRIDGE],
        ["ip", "link", "set", BRIDGE, "up"],
    ]


def netns_commands(host: LabHost) -> list[list[str]]:
    """A network namespace for one host, wired to the bridge by a veth pair (eth0 inside)."""
    ns = ["ip", "netns", "exec", host.netns]
    return [
        ["ip", "netns", "add", host.netns],
        [
            "ip",
            "link",
            "add",
            host.veth,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            host.netns,
        ],
        ["ip", "link", "set", host.veth, "master", BRIDGE],
        ["ip", "link", "set", host.veth, "up"],
        [*ns, "ip", "link", "set", "lo", "up"],
        [*ns, "ip", "addr", "add", f"{host.address}/{SUBNET.prefixlen}", "dev", "eth0"],
        [*ns, "ip", "link", "set", "eth0", "up"],
        [*ns, "ip", "route", "add", "default", "via", str(BRIDGE_ADDRESS)],
        # Docker Engine needs forwarding; /proc/sys is read-only inside the container.
        [*ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"],
    ]


def overlay_mount_command(lower: Path, upper: Path, work: Path, merged: Path) -> list[str]:
    return [
        "mount",
        "-t",
        "overlay",
        "overlay",
        "-o",
        f"lowerdir={lower},upperdir={upper},workdir={work}",
        str(merged),
    ]


def nspawn_command(host: LabHost, root: Path, binds: dict[str, str]) -> list[str]:
    """Boot one host: systemd as PID 1 in its own network namespace."""
    cmd = [
        "systemd-nspawn",
        "--quiet",
        f"--directory={root}",
        f"--machine={host.machine}",
        f"--hostname={host.name}",
        "--register=no",
        "--keep-unit",
        "--boot",
        f"--network-namespace-path=/run/netns/{host.netns}",
        "--capability=all",
        "--system-call-filter=@keyring bpf",
        "--console=pipe",
    ]
    cmd += [f"--bind={source}:{target}" for source, target in sorted(binds.items())]
    return cmd


def cgroup_path(host: LabHost) -> str:
    """The host's own cgroup below every hierarchy: its systemd then sees only its own units."""
    return f"/mdd-lab/{host.machine}"


def in_own_cgroup(host: LabHost, cmd: list[str]) -> list[str]:
    """Wrap CMD so that it starts in the host's own cgroup, created on every hierarchy.

    A new cpuset cgroup takes no task until it has CPUs and memory nodes: copy the parent's.
    """
    cg = cgroup_path(host)
    script = (
        f'for c in /sys/fs/cgroup/*/; do d="$c{cg}"; mkdir -p "$d" || exit 1; '
        'if [ -f "$c/cpuset.cpus" ]; then for f in cpuset.cpus cpuset.mems; do '
        'cat "$c/$f" > "$c/mdd-lab/$f"; cat "$c/$f" > "$d/$f"; done; fi; '
        'echo $$ > "$d/cgroup.procs" || exit 1; done; exec "$@"'
    )
    return ["sh", "-c", script, "sh", *cmd]


CGROUP_STAGING = "/var/lib/mdd-lab-cgroup"
CGROUP_UNIT = f"""[Unit]
Description=Mount this host's own writable cgroup controllers
DefaultDependencies=no
Before=containerd.service docker.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'for d in {CGROUP_STAGING}/*; do \\
  mount --bind "$$d" "/sys/fs/cgroup/$${{d##*/}}"; done'

[Install]
WantedBy=sysinit.target
"""


def cgroup_binds(host: LabHost, controllers: list[str]) -> dict[str, str]:
    """Bind the host's own cgroup of each v1 controller into the container, for
    CGROUP_UNIT to mount over nspawn's read-only view (Docker Engine creates cgroups there).

    The named `systemd` and `unified` hierarchies are left to nspawn.
    """
    return {
        f"/sys/fs/cgroup/{c}{cgroup_path(host)}": f"{CGROUP_STAGING}/{c}"
        for c in controllers
        if c not in ("systemd", "unified")
    }


def ssh_command(host: LabHost, key: Path, known_hosts: Path, remote: str) -> list[str]:
    """Run one command on a lab host as root, with strict host key checking."""
    return [
        "ssh",
        "-i",
        str(key),
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=5",
        f"root@{host.address}",
        remote,
    ]


def ssh_config_entry(host: LabHost, key: Path, known_hosts: Path) -> str:
    """One `Host <env>-<name>` block of the lab's ssh_config (strict host key checking)."""
    return (
        f"Host {host.env}-{host.name}\n"
        f"    HostName {host.address}\n"
        "    User root\n"
        f"    IdentityFile {key}\n"
        "    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {known_hosts}\n"
        "    StrictHostKeyChecking yes\n"
        "    BatchMode yes\n"
        "    ConnectTimeout 5\n"
    )


def lb_config(app_hosts: list[LabHost], port: int, app_port: int) -> str:
    """lb1's HAProxy: port PORT balanced over the app hosts' APP_PORT with active health checks
    and an admin socket (drain, maint, ready). No retries: a request sent to a host that
    stops is a failed request, as behind a cloud load balancer, so only draining avoids it."""
    servers = "".join(f"    server {h.name} {h.address}:{app_port} check\n" for h in app_hosts)
    return (
        "# Written by the lab: the production environment's load balancer.\n"
        "global\n"
        "    master-worker\n"
        "    stats socket /run/haproxy/admin.sock mode 600 level admin expose-fd listeners\n"
        "    maxconn 4096\n\n"
        "# every request, for the deploy's canary analysis (lb_haproxy_ring): time, status,\n"
        "# total milliseconds and the server that answered; read with `show events access`\n"
        "ring access\n"
        "    format raw\n"
        "    maxlen 96\n"
        "    size 8388608\n\n"
        "defaults\n"
        "    mode http\n"
        "    timeout connect 2s\n"
        "    timeout client 60s\n"
        "    timeout server 60s\n"
        "    retries 0\n\n"
        "frontend api\n"
        f"    bind *:{port}\n"
        "    log ring@access local0 info\n"
        '    log-format "%Ts.%ms %ST %Ta %s"\n'
        "    default_backend app_servers\n\n"
        "# HAProxy's own Prometheus exporter, scraped by mon1: each server's requests, answers\n"
        "# by class and average times (the canary analysis' rollout_analysis_source prometheus)\n"
        f"{haproxy.prometheus_frontend(METRICS_PORT)}\n"
        "backend app_servers\n"
        "    balance roundrobin\n"
        "    option httpchk GET /api/v1/auth/status\n"
        "    http-check expect status 200\n"
        "    default-server inter 500ms fall 2 rise 1\n"
        f"{servers}"
    )


def prometheus_config(hosts: list[LabHost]) -> str:
    """mon1's Prometheus: every second, the Pushgateway beside it (the runs' metrics, their
    own labels kept), lb1's HAProxy exporter and each app host's local proxy exporter."""

    def job(name: str, targets: list[str], honor_labels: bool = False) -> str:
        listed = ", ".join(f'"{t}"' for t in targets)
        honor = "    honor_labels: true\n" if honor_labels else ""
        return f"  - job_name: {name}\n{honor}    static_configs:\n      - targets: [{listed}]\n"

    apps = [f"{h.address}:{METRICS_PORT}" for h in hosts if h.is_app]
    lbs = [f"{h.address}:{METRICS_PORT}" for h in hosts if "lb_servers" in h.groups]
    return (
        "# Written by the lab: the production environment's Prometheus (mon1).\n"
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        + job("pushgateway", [f"localhost:{PUSHGATEWAY_PORT}"], honor_labels=True)
        + job("balancer", lbs)
        + job("app_proxy", apps)
    )


def database_from_copy_sql(name: str, copy: str, owner: str) -> str:
    """psql input: database NAME again as its copy COPY (a file copy: no WAL to write), every
    session on it ended first."""
    return (
        f"DROP DATABASE IF EXISTS {name} WITH (FORCE);\n"
        f"CREATE DATABASE {name} TEMPLATE {copy} OWNER {owner} STRATEGY FILE_COPY;\n"
    )


# The database host is kept across `lab reset`: what backup-setup gave it goes (its repository
# host boots again empty), PostgreSQL restarting only when archive_mode was on.
UNARCHIVE_SCRIPT = """
psql="runuser -u postgres -- psql -X -At -v ON_ERROR_STOP=1"
cd / && mode=$($psql -c 'SHOW archive_mode')
$psql -c 'ALTER SYSTEM RESET archive_mode' -c 'ALTER SYSTEM RESET archive_command' \\
  -c 'ALTER SYSTEM RESET archive_timeout' -c 'SELECT pg_reload_conf()' >/dev/null
if [ "$mode" = on ]; then systemctl restart postgresql; fi
rm -rf /etc/pgbackrest.conf ~postgres/.ssh /var/lib/postgresql/*/main.lost-*
"""


def forget_neighbour_commands(address: str, namespaces: list[str]) -> list[list[str]]:
    """Drop what this machine and the hosts in NAMESPACES know of ADDRESS's MAC: a host booted
    again under it gets a new one, and an entry still marked reachable would send to the old
    MAC for up to 30 s."""
    return [["ip", "neigh", "flush", "to", address]] + [
        ["ip", "-n", ns, "neigh", "flush", "to", address] for ns in namespaces
    ]
