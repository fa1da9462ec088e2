"""Baseline for bench/run.py: pyinfra's own floor on the same host, the same number of
idempotent operations as the deploy's no-change run, nothing to change."""

from pyinfra.operations import files

for i in range(15):
    files.directory(
        name=f"Ensure /tmp/mdd-bench-floor/{i} exists", path=f"/tmp/mdd-bench-floor/{i}"
    )
