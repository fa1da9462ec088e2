"""The team's staging: `pyinfra inventories/staging.py deploy.py`.

Host names come from STAGING_APP_HOSTS (comma separated) and default to the checklist's
server. SSH settings follow the operator's own ~/.ssh/config and agent. With
`backup_method: pgbackrest`, STAGING_DB_HOST names the database server and
STAGING_BACKUP_HOST the repository host (backup_repo_host), both given no deploy.
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
db_servers = [(n, _data) for n in [os.environ.get("STAGING_DB_HOST", "")] if n]
backup_servers = [(n, _data) for n in [os.environ.get("STAGING_BACKUP_HOST", "")] if n]
