"""Canary analysis: is the canary worse than the hosts still on the old release?

After the canary batch is back in service, it takes real traffic beside the baseline (the app
hosts of later batches, still on the old release) for `rollout_analysis_seconds`. The requests
come from the balancer's log when it keeps one (`lb_haproxy_ring`, lb_mode haproxy: what users
saw, the hop to the host included), from each host's local proxy otherwise (files/proxy.cfg:
time, status, total time in an in-memory ring; the health checks and the host's own requests
left out); the judge reads the same window and compares the canary's requests with the
baseline's:

- latency, as distributions: a one-sided Mann-Whitney U test (is the canary's latency
  stochastically larger?) and a minimum effect, the difference of the medians, so that a
  significant but trivial difference passes (`rollout_analysis_latency_margin_ms` and `_pct`);
- errors (5xx, and requests that got no answer): a one-sided test of two proportions.

A metric fails when its p-value is below `rollout_analysis_alpha` and the canary is worse by
more than the margin. Too few requests on either side is inconclusive, and
`rollout_analysis_inconclusive` decides. This is what Kayenta does for Spinnaker, on the
proxy's log instead of a metrics store, or (`rollout_analysis_source: prometheus`) on the
balancer's HAProxy exporter as Prometheus scraped it: each server's average time at each
scrape (HAProxy's average over its last 1024 requests) stands for the latency distribution,
and its answers by class give the errors.

The statistics are pure functions (normal approximations, exact enough for the hundreds of
requests a window holds); the rollout (tasks/rollout.py) reads the rings and acts on the verdict.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

# the ring's lines: `<epoch seconds>.<ms> <status> <total ms>` (log-format in files/proxy.cfg);
# a balancer's add the server that answered (`%Ts.%ms %ST %Ta %s`, see lb_haproxy_ring)


@dataclass
class Sample:
    """The requests one side (canary or baseline) answered in the window. From a log, one
    latency per request; from Prometheus (tasks/promql.py), one per scrape of each server's
    average time, and the requests COUNTED from its counters."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    counted: int | None = None

    @property
    def requests(self) -> int:
        return len(self.latencies_ms) if self.counted is None else self.counted

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def quantile(self, q: float) -> float:
        """The Q-quantile (0..1) of the latencies, nearest rank; 0 without requests."""
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    def add(self, other: Sample) -> None:
        """OTHER's requests added (two logs: counted is not used)."""
        self.latencies_ms += other.latencies_ms
        self.errors += other.errors


def parse_events(text: str, servers: Collection[str] | None = None) -> Sample:
    """The ring's lines as a Sample. A status of 500 or more, or none (-1: no answer, the
    client gone or the server unreachable), is an error; a line that is not an event is
    skipped. With SERVERS, the lines are a balancer's, the answering server last: only those
    of SERVERS count."""
    sample = Sample()
    for line in text.splitlines():
        parts = line.split()
        if servers is not None:
            if len(parts) != 4 or parts[3] not in servers:
                continue
            parts = parts[:3]
        if len(parts) != 3:
            continue
        try:
            status, total = int(parts[1]), float(parts[2])
        except ValueError:
            continue
        if status >= 500 or status < 100:
            sample.errors += 1
        sample.latencies_ms.append(max(total, 0.0))
    return sample


def _normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2))


def mann_whitney_greater(x: Sequence[float], y: Sequence[float]) -> float:
    """One-sided p-value of the Mann-Whitney U test that X's values tend to be larger than Y's
    (normal approximation with the tie correction and a continuity correction). 1.0 when
    either side is empty or every value is the same."""
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        return 1.0
    pooled = sorted([(v, 0) for v in x] + [(v, 1) for v in y])
    n = n1 + n2
    rank_sum_x = 0.0
    ties = 0.0
    i = 0
    while i < n:
        j = i
        while j + 1 < n and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        rank = (i + j) / 2 + 1  # the average rank of a run of ties
        count = j - i + 1
        ties += count**3 - count
        rank_sum_x += rank * sum(1 for k in range(i, j + 1) if pooled[k][1] == 0)
        i = j + 1
    u = rank_sum_x - n1 * (n1 + 1) / 2
    variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if variance <= 0:
        return 1.0
    z = (u - n1 * n2 / 2 - 0.5) / math.sqrt(variance)
    return _normal_sf(z)


