"""The release ledger on the lab's staging: `releases.py` lists what each release on the host
is known for, a rollback passes over a release that failed its health checks, a rolled-back
release is marked bad, and a deploy of a bad release warns and goes on. Judged by what the
host serves, not by what the tool says of itself."""

from __future__ import annotations

import pytest
from pyinfra_cli import QUICK, output, pushed_release, pyinfra

from lab import core
from lab.topology import topology


def served(app1) -> str:
    return core.ssh(app1, "curl -s -m 5 localhost:8080/api/v1/version").stdout.decode().strip()


def ledger() -> dict[str, str]:
    """The rows releases.py prints for app1: release folder -> its whole line."""
    result = pyinfra(script="releases.py")
    assert result.returncode == 0, output(result)[-3000:]
    text = output(result).split("--> Releases on app1", 1)[1]
    rows = [line.strip() for line in text.splitlines()[2:] if line.startswith("    ")]
    return {row.split()[0].rsplit("-", 1)[0]: row for row in rows}


@pytest.fixture(scope="module")
def app1(lab):
    assert pyinfra(script="unlock.py").returncode == 0  # whatever an earlier module left
    for ref in ("v1.9.0", "v2.0.0-perf"):
        done = pyinfra(*QUICK, "--data", f"app_version={ref}")
        assert done.returncode == 0, output(done)[-3000:]
    return topology("staging")[0]


def test_the_ledger_the_rollback_and_the_deploy_judge_a_release_by_its_record(app1):
    readme = "# a release whose verification fails on this host\n"
    with pushed_release("ledger-failing", "v2.0.0-perf", {"README.md": readme}) as branch:
        failing = pyinfra(
            *QUICK,
            *("--data", f"app_version={branch}", "--data", "auto_rollback=false"),
            *("--data", "verify_min_hit_ratio=1.01"),  # no cache reaches that: verify fails
        )
        assert failing.returncode != 0 and "verify" in output(failing)
        assert served(app1) == '{"version":"2.0.0-perf"}'  # the branch's build says so too
        again = pyinfra(*QUICK, "--data", "app_version=v1.9.0")
        assert again.returncode == 0, output(again)[-3000:]
        rows = ledger()
        assert rows[branch].endswith("failed health (bad)"), rows
        assert rows["v1.9.0"].split()[1] == "*" and rows["v1.9.0"].endswith("served"), rows
        assert rows["v2.0.0-perf"].endswith("served"), rows

        back = pyinfra(script="rollback.py")
        assert back.returncode == 0, output(back)[-3000:]
        assert f"not going back to {branch}-" in output(back)
        assert served(app1) == '{"version":"2.0.0-perf"}'  # the release before the bad one
        rows = ledger()
        assert rows["v1.9.0"].endswith("rolled back (bad)"), rows
        assert rows["v2.0.0-perf"].split()[1] == "*", rows

        bad = pyinfra(*QUICK, "--data", "app_version=v1.9.0")
        assert bad.returncode == 0, output(bad)[-3000:]
        assert "WARNING: v1.9.0-" in output(bad) and "is marked bad on this host" in output(bad)
        assert served(app1) == '{"version":"1.9.0"}'
        assert ledger()["v1.9.0"].endswith("served")  # deployed again: the team chose it
