"""The releases on each app host and what each is known for:
`pyinfra inventories/<env>.py releases.py` (tasks/releases.py; read-only, no lock)."""

from pyinfra import host

from tasks import releases
from tasks.runtime import APP_GROUP, settings

if APP_GROUP in host.groups:
    releases.show(settings())
