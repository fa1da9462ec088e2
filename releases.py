"""The releases on each app host and what each is known for:
`pyinfra inventories/<env>.py releases.py` (tasks/releases.py; read-only, no lock)."""

from pyinfra import host

from tasks import releases
from tasks.hosts import APP_GROUP
from tasks.settings import settings

if APP_GROUP in host.groups:
    releases.show(settings())
