"""The monitoring window's and the verification's judgements (tasks/monitor.py,
tasks/verify.py) on an in-memory host: what each look at the service finds, and which answer is
a breach."""

from __future__ import annotations

import pytest
from fake_remote import FakeRemote

from tasks import monitor, verify
from tasks.config import validate
from tasks.context import Run
from tasks.remote import DeployError

S, _ = validate(
    {"deploy_env": "t", "app_repo_url": "git://h/r.git", "db_host": "db1"}, {"DB_PASSWORD": "x"}
)
URL = "http://127.0.0.1:8080/api/v1/metrics/history?type=cpu&duration=1h"


def service(
    answer="200 0.012", connections=(True, "7"), errors="", stats="keyspace_hits:90\n"
) -> FakeRemote:
    """An app host whose history endpoint, database, log and cache answer as told."""
    host = FakeRemote("app1")
    host.answer(r"curl", (True, f"{answer}\n[]"))
    host.answer(r"pg_stat_activity", connections)
    host.answer(r"grep ERROR", (True, errors))
    host.answer(r"info.*stats", (True, stats + "keyspace_misses:10\n"))
    return host


def test_a_healthy_look_is_no_breach_and_keeps_what_it_saw():
    sample, breach = monitor._sample(service(), S, URL, 0)
    assert breach is None
    assert (sample["status"], sample["ms"], sample["connections"], sample["errors"]) == (
        200,
        12.0,
        7,
        0,
    )
    assert (sample["keyspace_hits"], sample["keyspace_misses"]) == (90, 10)


@pytest.mark.parametrize(
    "host, breach",
    [
        (
            service(connections=DeployError("counting the database's connections timed out")),
            "the database did not answer (counting the database's connections timed out)",
        ),
        (service(answer="502 0.002"), "history endpoint answered 502"),
        (service(answer="200 0.612"), "history endpoint took 612.0 ms (limit 500)"),
        (service(errors="ERROR a\nERROR b"), "2 ERROR line(s) in the log during the window"),
        (service(connections=(True, "100")), "100 database connections"),
    ],
)
def test_each_kind_of_trouble_is_a_breach_naming_itself(host, breach):
    assert monitor._sample(host, S, URL, 0)[1] == breach


def test_redis_gone_is_kept_in_the_sample_and_is_no_breach_by_itself():
    host = service()
    host.answer(r"info.*stats", DeployError("redis-cli failed on app1: Connection refused"))
    sample, breach = monitor._sample(host, S, URL, 0)
    assert breach is None and "Connection refused" in sample["redis"]


def test_every_failed_check_is_kept_and_named_with_what_it_wanted():
    run = Run(host="app1", env="t")
    check = verify.Checks(run)
    check("health check", "200", "503", False)
    check("history endpoint", "< 500 ms", "120 ms", True)
    check("connections", "< 100", 120, False)
    assert check.failures == ["health check: 503 (wanted 200)", "connections: 120 (wanted < 100)"]
    assert [m["pass"] for m in run.metrics] == [False, True, False]


def test_the_cache_check_compares_the_counts_before_and_after():
    run = Run(host="app1", env="t")
    check = verify.Checks(run)
    before = {"keyspace_hits": 10, "keyspace_misses": 10}
    verify._cache(S, check, before, {"keyspace_hits": 16, "keyspace_misses": 14}, keys=3)
    assert check.failures == [
        "Redis hit ratio (INFO stats delta): 0.60 (6 hits, 4 misses) (wanted >= 0.70)"
    ]
    check.failures.clear()
    verify._cache(S, check, before, {"keyspace_hits": 19, "keyspace_misses": 11}, keys=0)
    assert check.failures == ["Redis metrics:* keys (SCAN): 0 (wanted > 0)"]
