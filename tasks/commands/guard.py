"""The deploy's guard on its own load: a bounded wait, on an app host, until the serving
release's p99 is back under a limit (the way gh-ost and pt-online-schema-change throttle on
the server's load). It runs before a heavy step: from Python (tasks/guard.py), or inside a
migration's psql script between two statements (`\\set` runs it and `\\if` reads its answer).
"""

from __future__ import annotations

from tasks.commands import haproxy, http
from tasks.commands.shell import q


def ring_latencies(socket: str, ring: str, seconds: float) -> str:
    """Prints the total milliseconds of each request the local proxy's RING logged in the last
    SECONDS (nothing when there is no proxy)."""
    return f"{{ {haproxy.recent_events(socket, ring, seconds)}; }} 2>/dev/null | awk '{{print $3}}'"


def probe_latencies(url: str, probes: int, timeout: float) -> str:
    """Prints the milliseconds of PROBES GETs of URL (no proxy to read): a request refused
    (nothing serves) prints nothing, one that timed out prints the timeout."""
    return (
        f"{http.timed_gets(url, probes, timeout)} | "
        f"awk '$1 != \"000\" || $2 >= {timeout:g} {{print $2 * 1000}}'"
    )


P99 = (
    '{a[NR] = $1} END { if (NR < min) { print "- " NR; exit } '
    'i = int(NR * 0.99 + 0.999999); if (i < 1) i = 1; print a[i] " " NR }'
)


JUDGE = '{print ($1 == "-" || $1 <= lim ? "ok" : "over"), $1, $2}'  # of what p99() prints


def p99(sample: str, min_requests: int) -> str:
    """Prints `<p99> <requests>` of the milliseconds SAMPLE prints, one a line (`- <requests>`
    when fewer than MIN_REQUESTS came: too little load to judge)."""
    return f"{sample} | sort -n | awk -v min={int(min_requests)} {q(P99)}"


def wait_for_p99(
    sample: str,
    limit_ms: int,
    max_wait: float,
    min_requests: int,
    stop: bool,
    before: str,
) -> str:
    """Run SAMPLE (prints milliseconds, one a line) every second until their p99 is at most
    LIMIT_MS, or fewer than MIN_REQUESTS came (no load to protect), or MAX_WAIT seconds have
    passed. Prints on stdout `t` (go on) or `f` (STOP was asked and the limit still held), and
    on stderr `guard: <ok|over> p99=<ms|-> requests=<n> waited=<s> before <BEFORE>`."""
    judge = f"awk -v lim={int(limit_ms)} {q(JUDGE)}"
    return (
        "waited=0; "  # seconds slept, one a round
        "while :; do "
        f"set -- $({p99(sample, min_requests)} | {judge}); "
        'if [ "$1" = ok ] || [ "$waited" -ge ' + str(int(max_wait)) + " ]; then "
        f'echo "guard: $1 p99=$2 requests=$3 waited=$waited before "{q(before)} >&2; '
        f'if [ "$1" = over ] && [ {int(stop)} = 1 ]; then echo f; else echo t; fi; '
        "break; fi; sleep 1; waited=$((waited + 1)); done"
    )
