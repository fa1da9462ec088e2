"""Plan: `pyinfra -y inventories/<env>.py plan.py`.

Reads, changing nothing, what `deploy.py` would do with the same variables (the release and
its commit, what each app host serves now, the batches, each pending migration with its
checksum and lint verdict, the backup, the artifact), writes plans/<env>-<id>.json and its
summary (.md), and prints the id. `deploy.py --data deploy_plan=<id>` runs only that plan
(tasks/plans.py). It takes no lock.
"""

import sys

from pyinfra import host, state

from tasks import plans, release
from tasks.context import RunContext
from tasks.hosts import APP_GROUP
from tasks.settings import settings

context = RunContext.of(state, "plan", sys.argv[1:])
s = settings()
if APP_GROUP in host.groups:
    plans.make(context, s, release.make_plan(context, s))
