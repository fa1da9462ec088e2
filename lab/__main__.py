"""`python -m lab up|reset|down|status` - the lab's command line."""

from __future__ import annotations

import argparse
import json
import sys

from lab import core
from lab.topology import DEFAULT_APP_HOSTS, ENVS, MAX_APP_HOSTS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab", description="Real Linux hosts on this machine.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="boot an environment's hosts (idempotent)")
    p_up.add_argument("env", nargs="?", default="staging", choices=ENVS)
    p_up.add_argument(
        "--app-hosts",
        type=int,
        metavar="N",
        help=f"production: number of app hosts, 1 to {MAX_APP_HOSTS} (default {DEFAULT_APP_HOSTS})",
    )
    p_reset = sub.add_parser(
        "reset", help="an environment as `up` first left it (quicker than down and up)"
    )
    p_reset.add_argument("env", nargs="?", default="staging", choices=ENVS)
    p_down = sub.add_parser("down", help="stop and remove hosts, leaving nothing behind")
    p_down.add_argument("env", nargs="?", choices=ENVS, help="default: every environment")
    p_status = sub.add_parser("status", help="what runs, and how to reach it")
    p_status.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    def echo(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        if args.command == "up":
            if args.app_hosts is not None and args.env != "production":
                parser.error("--app-hosts applies to production only")
            core.up(args.env, echo, app_hosts=args.app_hosts)
        elif args.command == "reset":
            core.reset(args.env, echo)
        elif args.command == "down":
            core.down(args.env, echo)
        else:
            data = core.status()
            if args.json:
                print(json.dumps(data, indent=2))
            else:
                for h in data["hosts"]:
                    state = "running" if h["running"] else "down"
                    print(
                        f"{h['env']:<11} {h['name']:<7} {h['address']:<13} {state:<8} "
                        f"{','.join(h['groups'])}"
                    )
                print(f"ssh key: {core.ssh_key()}  known_hosts: {core.known_hosts()}")
    except (core.LabError, ValueError) as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
