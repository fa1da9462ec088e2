"""The rollout's decisions and failure paths (tasks/rollout.py), in seconds: the real
orchestration on in-memory hosts (tests/unit/fake_remote.py) and a strategy that switches what
the test says. Every host runs in its own greenlet, as pyinfra runs them; the balancer is a fake
host too, answering HAProxy's admin socket."""

from __future__ import annotations

import gevent
import pytest
from fake_remote import FakeRemote

from tasks import lock, rollout
from tasks.config import validate
from tasks.context import Plan, Run, RunContext
from tasks.remote import DeployError
from tasks.rollout import Fleet

BASE = {
    "deploy_env": "t",
    "app_repo_url": "git://h/r.git",
    "db_host": "db1",
    "lb_mode": "haproxy",
    "rollout_canary": 1,
    "rollout_batch": "1",
    "rollout_analysis": False,
    "release_drain_timeout": 1,
    "app_health_timeout": 1,
    "lb_health_wait": 0,
}
PLAN = Plan(
    ref="v2",
    commit="c" * 40,
    release="v2-cccc",
    release_dir="/app/releases/v2-cccc",
    previous_dir="/app/releases/v1-bbbb",
    previous_version="v1",
    is_migration_host=False,
    release_changes=True,
)
GATE = (True, '200 0.004\n{"version":"2.0.0"}')


class Strategy:
    """Switches a host by recording it; a host in BROKEN fails its health check there."""

    name, how, health_metric = "blue_green", "blue/green", "health check before traffic"
    logs_requests = seamless = True

    def __init__(self, broken=(), requests=None) -> None:
        self.broken, self.requests = set(broken), requests or {}
        self.switched: list[str] = []

    def serves(self, h, release_dir: str) -> bool:
        return False

    def put_in_service(self, h, release_dir: str, restart: bool) -> str:
        if h.name in self.broken:
            raise DeployError(f"{h.name} did not answer healthy within 1s")
        self.switched.append(h.name)
        return f"slot green serves {release_dir.rsplit('/', 1)[-1]}"

    def recent_requests(self, h, seconds: float) -> str:
        return self.requests.get(h.name, "")

    def in_maintenance(self, h) -> bool:
        return False


def balancer(names: list[str], drained=(True, "MAINT 0 0"), up=(True, "UP 0 0")) -> FakeRemote:
    lb = FakeRemote("lb1")
    lb.answer(r"show stat", (True, "\n".join(f"{n} UP" for n in names)))
    lb.answer(r"for i in .*\[ \"\$cur\" = 0 \]", drained)  # haproxy_wait until drained
    lb.answer(r"for i in .*\[ \"\$status\" = UP \]", up)  # haproxy_wait until up
    return lb


def roll(names, strategy, lb=None, gates=None, **settings):
    """Every host of NAMES through switch_in_turn at once; (what the failure path was told
    per host, the hosts, the context)."""
    s, problems = validate({**BASE, **settings}, {"DB_PASSWORD": "x"})
    assert problems == []
    hosts = [FakeRemote(n).answer(r"curl", (gates or {}).get(n, GATE)) for n in names]
    lb = lb or balancer(names)
    fleet = Fleet(hosts, [], lambda: lb)
    ctx = RunContext("deploy", [])
    ctx.runs = {n: Run(host=n, env="t") for n in names}
    failed: dict[str, tuple[str, str, bool]] = {}

    def fail_for(h):
        def fail(phase, error, strategy_):
            failed[h.name] = (phase, str(error), strategy_ is not None)
            return False

        return fail

    greenlets = [
        gevent.spawn(rollout.switch_in_turn, ctx, s, PLAN, strategy, fleet, h, False, fail_for(h))
        for h in hosts
    ]
    gevent.joinall(greenlets, timeout=30, raise_error=True)
    assert all(g.ready() for g in greenlets), "a host's rollout did not end"
    return failed, {h.name: h for h in hosts}, lb, ctx


def balancer_states(lb: FakeRemote, name: str) -> list[str]:
    return [c.split(f"app_servers/{name} state ")[1].split("'")[0] for c in lb.ran(name + " state")]


def test_batches_switch_in_order_each_host_drained_and_put_back():
    strategy = Strategy()
    failed, hosts, lb, ctx = roll(["app1", "app2", "app3"], strategy)
    assert failed == {}
    assert strategy.switched == ["app1", "app2", "app3"]
    for name in hosts:
        assert balancer_states(lb, name) == ["drain", "ready"]
        assert ctx.runs[name].facts["serving"] == "v2-cccc"
        assert any(line.startswith("gate passed: history 200") for line in hosts[name].said)


def test_a_canary_that_fails_its_health_check_stops_the_rollout_and_touches_no_other_host():
    strategy = Strategy(broken={"app1"})
    failed, _, lb, ctx = roll(["app1", "app2", "app3"], strategy)
    assert failed["app1"] == ("release", "app1 did not answer healthy within 1s", True)
    assert strategy.switched == []
    for name in ("app2", "app3"):
        phase, error, back = failed[name]
        assert (phase, back) == ("rollout", False)
        assert "the rollout stopped at batch 1/3 (canary) [app1]" in error
        assert "this host was not touched and keeps v1" in error
        assert balancer_states(lb, name) == [] and ctx.runs[name].facts["serving"] == "v1"
    assert balancer_states(lb, "app1") == ["drain", "ready"]  # back in service, old release
    assert ctx.runs["app1"].metrics[0]["metric"] == "health check before traffic"


