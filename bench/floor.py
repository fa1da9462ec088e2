"""Baseline for bench/run.py: pyinfra's own floor on the same hosts, the same number of
idempotent operations as the deploy's no-change run on each app host, nothing to change. The
inventory's other hosts (the database and the backup repository) are connected to and given
nothing, as the deploy does."""

from pyinfra import host
from pyinfra.operations import files

if "app_servers" in host.groups:
    for i in range(15):
        files.directory(
            name=f"Ensure /tmp/mdd-bench-floor/{i} exists", path=f"/tmp/mdd-bench-floor/{i}"
        )
