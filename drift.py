"""Drift: `pyinfra -y inventories/<env>.py drift.py`.

Compares each app host with what its last deployment record says the run left there (files,
modes and owners, releases, units, the Redis container) and, from the migration host, the
live schema with the applied migrations replayed into a scratch database on the database
server (tasks/drift.py). Prints every difference, writes reports/<env>-<run>-drift.{json,xml,
html}, and exits non-zero when there is any. Read-only: it takes no lock and changes nothing.
"""

import sys

from pyinfra import host, state

from tasks import drift
from tasks.context import RunContext
from tasks.hosts import APP_GROUP, migration_host_name
from tasks.settings import settings

context = RunContext.of(state, "drift", sys.argv[1:])
s = settings()
if APP_GROUP in host.groups:
    drift.report_drift(context, s, host.name == migration_host_name(s))
