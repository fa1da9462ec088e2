"""The checklist's Common Issues as runbooks:
`pyinfra -y inventories/<env>.py runbook.py --data runbook=NAME` (tasks/runbooks.py).

redis-disable, redis-enable   REDIS_ENABLED in .env, zero-downtime restart
migration-memory              maintenance_work_mem for the migration role
terminate-idle                idle connections terminated (--data runbook_idle_minutes=5,
                              --data runbook_max_open_conns=N also lowers the pool)
reduce-memory                 Redis maxmemory lowered live, pool sizes halved
maintenance-on, -off          every path but the health path answers 503 (Retry-After)
reset                         every runbook override removed
backup-setup                  pgBackRest: WAL archiving to backup_repo_host, a first backup
restore-drill                 a backup restored into a scratch cluster and checked (drill_target)
restore-latest                a lost database data directory restored from the archive
rotate-db-password            a new database password, every host switched, the old one refused
rotate-redis-password         the same for Redis (ACL: two passwords during the switch)
"""

import sys
from dataclasses import replace

from pyinfra import host, state

from tasks import env_file, lock, preflight, rotation, runbooks
from tasks.context import RunContext
from tasks.hosts import APP_GROUP, migration_host_name
from tasks.method import method_for
from tasks.outcome import ended
from tasks.settings import settings_and_overrides
from tasks.strategy import strategy_for

context = RunContext.of(state, "runbook", sys.argv[1:])
base, overrides = settings_and_overrides()  # what earlier runbooks left on this host
s = replace(base, **overrides)
if APP_GROUP in host.groups:
    if not s.runbook:
        known = {**runbooks.RUNBOOKS, **rotation.RUNBOOKS}
        names = "\n".join(f"  {name:<21} {what}" for name, what in known.items())
        raise SystemExit(f"name a runbook with --data runbook=NAME:\n{names}\nNothing was changed.")
    preflight.secret_files(s)
    if s.runbook != "restore-latest":  # the lock lives in the database being restored
        lock.acquire(context, s, host.name == migration_host_name(s))
    if s.runbook in rotation.RUNBOOKS:
        rotation.rotate(context, s, strategy_for(method_for(s)))
    else:
        values = runbooks.new_overrides(s.runbook, base, overrides)
        after = replace(base, **values)  # the settings once the runbook is done
        env_op = None
        if values != overrides:
            runbooks.keep_overrides(s, values)
            env_op = env_file.env_file(after)
        runbooks.runbook(context, after, strategy_for(method_for(after)), env_op)
    ended(context, s, s.runbook)