def test_a_canary_that_fails_its_gate_goes_back_out_of_service():
    gates = {"app1": (True, "500 0.003\ninternal error")}
    failed, _, lb, _ = roll(["app1", "app2"], Strategy(), gates=gates)
    assert failed["app1"] == (
        "release",
        "the history endpoint answered 500 through port 8080",
        True,
    )
    # drained for the switch, back in, drained again while the failure path switches it back
    assert balancer_states(lb, "app1") == ["drain", "ready", "drain", "ready"]
    assert failed["app2"][0] == "rollout"


@pytest.mark.parametrize("max_fail", [0, 1])
def test_a_failed_batch_beyond_rollout_max_fail_sends_every_switched_host_back(max_fail):
    strategy = Strategy(broken={"app2"})
    failed, _, lb, ctx = roll(["app1", "app2", "app3"], strategy, rollout_max_fail=max_fail)
    assert failed["app2"] == ("release", "app2 did not answer healthy within 1s", True)
    if max_fail == 0:
        assert failed["app1"] == (
            "release",
            "batch 2/3 [app2] failed (app2): every host this run switched goes back",
            True,
        )
        assert balancer_states(lb, "app1") == ["drain", "ready", "drain", "ready"]
        assert failed["app3"][0] == "rollout" and strategy.switched == ["app1"]
        assert ctx.runs["app1"].facts["serving"] == "v1"
    else:  # within rollout_max_fail: the rollout goes on
        assert set(failed) == {"app2"} and strategy.switched == ["app1", "app3"]
        assert ctx.runs["app3"].facts["serving"] == "v2-cccc"


def test_a_host_still_busy_after_the_drain_timeout_is_switched_anyway():
    lb = balancer(["app1", "app2"], drained=(False, "DRAIN 3 0"))
    failed, hosts, _, _ = roll(["app1", "app2"], Strategy(), lb=lb)
    assert failed == {}
    assert "drained on lb1 (status, sessions, queued: DRAIN 3 0)" in hosts["app1"].said


def test_a_host_the_balancer_never_sees_up_again_fails_its_batch():
    lb = balancer(["app1", "app2"], up=(False, "DOWN 0 0"))
    failed, hosts, _, _ = roll(["app1", "app2"], Strategy(), lb=lb)
    phase, error, back = failed["app1"]
    assert (phase, back) == ("release", True)
    assert error == (
        "app_servers/app1 on lb1 was not up within 15s (status, sessions, queued: DOWN 0 0)"
    )
    assert failed["app2"][0] == "rollout"
    assert any("app1 is left out of the balancer" in line for line in hosts["app1"].said)


def test_the_last_server_in_service_is_not_drained_by_a_seamless_switch():
    lb = balancer(["app1"])
    failed, hosts, _, _ = roll(["app1"], Strategy(), lb=lb)
    assert failed == {} and balancer_states(lb, "app1") == []
    assert any("stays in service on lb1" in line for line in hosts["app1"].said)


def events(count: int, ms: float) -> str:
    return "\n".join(f"{1_700_000_000 + i / 100:.2f} 200 {ms + (i % 7) / 10}" for i in range(count))


def test_a_canary_slower_than_its_baseline_is_rejected_and_goes_back():
    requests = {"app1": events(300, 20), "app2": events(300, 2), "app3": events(300, 2)}
    strategy = Strategy(requests=requests)
    failed, hosts, _, ctx = roll(
        ["app1", "app2", "app3"],
        strategy,
        rollout_analysis=True,
        rollout_analysis_seconds=1,
        rollout_batch="2",
    )
    phase, error, back = failed["app1"]
    assert (phase, back) == ("analysis", True) and "latency" in error
    assert ctx.runs["app1"].facts["canary_analysis"]["rejected"] is True
    assert strategy.switched == ["app1"]  # the baseline hosts were never switched
    assert failed["app2"][0] == failed["app3"][0] == "rollout"


def test_a_canary_as_fast_as_its_baseline_passes():
    requests = {n: events(300, 2) for n in ("app1", "app2", "app3")}
    strategy = Strategy(requests=requests)
    failed, _, _, ctx = roll(
        ["app1", "app2", "app3"],
        strategy,
        rollout_analysis=True,
        rollout_analysis_seconds=1,
        rollout_batch="2",
    )
    assert failed == {} and strategy.switched == ["app1", "app2", "app3"]
    assert ctx.runs["app1"].facts["canary_analysis"]["rejected"] is False


def test_the_lock_is_released_by_the_last_app_host_to_finish(monkeypatch):
    hosts = [FakeRemote(n) for n in ("app1", "app2", "app3")]
    monkeypatch.setattr(lock, "app_hosts", lambda: hosts)
    s, _ = validate(BASE, {"DB_PASSWORD": "x"})
    ctx = RunContext("deploy", [])
    ctx.lock_holder = "ci@runner pid 1 run 1"
    for h in hosts[:2]:
        lock.release_when_last(ctx, h, s)
        assert ctx.lock_holder and not h.ran("DELETE FROM deploy_lock")
    lock.release_when_last(ctx, hosts[2], s)
    assert ctx.lock_holder == ""
    [delete] = hosts[2].ran("DELETE FROM deploy_lock")
    assert "ci@runner pid 1 run 1" in delete
