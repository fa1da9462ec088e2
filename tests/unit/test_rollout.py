"""The rollout's batch plan and its bookkeeping (pure: no host)."""

import pytest

from tasks.batches import Rollout, batch_plan
from tasks.config import validate

HOSTS = [f"app{n}" for n in range(1, 9)]


@pytest.mark.parametrize(
    ("batch", "canary", "expected"),
    [
        ("100%", 0, [HOSTS]),
        ("1", 0, [[h] for h in HOSTS]),
        ("3", 0, [HOSTS[0:3], HOSTS[3:6], HOSTS[6:8]]),
        ("25%", 0, [HOSTS[0:2], HOSTS[2:4], HOSTS[4:6], HOSTS[6:8]]),
        ("30%", 0, [HOSTS[0:3], HOSTS[3:6], HOSTS[6:8]]),  # a share is rounded up
        ("1%", 0, [[h] for h in HOSTS]),
        ("2", 1, [["app1"], HOSTS[1:3], HOSTS[3:5], HOSTS[5:7], ["app8"]]),
        ("100%", 2, [HOSTS[0:2], HOSTS[2:]]),
        ("50%", 1, [["app1"], HOSTS[1:5], HOSTS[5:8]]),
        ("10", 8, [HOSTS]),  # a canary of every host leaves nothing after it
    ],
)
def test_batches(batch, canary, expected):
    assert batch_plan(HOSTS, batch, canary) == expected


def test_one_host_is_one_batch_whatever_is_asked():
    assert batch_plan(["app1"], "25%", 1) == [["app1"]]
    assert batch_plan(["app1"], "3", 0) == [["app1"]]


def _run(
    batches: list[list[str]], max_fail: int, failing: set[str], unreachable: list[str] = ()
) -> Rollout:
    r = Rollout(batches, max_fail, bound=1, unreachable=list(unreachable))
    for index, names in enumerate(batches):
        assert not r.ended[index].is_set()
        for name in names:
            r.finish(name, name not in failing)
        assert r.ended[index].is_set()
    return r


def test_a_failed_canary_stops_the_rollout_after_its_batch():
    r = _run(batch_plan(HOSTS[:3], "1", 1), max_fail=0, failing={"app1"})
    assert r.stopped_at == 0 and r.failed == ["app1"]
    assert r.label(0) == "batch 1/3 (canary) [app1]"


def test_max_fail_lets_that_many_hosts_fail_before_stopping():
    r = _run(batch_plan(HOSTS, "2", 0), max_fail=2, failing={"app1", "app4", "app5"})
    assert r.failed == ["app1", "app4", "app5"]
    assert r.stopped_at == 2  # the third failure, in batch 3 (app5, app6)
    r = _run(batch_plan(HOSTS, "2", 0), max_fail=2, failing={"app1", "app4"})
    assert r.stopped_at is None


def test_unreachable_hosts_use_up_the_failure_budget_from_the_start():
    reachable = HOSTS[:3]
    r = _run(batch_plan(reachable, "1", 1), max_fail=1, failing=set(), unreachable=["app8"])
    assert r.stopped_at is None and r.failed == ["app8"]
    r = _run(batch_plan(reachable, "1", 1), max_fail=1, failing={"app2"}, unreachable=["app8"])
    assert r.stopped_at == 1  # app8 and app2: one more than allowed


@pytest.mark.parametrize("value", ["0", "0%", "101%", "-1", "abc", "5 %", ""])
def test_a_bad_batch_is_reported(value):
    _, problems = validate(
        {"deploy_env": "x", "app_repo_url": "u", "db_host": "d", "rollout_batch": value},
        environ={"DB_PASSWORD": "p"},
    )
    assert [p for p in problems if p.startswith("rollout_batch")] == [
        f"rollout_batch: must be a count like 2 or a share like 25% (1-100%), got {value!r}"
    ]


def test_health_check_draining_needs_the_blue_green_proxy():
    _, problems = validate(
        {
            "deploy_env": "x",
            "app_repo_url": "u",
            "db_host": "d",
            "lb_mode": "health_check",
            "release_strategy": "restart",
        },
        environ={"DB_PASSWORD": "p"},
    )
    assert problems == [
        "lb_mode: health_check needs release_strategy blue_green (its local proxy fails the "
        "balancer's health check while the host drains)"
    ]


def test_a_batch_count_from_yaml_is_a_number_and_is_accepted():
    s, problems = validate(
        {"deploy_env": "x", "app_repo_url": "u", "db_host": "d", "rollout_batch": 2},
        environ={"DB_PASSWORD": "p"},
    )
    assert problems == [] and s.rollout_batch == "2"
