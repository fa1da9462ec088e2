"""curl against the service: one timed request, and a bounded wait for a healthy answer."""

from __future__ import annotations

from tasks.commands.shell import q


def body(url: str, timeout: float = 5) -> str:
    """curl printing the body URL answers (nothing when there is no answer)."""
    return f"curl -s -m {timeout:g} {q(url)}"


def http_probe(url: str, timeout: float = 5) -> str:
    """curl printing `<status> <seconds>` then the body on the next line."""
    return (
        f"curl -s -m {timeout:g} -o /tmp/.mdd-probe -w '%{{http_code}} %{{time_total}}\\n' "
        f"{q(url)}; cat /tmp/.mdd-probe 2>/dev/null; rm -f /tmp/.mdd-probe"
    )


def timed_gets(url: str, requests: int, timeout: float = 5) -> str:
    """REQUESTS GETs of URL one after another, each printing `<status> <seconds>` on its own
    line (status 000 for no answer): the latency check's requests in one remote command."""
    return (
        f"for i in $(seq {int(requests)}); do curl -s -m {timeout:g} -o /dev/null "
        f"-w '%{{http_code}} %{{time_total}}\\n' {q(url)}; done"
    )


def wait_healthy(url: str, expect: str, timeout: int) -> str:
    """Poll URL until it answers 200 with EXPECT in the body; bounded by TIMEOUT seconds of
    wall time (a server that accepts and never answers costs 2 s a try, not more)."""
    return (
        f"end=$(($(date +%s) + {timeout})); while :; do "
        f"body=$(curl -s -m 2 -w ' (HTTP %{{http_code}})' {q(url)} | tr -d '\\n'); "
        f'case "$body" in *{q(expect)}*" (HTTP 200)") echo "${{body% (HTTP 200)}}"; exit 0;; '
        f'esac; [ "$(date +%s)" -lt "$end" ] || break; sleep 0.25; done; '
        f'echo "no healthy answer from {url} within {timeout}s; last answer: $body" >&2; exit 1'
    )


def warm_up(url: str, requests: int, parallel: int) -> str:
    """REQUESTS GETs of URL, PARALLEL at a time (curl's --parallel), each bounded by 10 s;
    prints how many answered 200 and the slowest time."""
    urls = " ".join([q(url)] * requests)
    return (
        f"curl -s -Z --parallel-max {parallel} -m 10 -o /dev/null "
        f"-w '%{{http_code}} %{{time_total}}\\n' {urls} | "
        "awk '$1 == 200 {ok++} $2 > max {max = $2} "
        'END {printf "%d of %d answered 200, slowest %.0f ms\\n", ok, NR, max * 1000}\''
    )
