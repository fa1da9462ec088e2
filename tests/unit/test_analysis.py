"""The canary analysis's statistics and verdicts (tasks/analysis.py), and the rollout's
bookkeeping around it (tasks/batches.py). Pure: no host."""

from __future__ import annotations

import random

import pytest

from tasks import analysis
from tasks.batches import Rollout
from tasks.commands import haproxy
from tasks.config import validate

JUDGE = {
    "alpha": 0.01,
    "min_requests": 200,
    "latency_margin_ms": 5,
    "latency_margin_pct": 10,
}


def side(rng: random.Random, n: int, shift_ms: float = 0, error_rate: float = 0) -> analysis.Sample:
    """N requests like the lab's: a few ms each, long-tailed, whole milliseconds (HAProxy's
    %Ta), SHIFT_MS slower, ERROR_RATE of them 500."""
    lines = [
        f"1795971181.{i % 1000:03d} {500 if rng.random() < error_rate else 200} "
        f"{int(rng.lognormvariate(1.0, 0.6) + shift_ms)}"
        for i in range(n)
    ]
    return analysis.parse_events("\n".join(lines))


def test_mann_whitney_matches_the_textbook_normal_approximation():
    # U of x over y is 9 of 9: z = (9 - 4.5 - 0.5) / sqrt(3 * 3 * 7 / 12) = 1.746, p = 0.0404
    assert analysis.mann_whitney_greater([4, 5, 6], [1, 2, 3]) == pytest.approx(0.0404, abs=1e-3)
    assert analysis.mann_whitney_greater([1, 2, 3], [4, 5, 6]) > 0.95
    assert analysis.mann_whitney_greater([], [1]) == 1.0
    assert analysis.mann_whitney_greater([2, 2], [2, 2, 2]) == 1.0  # all tied: no evidence


def test_two_proportions_match_the_pooled_z_test():
    # 10/1000 against 0/2000: pooled 1/300, z = 0.01 / sqrt(p(1-p)(1/1000 + 1/2000)) = 4.48
    assert analysis.two_proportions_greater(10, 1000, 0, 2000) == pytest.approx(3.7e-6, rel=0.1)
    assert analysis.two_proportions_greater(0, 1000, 10, 2000) > 0.98
    assert analysis.two_proportions_greater(0, 1000, 0, 2000) == 1.0


def test_parse_counts_5xx_and_unanswered_as_errors_and_skips_what_is_not_an_event():
    sample = analysis.parse_events(
        "1795971181.089 200 1\n1795971181.277 503 3\n1795971181.3 -1 -1\n\nnoise\n"
        "1795971182.041 404 2\n"
    )
    assert sample.requests == 4 and sample.errors == 2
    assert sample.latencies_ms == [1, 3, 0, 2]


@pytest.mark.parametrize("seed", range(20))
def test_the_same_release_on_both_sides_passes(seed):
    rng = random.Random(seed)
    verdict = analysis.judge(side(rng, 330), side(rng, 660), **JUDGE)
    assert verdict.result == "pass", verdict.summary()


def test_a_release_15_ms_slower_fails_on_latency_and_says_by_how_much():
    rng = random.Random(1)
    verdict = analysis.judge(side(rng, 330, shift_ms=15), side(rng, 660), **JUDGE)
    assert verdict.result == "fail" and verdict.rejects("pass")
    latency = verdict.judgements[0]
    assert latency.metric == "latency" and not latency.passed
    assert "median" in latency.canary and "p99" in latency.baseline and "p=" in latency.line()


def test_a_significant_but_trivial_slowdown_passes():
    rng = random.Random(2)
    verdict = analysis.judge(side(rng, 3000, shift_ms=1), side(rng, 6000), **JUDGE)
    latency = verdict.judgements[0]
    assert latency.p_value < 0.01 and latency.passed, latency.line()


def test_a_release_failing_one_request_in_a_hundred_fails_on_errors():
    rng = random.Random(3)
    verdict = analysis.judge(side(rng, 1000, error_rate=0.01), side(rng, 2000), **JUDGE)
    assert verdict.result == "fail"
    assert [j.passed for j in verdict.judgements] == [True, False]


def test_too_few_requests_is_inconclusive_and_the_setting_decides():
    rng = random.Random(4)
    verdict = analysis.judge(side(rng, 50, shift_ms=50), side(rng, 660), **JUDGE)
    assert verdict.result == "inconclusive" and "canary 50" in verdict.reason
    assert verdict.rejects("fail") and not verdict.rejects("pass")


def test_the_report_gets_both_sides_quantiles():
    rng = random.Random(5)
    facts = analysis.judge(side(rng, 330, shift_ms=15), side(rng, 660), **JUDGE).facts()
    assert len(facts["canary_ms"]) == len(facts["baseline_ms"]) == len(facts["quantiles"])
    assert facts["canary_ms"][3] > facts["baseline_ms"][3] + 10
    assert facts["requests"] == {"canary": 330, "baseline": 660}


def test_the_canary_batch_judges_once_and_a_rejection_stops_the_rollout_whatever_max_fail():
    r = Rollout([["app1", "app2"], ["app3"]], max_fail=5, bound=1)
    assert r.canary_back(True) is False  # app1 back: app2 still switching
    assert r.canary_back(True) is True  # app2 is the last: it judges
    r.reject("canary analysis: fail (worse: latency)")
    assert r.judged.is_set()
    r.finish("app1", False)
    r.finish("app2", False)
    assert r.stopped_at == 0


def test_a_canary_batch_that_failed_its_switch_is_not_judged():
    r = Rollout([["app1", "app2"], ["app3"]], max_fail=0, bound=1)
    assert r.canary_back(False) is False
    assert r.canary_back(True) is False  # the last, but the batch failed
    assert r.judged.is_set() and r.rejection is None


def test_the_ring_is_read_for_the_hosts_own_last_seconds():
    command = haproxy.recent_events("/run/p/admin.sock", "access", 30)
    assert "show events access" in command and "date +%s.%N" in command
    assert "now - s" in command and "s=30.0" in command


def test_analysis_settings_are_validated_together():
    base = {"deploy_env": "x", "app_repo_url": "git://x", "db_host": "db"}
    _, problems = validate(
        {**base, "rollout_analysis_inconclusive": "maybe", "rollout_analysis_seconds": 0},
        {"DB_PASSWORD": "p"},
    )
    assert any(p.startswith("rollout_analysis_inconclusive") for p in problems)
    assert any(p.startswith("rollout_analysis_seconds") for p in problems)


def test_a_balancers_lines_are_split_by_the_server_that_answered():
    text = (
        "1795971181.089 200 4 app1\n1795971181.090 500 3 app1\n1795971181.091 200 2 app2\n"
        "1795971181.092 503 0 <NOSRV>\n1795971181.093 200 2 app3\n1795971181.094 200 2\n"
    )
    canary = analysis.parse_events(text, {"app1"})
    baseline = analysis.parse_events(text, {"app2", "app3"})
    assert (canary.requests, canary.errors) == (2, 1)
    assert (baseline.requests, baseline.errors) == (2, 0)
