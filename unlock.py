"""Release a deploy lock left by a killed run: `pyinfra -y inventories/<env>.py unlock.py`."""

from pyinfra import host

from tasks import lock, preflight, release
from tasks.runtime import settings

s = settings()
if host.name == release.migration_host_name(s):
    preflight.secret_files(s)
    lock.unlock(s)
