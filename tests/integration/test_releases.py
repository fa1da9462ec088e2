"""The release ledger on the lab's staging: `releases.py` lists what each release on the host
is known for, a rolled-back release is marked bad, a later rollback passes over it, and a
deploy of it warns and goes on. Judged by what the host serves, not by what the tool says of
itself."""

from __future__ import annotations

import json

import pytest
from pyinfra_runs import QUICK, output, pyinfra

from lab import core
from lab.apprepo import pushed_release
from lab.topology import topology

# every release this test goes back to stays on disk, however many earlier modules built
KEEP = ("--data", "app_keep_releases=10")


def served(app1) -> str:
    return core.ssh(app1, "curl -s -m 5 localhost:8080/api/v1/version").stdout.decode().strip()


def ledger() -> dict[str, str]:
    """The rows releases.py prints for app1: release folder without its commit -> its line
    (the newest deployed, when several share a name)."""
    result = pyinfra(script="releases.py")
    assert result.returncode == 0, output(result)[-3000:]
    text = output(result).split("--> Releases on app1", 1)[1]
    rows = [line.strip() for line in text.splitlines()[2:] if line.startswith("    ")]
    found: dict[str, str] = {}
    for row in rows:  # newest deploy first: a branch pushed again is the newest of its name
        found.setdefault(row.split()[0].rsplit("-", 1)[0], row)
    return found


@pytest.fixture(scope="module")
def app1(lab):
    assert pyinfra(script="unlock.py").returncode == 0  # whatever an earlier module left
    for ref in ("v1.9.0", "v2.0.0-perf"):
        done = pyinfra(*QUICK, *KEEP, "--data", f"app_version={ref}")
        assert done.returncode == 0, output(done)[-3000:]
    return topology("staging")[0]


def current_folder(app1) -> str:
    """The release folder `current` names."""
    link = core.ssh(app1, "readlink /app/monitoring-dashboard-api/current").stdout.decode()
    return link.strip().rsplit("/", 1)[-1]


def current(app1) -> str:
    """The release folder `current` names, without its commit."""
    return current_folder(app1).rsplit("-", 1)[0]


def test_a_rolled_back_release_is_bad_passed_over_by_rollbacks_and_warned_of(app1):
    readme = "# v2.0.0-perf with another commit\n"
    with pushed_release("ledger-next", "v2.0.0-perf", {"README.md": readme}) as branch:
        over = pyinfra(*QUICK, *KEEP, "--data", f"app_version={branch}")
        assert over.returncode == 0, output(over)[-3000:]
        assert current(app1) == branch
        folder = current_folder(app1)  # by its full name: a branch pushed again is another

        back = pyinfra(script="rollback.py")
        assert back.returncode == 0, output(back)[-3000:]
        assert current(app1) == "v2.0.0-perf"
        rows = ledger()
        assert rows[branch].endswith("rolled back (bad)"), rows
        assert rows["v2.0.0-perf"].split()[1] == "*", rows
        assert rows["v2.0.0-perf"].endswith("served") and rows["v1.9.0"].endswith("served")

        # named, a bad release is still where a rollback goes (with a warning); the one it
        # leaves is now rolled back too
        named = pyinfra("--data", f"rollback_to={folder}", script="rollback.py")
        assert named.returncode == 0, output(named)[-3000:]
        assert f"WARNING: rollback_to names {folder}, marked bad" in output(named)
        assert current(app1) == branch
        assert ledger()["v2.0.0-perf"].endswith("rolled back (bad)")

        # the last deploy replaced v2.0.0-perf, now bad: back past it, to v1.9.0
        again = pyinfra(script="rollback.py")
        assert again.returncode == 0, output(again)[-3000:]
        assert "not going back to v2.0.0-perf-" in output(again)
        assert current(app1) == "v1.9.0" and served(app1) == '{"version":"1.9.0"}'

    bad = pyinfra(*QUICK, *KEEP, "--data", "app_version=v2.0.0-perf")
    assert bad.returncode == 0, output(bad)[-3000:]
    assert "WARNING: v2.0.0-perf-" in output(bad) and "is marked bad on this host" in output(bad)
    assert served(app1) == '{"version":"2.0.0-perf"}'
    assert ledger()["v2.0.0-perf"].endswith("served")  # deployed again: the team chose it


def test_dora_figures_match_a_count_of_the_hosts_records(app1):
    """releases.py's DORA lines against the staging host's own records, counted here: each run
    that changed the release is a change, each that succeeded a deployment."""
    result = pyinfra(script="releases.py")
    assert result.returncode == 0, output(result)[-3000:]
    text = output(result).split("--> DORA of lab over the last 30 days", 1)[1]
    lines = core.ssh(app1, "cat /var/lib/monitoring-dashboard-deploy/deployments.jsonl")
    records = [json.loads(line) for line in lines.stdout.decode().splitlines()]
    changes = {r["run"]: r for r in records if "deployed_by" in r and r.get("release_changed")}
    deployments = [r for r in changes.values() if r["status"] == "success"]
    assert changes and deployments
    assert f"/day ({len(deployments)} in 30 days)" in text
    assert f" of {len(changes)})" in text
