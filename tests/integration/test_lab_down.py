"""`lab reset` brings an environment back as `up` left it, `lab down` leaves nothing behind,
and `up` after `down` works. Runs last: it undoes what the suite deployed, takes the lab down
and brings staging back up for anything that runs after the suite."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lab import core
from lab.topology import BRIDGE, ENVS


def _leftovers() -> list[str]:
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [f"netns {line.split()[0]}" for line in netns.splitlines() if "mdd-" in line]
    links = [p.name for p in Path("/sys/class/net").iterdir()]
    found += [f"link {n}" for n in links if n == BRIDGE or n.startswith("mdd")]
    mounts = Path("/proc/mounts").read_text()
    found += [f"mount {line.split()[1]}" for line in mounts.splitlines() if "mdd-lab" in line]
    procs = subprocess.run(
        ["pgrep", "-af", "systemd-nspawn"], capture_output=True, text=True
    ).stdout
    found += [f"process {line}" for line in procs.splitlines() if "mdd-" in line]
    found += [f"cgroup {p}" for p in Path("/sys/fs/cgroup").glob("*/mdd-lab")]
    for env in ENVS:
        found += [
            f"dir {core.host_dir(h)}" for h in core.every_host(env) if core.host_dir(h).exists()
        ]
    return found


def _on(host, command: str) -> str:
    return core.ssh(host, command).stdout.decode().strip()


def _staging_as_a_user_and_a_dba_see_it() -> dict:
    app1, db1, _repo1 = core.hosts_of("staging")
    psql = f"cd / && runuser -u postgres -- psql -tA -d {core.DB_NAME} -c"
    return {
        "metrics": _on(
            db1, f"{psql} 'SELECT count(*), md5(array_agg(m ORDER BY id)::text) FROM metrics m'"
        ),
        "tables": _on(
            db1,
            f"{psql} \"SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class "
            "WHERE relnamespace = 'public'::regnamespace\"",
        ),
        "role settings": _on(
            db1,
            f'{psql} "SELECT count(*) FROM pg_db_role_setting s JOIN pg_roles r '
            f"ON r.oid = s.setrole WHERE rolname = '{core.DB_USER}'\"",
        ),
        "app1": _on(
            app1, "ls -A /app /etc/systemd/system; docker ps -aq | wc -l; docker images -q | wc -l"
        ),
    }


@pytest.mark.last
def test_reset_takes_away_what_a_deploy_and_a_dba_changed(lab):
    core.reset("staging", echo=lambda _m: None)
    fresh = _staging_as_a_user_and_a_dba_see_it()
    assert fresh["metrics"].startswith(f"{core.seed_rows()}|") and fresh["role settings"] == "0"
    app1, db1, _repo1 = core.hosts_of("staging")
    psql = f"cd / && runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -d {core.DB_NAME}"
    core.ssh(
        db1,
        psql,
        input=(
            "DELETE FROM metrics WHERE id % 3 = 0; UPDATE metrics SET value = 0 WHERE id < 100;"
            "CREATE TABLE leftover (id int); CREATE INDEX leftover_idx ON metrics (host);"
            f"ALTER ROLE {core.DB_USER} SET work_mem = '64MB';"
        ).encode(),
    )
    core.ssh(
        app1,
        "mkdir -p /app/leftover && docker run -d --name leftover mdd-lab/redis:7 >/dev/null",
    )
    assert _staging_as_a_user_and_a_dba_see_it() != fresh
    core.reset("staging", echo=lambda _m: None)
    assert _staging_as_a_user_and_a_dba_see_it() == fresh


@pytest.mark.last
def test_lab_down_leaves_nothing_behind_and_up_works_again(lab):
    core.down(echo=lambda _m: None)
    assert _leftovers() == []
    hosts = core.up("staging", echo=lambda _m: None)
    assert all(core.is_running(h) for h in hosts)
