"""Release a deploy lock left by a killed run: `pyinfra -y inventories/<env>.py unlock.py`."""

from pyinfra import host

from tasks import lock, preflight
from tasks.hosts import migration_host_name
from tasks.settings import settings

s = settings()
if host.name == migration_host_name(s):
    preflight.secret_files(s)
    lock.unlock(s)
