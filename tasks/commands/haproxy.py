"""HAProxy's admin socket (the lb_servers balancer and each host's local proxy), and the
configuration block of its built-in Prometheus exporter."""

from __future__ import annotations

from tasks.commands.shell import q


def haproxy_api(socket: str, *commands: str) -> str:
    """Send COMMANDS (one line, `;`-separated) to HAProxy's admin socket; prints its answer."""
    line = "; ".join(commands)
    return f"echo {q(line)} | socat -t 5 stdio {q('UNIX-CONNECT:' + socket)}"


def haproxy_wait(socket: str, backend: str, server: str, until: str, timeout: float) -> str:
    """Poll `show stat` until SERVER of BACKEND is UP (UNTIL='up') or has no request left in
    flight or queued (UNTIL='drained'); bounded by TIMEOUT seconds. Prints the last reading
    (`status current-sessions queued`); exits 1 when time ran out."""
    if until not in ("up", "drained"):
        raise ValueError(f"until must be 'up' or 'drained', got {until!r}")
    done = '[ "$status" = UP ]' if until == "up" else '[ "$cur" = 0 ] && [ "$queued" = 0 ]'
    # show stat columns: 1 pxname, 2 svname, 3 qcur, 5 scur, 18 status
    stat = (
        f"{haproxy_api(socket, 'show stat')} | "
        f"awk -F, -v b={q(backend)} -v s={q(server)} "
        "'$1 == b && $2 == s {print $18, $5, $3}'"
    )
    tries = max(1, int(timeout * 10))
    return (
        f"for i in $(seq {tries}); do set -- $({stat}); status=$1 cur=$2 queued=$3; "
        f'if {done}; then echo "$status $cur $queued"; exit 0; fi; sleep 0.1; done; '
        f'echo "$status $cur $queued"; exit 1'
    )


def server_statuses(socket: str, backend: str) -> str:
    """Print `server status` (UP, DRAIN, MAINT, DOWN...) for each server of BACKEND."""
    return (
        f"{haproxy_api(socket, 'show stat')} | "
        f"awk -F, -v b={q(backend)} '$1 == b && $2 != \"BACKEND\" {{print $2, $18}}'"
    )


def in_service(statuses: str, leaving: list[str]) -> list[str]:
    """The servers of server_statuses' output STATUSES that take requests (UP), LEAVING's left
    out."""
    pairs = [line.split(None, 1) for line in statuses.splitlines() if len(line.split()) >= 2]
    return [name for name, status in pairs if status.startswith("UP") and name not in leaving]


def recent_events(socket: str, ring: str, seconds: float) -> str:
    """The lines of RING whose first field (epoch seconds) falls within the last SECONDS by the
    host's own clock (no clock is compared with another host's)."""
    return (
        f"now=$(date +%s.%N); {haproxy_api(socket, f'show events {ring}')} | "
        f"awk -v now=\"$now\" -v s={float(seconds)} '$1 + 0 >= now - s && $1 + 0 <= now + 0'"
    )


def map_flag(socket: str, map_file: str, key: str, on: bool) -> str:
    """KEY (value 1) present in MAP_FILE when ON, absent otherwise: in the file, which a reload
    or a restart reads, and live, through the admin SOCKET. Prints `changed` when it was not
    so already, in the file or live."""
    live = f"{haproxy_api(socket, f'show map {map_file}')} | grep -q ' {key} 1$'"
    in_file = f"grep -qx {q(key + ' 1')} {q(map_file)}"
    rest = f"{{ grep -vx {q(key + ' 1')} {q(map_file)} || true; }}"
    new = q(map_file + ".new")
    if on:
        needed = f"! {{ {in_file} && {live}; }}"
        content = f"{{ {rest}; echo {q(key + ' 1')}; }}"
        commands: tuple[str, ...] = (f"del map {map_file} {key}", f"add map {map_file} {key} 1")
    else:
        needed = f"{{ {in_file} || {live}; }}"
        content = rest
        commands = (f"del map {map_file} {key}",)
    return (
        f"if {needed}; then {content} > {new} && chmod 644 {new} && mv -f {new} {q(map_file)} "
        f"&& {haproxy_api(socket, *commands)} >/dev/null && echo changed; fi"
    )


def prometheus_frontend(port: int) -> str:
    """A `frontend` answering Prometheus on PORT at /metrics with HAProxy's built-in exporter
    (its own figures: each backend's servers' requests, answers by class, average times)."""
    return (
        "frontend metrics\n"
        f"    bind *:{port}\n"
        "    no log\n"
        "    http-request use-service prometheus-exporter if { path /metrics }\n"
    )
