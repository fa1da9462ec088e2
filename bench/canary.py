"""The canary analysis, measured: `.venv/bin/python bench/canary.py [--aa 20] [--slow 10]
[--flaky 10] [--seconds 30]` (as root, on this machine; it brings the lab's production up
itself, three app hosts behind lb1).

k6 sends 100 requests/s through lb1 (open loop) during each deploy; app1 is the canary, judged
against app2 and app3 over the same window (`rollout_analysis_seconds`), from lb1's request
log (`lb_haproxy_ring` in the lab's production). Three kinds of run,
interleaved, each from v2.0.0-perf serving everywhere:

- A/A: an `.env`-only deploy (SERVER_IDLE_TIMEOUT 120s <-> 121s), the same binary: a new
  process, nothing worse. It should pass;
- v2.0.2-slow (each history answer 15 ms slower) and v2.0.3-flaky (0.8% of them 500): both
  pass every threshold of the checklist; each should be rejected at the canary.

Per run: the verdict, the exit code, the time from the canary back in service to the verdict
and from the start of the deploy to it, and k6's own counts: failed requests by status
(a flaky canary's own 500s apart), dropped and unsent.
"""

from __future__ import annotations

import argparse
import itertools
import re
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from chaos import INVENTORY, PYINFRA, QUICK, RATE, start  # noqa: E402 - bench/, beside this one

from lab import core  # noqa: E402
from lab.load import Load  # noqa: E402

REFS = {"aa": "v2.0.0-perf", "slow": "v2.0.2-slow", "flaky": "v2.0.3-flaky"}


def deploy(ref: str, idle: str, seconds: int) -> tuple[int, list[tuple[float, str]]]:
    """Deploy REF with SERVER_IDLE_TIMEOUT IDLE (SECONDS of canary analysis, 0: none); its exit
    code and its output lines, each with the time.monotonic() it was read at."""
    argv = [
        PYINFRA, "-y", INVENTORY, "deploy.py", *QUICK,
        "--data", f"app_version={ref}",
        "--data", f"server_idle_timeout={idle}",
        "--data", f"rollout_analysis={'true' if seconds else 'false'}",
        "--data", f"rollout_analysis_seconds={max(seconds, 1)}",
        "--data", "rollout_analysis_inconclusive=fail",
    ]  # fmt: skip
    proc = start(argv)
    lines: list[tuple[float, str]] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append((time.monotonic(), line.rstrip("\n")))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    proc.wait(timeout=900)
    reader.join(timeout=30)
    return proc.returncode, lines


def when(lines: list[tuple[float, str]], pattern: str) -> tuple[float, str] | None:
    return next(((t, line) for t, line in lines if re.search(pattern, line)), None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aa", type=int, default=20)
    parser.add_argument("--slow", type=int, default=10)
    parser.add_argument("--flaky", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=30, help="rollout_analysis_seconds")
    args = parser.parse_args()
    echo = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    core.up("production", echo=echo, app_hosts=3)
    url = f"http://{next(h for h in core.hosts_of('production') if h.name == 'lb1').address}:80"
    idle = itertools.cycle(["121s", "120s"])
    current_idle = "120s"
    code, lines = deploy("v2.0.0-perf", current_idle, 0)  # no traffic yet: nothing to judge
    if code != 0:
        raise SystemExit("v2.0.0-perf did not deploy:\n" + "\n".join(x for _, x in lines[-40:]))

    counts = {"aa": args.aa, "slow": args.slow, "flaky": args.flaky}
    schedule = []
    while any(counts.values()):  # interleaved: aa, slow, aa, flaky, ...
        for kind in ("aa", "slow", "aa", "flaky"):
            if counts[kind]:
                schedule.append(kind)
                counts[kind] -= 1

    print(
        "| run | deploy | verdict | exit | traffic -> verdict | start -> verdict | "
        "500s | other failed | dropped | unsent | p99 ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    results = []
    sources = set()
    for i, kind in enumerate(schedule, start=1):
        wanted_idle = next(idle) if kind == "aa" else current_idle
        with Load(url, RATE, "600s", samples=True) as load:
            time.sleep(3)
            began = time.monotonic()
            code, lines = deploy(REFS[kind], wanted_idle, args.seconds)
            traffic = load.result(stop_early=True)
            statuses = [status for _, status in load.timed_answers() if status != 200]
        if code == 0:
            current_idle = wanted_idle
        window = when(lines, r"canary analysis: \S+ take real traffic")
        verdict = when(lines, r"canary analysis: (pass|fail|inconclusive) ")
        result = re.search(r"canary analysis: (\w+)", verdict[1]).group(1) if verdict else "none"
        to_verdict = verdict[0] - window[0] if verdict and window else float("nan")
        from_start = verdict[0] - began if verdict else float("nan")
        own_500 = statuses.count(500) if kind == "flaky" else 0
        other = len(statuses) - own_500
        results.append((kind, result, code, to_verdict, from_start, own_500, other, traffic))
        print(
            f"| {i} | {REFS[kind]}{' (A/A)' if kind == 'aa' else ''} | {result} | {code} | "
            f"{to_verdict:.1f} s | {from_start:.1f} s | {own_500} | {other} | "
            f"{traffic.dropped} | {traffic.unsent} | {traffic.p99_ms:.1f} |",
            flush=True,
        )
        if verdict:
            sources.update(re.findall(r"; from ([^)]+)\)", verdict[1]))
            detail = [line.strip() for _, line in lines if " FAIL: " in line or " pass: " in line]
            (Path("/tmp") / f"canary-{i:02d}.txt").write_text("\n".join(detail) + "\n")

    def of(kind: str) -> list:
        return [r for r in results if r[0] == kind]

    print(f"\nrequests judged from: {', '.join(sorted(sources)) or 'no verdict'}")
    passed = sum(1 for r in of("aa") if r[1] == "pass" and r[2] == 0)
    print(f"A/A (same binary, .env only): passed {passed} of {len(of('aa'))}")
    for kind in ("slow", "flaky"):
        rejected = sum(1 for r in of(kind) if r[1] == "fail" and r[2] != 0)
        print(f"{REFS[kind]}: rejected at the canary {rejected} of {len(of(kind))}")
    waits = [r[3] for r in results if r[3] == r[3]]
    starts = [r[4] for r in results if r[4] == r[4]]
    if waits:
        print(
            f"time to a verdict, median: {statistics.median(waits):.1f} s from the canary "
            f"taking traffic ({args.seconds} s window), {statistics.median(starts):.1f} s from "
            "the start of the deploy"
        )
    print(
        f"requests: flaky canary's own 500s {sum(r[5] for r in results)}; other failed "
        f"{sum(r[6] for r in results)}, dropped {sum(r[7].dropped for r in results)}, unsent "
        f"{sum(r[7].unsent for r in results)} of {sum(r[7].requests for r in results)}"
    )
    clean = all(r[6] == 0 and r[7].dropped == 0 and r[7].unsent == 0 for r in results)
    good = passed >= 0.95 * len(of("aa")) and all(
        sum(1 for r in of(k) if r[1] == "fail") >= 0.9 * len(of(k)) for k in ("slow", "flaky")
    )
    return 0 if clean and good else 1


if __name__ == "__main__":
    sys.exit(main())
