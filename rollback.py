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

from dataclasses import replace

from pyinfra import host

from tasks import env_file, lock, notify, preflight, rollback
from tasks.runtime import APP_GROUP, DeployError, settings

s = settings()
if APP_GROUP in host.groups:  # a load balancer host (lb_servers) has nothing to roll back
    try:
        target = rollback.plan(s)
    except DeployError as exc:
        raise SystemExit(f"{exc}\nNothing was changed.") from None

    preflight.secret_files(s)
    lock.acquire(s, target.is_migration_host)
    notify.started(s, "rollback", target.name)
    env_op = (
        env_file.env_file(replace(s, redis_enabled=False)) if s.rollback_disable_redis else None
    )
    rollback.rollback(s, target, env_op)
    notify.finished(s, "rollback", target.name)
