"""The `.env` file (checklist step 4): every variable of the step, mode 0600, owned by the
service user, its content never printed."""

from __future__ import annotations

from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files

from tasks import operations
from tasks.commands import dotenv, shell
from tasks.config import Settings
from tasks.operations import deploy
from tasks.settings import secret


@deploy("Environment file")
def env_file(s: Settings) -> OperationMeta:
    p = shell.paths(s)
    files.directory(name=f"Ensure {s.app_dir} exists", path=s.app_dir, mode="755")
    content = dotenv.env_file_content(s, secret(s, "DB_PASSWORD"), secret(s, "REDIS_PASSWORD"))
    return operations.secret_file(
        name=f"Ensure {p['env_file']} is current (0600, content not shown)",
        path=p["env_file"],
        content=content,
        user=s.app_user,
        group=s.app_user,
        keep_in=p["replaced"],
    )
