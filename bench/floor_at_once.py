"""Baseline for bench/run.py: bench/floor.py on the deploy's own transport (each SSH packet
sent at once, TCP_NODELAY: tasks/transport.send_at_once), so that the ratio against it counts
the deploy's work, not the connection setting it gains over pyinfra's default."""

from pyinfra import host, local

from tasks.transport import send_at_once

send_at_once(host)
local.include("bench/floor.py")
