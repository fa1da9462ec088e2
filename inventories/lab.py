"""The lab's staging-shaped environment: `pyinfra inventories/lab.py deploy.py`. db1 and
repo1 get no deploy: pgBackRest (`backup_method: pgbackrest`) reaches them over SSH."""

import sys

from tasks.inventory import lab_group

_LAYERS = ("staging", "lab")
app_servers = lab_group("staging", "app_servers", _LAYERS, sys.argv)
db_servers = lab_group("staging", "db_servers", _LAYERS, sys.argv)
backup_servers = lab_group("staging", "backup_servers", _LAYERS, sys.argv)
