"""The checklist's rollback plan: `pyinfra -y inventories/<env>.py rollback.py`.

--limit HOST                        one host only
--data rollback_to=REF              go back to that release (still on the hosts), not to
                                    the one the last deploy replaced
--data rollback_mode=full           also revert every applied migration the release
                                    does not have (contract ones before the switch,
                                    expand ones after it), remove the Redis container
                                    the deploy created
--data rollback_restore_backup=yes  (full) restore the pre-deploy backup
--data rollback_disable_redis=true  set REDIS_ENABLED=false in .env
"""

import sys
from dataclasses import replace

from pyinfra import host, state

from tasks import env_file, lock, notify, preflight, rollback
from tasks.config import Settings
from tasks.context import RunContext
from tasks.hosts import APP_GROUP
from tasks.method import method_for
from tasks.outcome import ended
from tasks.remote import DeployError
from tasks.settings import settings
from tasks.strategy import strategy_for


def roll_back(ctx: RunContext, s: Settings) -> None:
    """An app host: back to the release its manifests name, in the checklist's order."""
    method = method_for(s)
    try:
        target = rollback.plan(ctx, s, method)
    except DeployError as exc:
        raise SystemExit(f"{exc}\nNothing was changed.") from None

    preflight.secret_files(s)
    lock.acquire(ctx, s, target.is_migration_host)
    notify.started(ctx, s, target.name)
    env_op = None
    if s.rollback_disable_redis:
        env_op = env_file.env_file(replace(s, redis_enabled=False))
    strategy = strategy_for(method) if method.on_hosts else None
    rollback.rollback(ctx, s, target, strategy, env_op)
    ended(ctx, s, target.name)


context = RunContext.of(state, "rollback", sys.argv[1:])
host_settings = settings()
if APP_GROUP in host.groups:  # a load balancer host (lb_servers) has nothing to roll back
    roll_back(context, host_settings)
