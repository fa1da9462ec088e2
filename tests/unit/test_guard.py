"""The guard's own part in Python: the command it sends for each setting, and what it makes of
the lines the command prints (the command itself runs in tests/unit/test_commands.py)."""

from dataclasses import replace

from fake_remote import FakeRemote

from tasks.config import validate
from tasks.context import Run
from tasks.guard import Gate, command, limit_ms
from tasks.method import method_for

S, _ = validate(
    {"deploy_env": "t", "app_repo_url": "git://h/r.git", "db_host": "db1", "db_user": "monitoring"},
    {"DB_PASSWORD": "x"},
)


def test_the_guard_reads_the_local_proxy_with_blue_green_and_probes_without():
    blue_green = command(S, method_for(S), "the backup (pg_dump)")
    assert "show events access" in blue_green and "curl" not in blue_green
    assert "lim=250 " in blue_green and "min=20 " in blue_green and "-ge 120 ]" in blue_green
    restart = replace(S, release_strategy="restart")
    probes = command(restart, method_for(restart), "the backup (pg_dump)")
    assert "curl" in probes and "show events" not in probes and "min=1 " in probes


def test_the_guard_is_off_at_zero_and_for_a_cluster():
    assert command(replace(S, deploy_guard_p99_ms=0), method_for(S), "x") is None
    helm = replace(S, release_method="helm")
    assert command(helm, method_for(helm), "x") is None


def test_a_wait_is_said_and_kept_in_the_report_and_an_instant_pass_is_not():
    run, host = Run(host="app1", env="t"), FakeRemote("app1")
    gate = Gate(run, host, S, method_for(S))
    gate.report(
        "guard: ok p99=12 requests=300 waited=0 before migration 003, CREATE INDEX a\n"
        "psql: something else\n"
        "guard: ok p99=40 requests=280 waited=4 before migration 003, CREATE INDEX b\n"
        "guard: over p99=612 requests=900 waited=120 before the backup (pg_dump)\n"
    )
    assert run.facts["guard"] == [
        {"before": "migration 003, CREATE INDEX b", "state": "ok", "p99_ms": "40", "waited_s": 4},
        {"before": "the backup (pg_dump)", "state": "over", "p99_ms": "612", "waited_s": 120},
    ]
    said = "\n".join(host.said)
    assert said.startswith("guard: waited 4s before migration 003, CREATE INDEX b")
    assert "CREATE INDEX a" not in said and "still over" in said


def test_the_limit_follows_a_release_that_was_slow_before_the_deploy_and_never_drops():
    assert limit_ms(S, None) == 250  # too few requests to know
    assert limit_ms(S, 40.0) == 250  # 2 x 40 ms is under the fixed limit
    assert limit_ms(S, 4486.0) == 8972
    assert limit_ms(replace(S, deploy_guard_over_baseline=0), 4486.0) == 250


def test_the_baseline_is_read_once_per_run_and_its_limit_is_in_every_wait(monkeypatch):
    sent = []

    def fake_sh(h, cmd, timeout=60, what=None, check=True):
        sent.append(cmd)
        return True, "4486 480\n", ""

    monkeypatch.setattr("tasks.guard.sh", fake_sh)
    run = Run(host="app1", env="t")
    gate = Gate(run, FakeRemote("app1"), S, method_for(S))
    first, second = gate.command("the backup (pg_dump)"), gate.command("migration 003")
    assert len(sent) == 1 and "show events access" in sent[0]
    assert "lim=8972 " in first and "lim=8972 " in second
    assert run.facts["guard_baseline"] == {"p99_ms": 4486.0, "requests": 480, "limit_ms": 8972}
    quiet = Gate(Run(host="app1", env="t"), FakeRemote("app1"), S, method_for(S))
    monkeypatch.setattr("tasks.guard.sh", lambda *a, **k: (True, "- 3\n", ""))
    assert "lim=250 " in quiet.command("the backup (pg_dump)")