def two_proportions_greater(errors_a: int, n_a: int, errors_b: int, n_b: int) -> float:
    """One-sided p-value that the rate ERRORS_A/N_A is larger than ERRORS_B/N_B (the pooled
    two-proportion z-test). 1.0 when a side is empty or neither side has an error."""
    if n_a == 0 or n_b == 0:
        return 1.0
    pooled = (errors_a + errors_b) / (n_a + n_b)
    if pooled in (0.0, 1.0):
        return 1.0
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    return _normal_sf((errors_a / n_a - errors_b / n_b) / se)


@dataclass(frozen=True)
class Judgement:
    """One metric's comparison."""

    metric: str  # latency, errors
    passed: bool
    canary: str  # what was measured, as a person reads it
    baseline: str
    p_value: float
    margin: str

    def line(self) -> str:
        verdict = "pass" if self.passed else "FAIL"
        p = f"p={self.p_value:.2g}" if self.p_value > 0 else "p<1e-300"  # below a double's range
        return (
            f"{self.metric} {verdict}: canary {self.canary}, baseline {self.baseline}, "
            f"{p}, margin {self.margin}"
        )


@dataclass(frozen=True)
class Verdict:
    result: str  # pass, fail, inconclusive
    judgements: tuple[Judgement, ...]
    reason: str
    canary: Sample
    baseline: Sample

    def rejects(self, inconclusive: str) -> bool:
        """The canary goes back: a metric failed, or too few requests and INCONCLUSIVE is
        `fail`."""
        return self.result == "fail" or (self.result == "inconclusive" and inconclusive == "fail")

    def summary(self) -> str:
        lines = [f"canary analysis: {self.result} ({self.reason})"]
        return "; ".join(lines + [j.line() for j in self.judgements])

    def facts(self) -> dict[str, Any]:
        """What the report shows: the verdict, each metric, both sides' latency quantiles."""
        quantiles = (0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
        return {
            "result": self.result,
            "reason": self.reason,
            "metrics": [j.line() for j in self.judgements],
            "quantiles": list(quantiles),
            "canary_ms": [self.canary.quantile(q) for q in quantiles],
            "baseline_ms": [self.baseline.quantile(q) for q in quantiles],
            "requests": {"canary": self.canary.requests, "baseline": self.baseline.requests},
        }


def _describe(sample: Sample) -> str:
    return (
        f"median {sample.quantile(0.5):.0f} ms, p99 {sample.quantile(0.99):.0f} ms "
        f"({sample.requests} requests)"
    )


def judge(
    canary: Sample,
    baseline: Sample,
    *,
    alpha: float,
    min_requests: int,
    latency_margin_ms: float,
    latency_margin_pct: float,
) -> Verdict:
    """The verdict on CANARY against BASELINE, measured over the same window."""
    short = [
        f"{name} {side.requests}"
        for name, side in (("canary", canary), ("baseline", baseline))
        if side.requests < min_requests
    ]
    if short:
        reason = f"too few requests to judge: {', '.join(short)} (fewer than {min_requests})"
        return Verdict("inconclusive", (), reason, canary, baseline)
    base_median, canary_median = baseline.quantile(0.5), canary.quantile(0.5)
    margin = max(latency_margin_ms, latency_margin_pct / 100 * base_median)
    p_latency = mann_whitney_greater(canary.latencies_ms, baseline.latencies_ms)
    latency = Judgement(
        "latency",
        not (p_latency < alpha and canary_median - base_median > margin),
        _describe(canary),
        _describe(baseline),
        p_latency,
        f"median +{margin:.1f} ms",
    )
    p_errors = two_proportions_greater(
        canary.errors, canary.requests, baseline.errors, baseline.requests
    )
    errors = Judgement(
        "errors",
        not (p_errors < alpha and canary.error_rate > baseline.error_rate),
        f"{canary.errors}/{canary.requests} ({canary.error_rate:.2%})",
        f"{baseline.errors}/{baseline.requests} ({baseline.error_rate:.2%})",
        p_errors,
        "none (any significant excess)",
    )
    failed = [j.metric for j in (latency, errors) if not j.passed]
    result = "fail" if failed else "pass"
    reason = f"worse: {', '.join(failed)}" if failed else f"no metric worse at alpha {alpha:g}"
    return Verdict(result, (latency, errors), reason, canary, baseline)
