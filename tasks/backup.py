"""Backup (checklist step 1): only when something will change, a restorable pg_dump verified
with pg_restore --list, mode 0600, checksum and size recorded, the last N kept; also the
service's recent log and a snapshot of its health answer."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from pyinfra.api import deploy
from pyinfra.operations import python

from tasks import commands
from tasks.migrate import pending_migrations
from tasks.rollout import phase_check
from tasks.runtime import Plan, health_url, run_for, say, sh

q = commands.q


@phase_check("backup")
def _backup(host, s: dict[str, Any], plan: Plan) -> None:
    run = run_for(host)
    pending = pending_migrations(host, s, plan)
    if not pending and not plan.release_changes:
        say(host, "no backup: no migration pending and the release does not change")
        run.facts["backup"] = {"taken": False, "reason": "nothing will change"}
        return
    stamp = datetime.now(UTC).strftime("%Y%m%d_%H%M%S")
    base = f"{s['backup_dir']}/backup_{stamp}"
    dump = f"{base}.dump"
    sh(host, f"install -d -m 0700 {q(s['backup_dir'])}")
    started = time.monotonic()
    say(host, f"pg_dump of {s['db_name']} to {dump}")
    sh(host, commands.pg_dump(s, dump), timeout=s["backup_timeout"], what="pg_dump")
    seconds = round(time.monotonic() - started, 2)
    _, fingerprint, _ = sh(
        host,
        commands.psql(s, commands.table_fingerprint_sql()),
        timeout=120,
        what="fingerprinting metrics",
    )
    rows, max_id, table_md5 = fingerprint.strip().split("|")
    _, entries, _ = sh(host, commands.pg_restore_list(dump), what="pg_restore --list")
    _, out, _ = sh(host, f"sha256sum {q(dump)} && stat -c %s {q(dump)}")
    checksum, size = out.split()[0], int(out.split()[-1])
    sh(
        host,
        f"umask 077 && (tail -n 200 {q(s['app_log_file'])} 2>/dev/null || true) "
        f"> {q(base + '.log')} && (curl -s -m 5 {q(health_url(s))} || echo "
        f"'no answer') > {q(base + '.health.json')}",
    )
    sh(host, commands.prune_backups(s["backup_dir"], s["backup_keep"]))
    run.facts["backup"] = {
        "taken": True,
        "verified": True,
        "path": dump,
        "sha256": checksum,
        "bytes": size,
        "seconds": seconds,
        "entries": int(entries.strip() or 0),
        "metrics_rows": int(rows),
        "metrics_max_id": int(max_id),
        "metrics_md5": table_md5,
        "reason": "migrations pending" if pending else "release changes",
    }
    run.changed.append(f"backup: {dump}")
    run.metric(
        "backup verified (pg_restore --list)", "readable", f"{size} bytes in {seconds}s", True
    )
    say(host, f"backup verified: {size} bytes, {seconds}s, sha256 {checksum[:12]}")


@deploy("Backup")
def backup(s: dict[str, Any], plan: Plan) -> None:
    if plan.is_migration_host:
        python.call(
            name="Ensure a verified backup exists before anything changes",
            function=_backup,
            s=s,
            plan=plan,
        )
