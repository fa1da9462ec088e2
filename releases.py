"""The releases on each app host and what each is known for, then DORA's four keys of the
environment: `pyinfra inventories/<env>.py releases.py` (tasks/releases.py; read-only, no
lock; `--data dora_window=DAYS`, 30 unless told)."""

import sys

from pyinfra import host, state

from tasks import releases
from tasks.context import RunContext
from tasks.hosts import APP_GROUP
from tasks.settings import settings

context = RunContext.of(state, "releases", sys.argv[1:])
if APP_GROUP in host.groups:
    releases.show(context, settings())
