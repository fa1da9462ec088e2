"""The team's production: `pyinfra inventories/production.py deploy.py`.

Host names come from PRODUCTION_APP_HOSTS (comma separated); there is no default, so a
production run always names its hosts on purpose. With `backup_method: pgbackrest`,
PRODUCTION_DB_HOST names the database server and PRODUCTION_BACKUP_HOST the repository host
(backup_repo_host), both reached over SSH and given no deploy.
"""

import os
import sys

from tasks.inventory import checked_vars

_names = [n.strip() for n in os.environ.get("PRODUCTION_APP_HOSTS", "").split(",") if n.strip()]
if not _names:
    raise SystemExit(
        "PRODUCTION_APP_HOSTS is not set: name the production app hosts, "
        "comma separated (e.g. PRODUCTION_APP_HOSTS=app1.prod,app2.prod)"
    )
_data = checked_vars("production", argv=sys.argv)
app_servers = [(name, _data) for name in _names]
db_servers = [(n, _data) for n in [os.environ.get("PRODUCTION_DB_HOST", "")] if n]
backup_servers = [(n, _data) for n in [os.environ.get("PRODUCTION_BACKUP_HOST", "")] if n]
