"""The lab's staging-shaped environment: `pyinfra inventories/lab.py deploy.py`."""

import sys

from tasks.inventory import lab_group

app_servers = lab_group("staging", "app_servers", ("staging", "lab"), sys.argv)
