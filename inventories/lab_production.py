"""The lab's production-shaped environment: app1..appN (`python -m lab up production
--app-hosts N`, default 3), external Redis on cache1, and lb1, the HAProxy in front of them."""

import sys

from tasks.inventory import lab_group

_LAYERS = ("production", "lab", "lab_production")
app_servers = lab_group("production", "app_servers", _LAYERS, sys.argv)
lb_servers = lab_group("production", "lb_servers", _LAYERS, sys.argv)
db_servers = lab_group("production", "db_servers", _LAYERS, sys.argv)
backup_servers = lab_group("production", "backup_servers", _LAYERS, sys.argv)
