"""Building pyinfra inventories: group_vars layering and the lab's hosts.

Every inventory file in `inventories/` calls these, so that a bare
`pyinfra inventories/<env>.py deploy.py` carries its whole configuration.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from pyinfra_cli.util import parse_cli_arg

from tasks.config import check_or_exit

REPO_DIR = Path(__file__).resolve().parent.parent
GROUP_VARS_DIR = REPO_DIR / "group_vars"

HostSpec = tuple[str, dict[str, Any]]


def host_order(name: str) -> tuple[Any, ...]:
    """Sort key of host names in the order people count them: app2 before app10."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def yaml_problem(path: Path, exc: yaml.YAMLError) -> str:
    """What is wrong with the YAML file PATH, as `file:line:column: problem`."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    return f"{where}: {problem}" + (f" ({context})" if context else "")


def read_vars(name: str) -> dict[str, Any]:
    """One group_vars file (`group_vars/<name>.yml`); a missing file is an empty layer. A file
    that is not a YAML mapping stops the run, naming the file, the line and the problem."""
    path = GROUP_VARS_DIR / f"{name}.yml"
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SystemExit(f"{yaml_problem(path, exc)}\nNothing was changed.") from None
    if not isinstance(data, dict):
        raise SystemExit(
            f"{path}: expected a mapping of variables (name: value), got "
            f"{type(data).__name__}\nNothing was changed."
        )
    return data


def cli_data(argv: list[str]) -> dict[str, Any]:
    """The `--data KEY=VALUE` of the pyinfra command line ARGV, read as pyinfra reads them."""
    found: dict[str, Any] = {}
    for i, arg in enumerate(argv):
        if arg == "--data" and i + 1 < len(argv):
            pair = argv[i + 1]
        elif arg.startswith("--data="):
            pair = arg.removeprefix("--data=")
        else:
            continue
        key, sep, value = pair.partition("=")
        if sep:
            found[key] = parse_cli_arg(value)
    return found


def check_before_connecting(data: dict[str, Any], argv: list[str], where: str) -> None:
    """DATA with the command line's --data applied, validated: every problem is listed before
    pyinfra connects to any host (deploy.py checks each host's own data again)."""
    check_or_exit({**data, **cli_data(argv)}, where)


def checked_vars(*layers: str, argv: list[str]) -> dict[str, Any]:
    """layered_vars(), validated with the command line ARGV's --data: every problem is listed
    before pyinfra connects anywhere."""
    data = layered_vars(*layers)
    check_before_connecting(data, argv, f"group_vars ({', '.join(('all', *layers))})")
    return data


def layered_vars(*layers: str) -> dict[str, Any]:
    """`all` first, then each named layer in order; a later layer wins, key by key."""
    merged: dict[str, Any] = {}
    for name in ("all", *layers):
        merged.update(read_vars(name))
    return merged


@functools.cache
def lab_status() -> dict[str, Any]:
    """The running lab's `lab status --json` (read once per run)."""
    out = subprocess.run(
        [sys.executable, "-m", "lab", "status", "--json"],
        cwd=REPO_DIR,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return json.loads(out)


def lab_group(env: str, group: str, layers: tuple[str, ...], argv: list[str]) -> list[HostSpec]:
    """The lab's hosts of one group as pyinfra (name, data) pairs, with group_vars applied
    and checked with the command line ARGV's --data.

    The lab's own secrets are put in the environment, where the deploy reads every secret
    (a password meant for the team's servers never reaches a lab host).
    """
    status = lab_status()
    hosts = [h for h in status["hosts"] if h["env"] == env and group in h["groups"]]
    not_running = [h["name"] for h in hosts if not h["running"]]
    if not_running:
        raise SystemExit(
            f"lab {env} is not running ({', '.join(not_running)} down): "
            f"run `make lab-up` (or `python -m lab up {env}`) first"
        )
    db = status["database"][env]
    os.environ["DB_PASSWORD"] = Path(db["password_file"]).read_text().strip()
    lab_data: dict[str, Any] = {
        "app_repo_url": status["app_repo"],
        "db_host": db["host"],
        "db_port": db["port"],
        "db_name": db["name"],
        "db_user": db["user"],
    }
    redis = status["redis"].get(env)
    # the lab's Redis containers have no password, unless one is asked for the lab itself
    os.environ["REDIS_PASSWORD"] = os.environ.get("MDD_LAB_REDIS_PASSWORD", "")
    if redis:
        os.environ["REDIS_PASSWORD"] = Path(redis["password_file"]).read_text().strip()
        lab_data.update({"redis_host": redis["host"], "redis_port": redis["port"]})
    base = {**layered_vars(*layers), **lab_data}
    check_before_connecting(base, argv, f"lab {env} inventory")
    return [
        (
            h["name"],
            {
                **base,
                "ssh_hostname": h["address"],
                "ssh_user": h["ssh_user"],
                "ssh_key": h["ssh_key"],
                "ssh_known_hosts_file": h["ssh_known_hosts"],
                "ssh_strict_host_key_checking": "yes",
            },
        )
        for h in hosts
    ]
