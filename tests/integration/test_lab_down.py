"""`lab down` leaves nothing behind, and `up` after `down` works. Runs last: it takes the lab
down and brings staging back up for anything that runs after the suite."""

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


@pytest.mark.last
def test_lab_down_leaves_nothing_behind_and_up_works_again(lab):
    core.down(echo=lambda _m: None)
    assert _leftovers() == []
    hosts = core.up("staging", echo=lambda _m: None)
    assert all(core.is_running(h) for h in hosts)
