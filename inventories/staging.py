"""The team's staging: `pyinfra inventories/staging.py deploy.py`.

Host names come from STAGING_APP_HOSTS (comma separated) and default to the checklist's
server. SSH settings follow the operator's own ~/.ssh/config and agent.
"""

import os
import sys

from tasks.inventory import checked_vars

_data = checked_vars("staging", argv=sys.argv)
app_servers = [
    (name.strip(), _data)
    for name in os.environ.get("STAGING_APP_HOSTS", "staging.xyibank.ru").split(",")
    if name.strip()
]
