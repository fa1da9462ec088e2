"""Backup (checklist step 1): only when something will change, a restorable pg_dump verified
with pg_restore --list, mode 0600, checksum and size recorded, the last N kept; also the
service's recent log and a snapshot of its health answer. The dump is then copied off the
migration host (`backup_copy_to`: the deploying machine or another host), its checksum
checked after the copy, the last N kept there too."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from pyinfra import inventory
from pyinfra.operations import python

from tasks import archive, guard
from tasks.commands import postgres, shell
from tasks.config import Settings
from tasks.context import Backup, Plan, RunContext
from tasks.hosts import connected
from tasks.method import Method
from tasks.migrations import pending_migrations
from tasks.operations import deploy
from tasks.outcome import phase_check
from tasks.promotion import sha256_of
from tasks.remote import DeployError, health_url
from tasks.transport import say, sh

q = shell.q


def check_copy_target(s: Settings) -> None:
    """backup_copy_to names the deploying machine, nothing, or a host of the inventory."""
    where = s.backup_copy_to
    if where not in ("", "local") and inventory.get_host(where, None) is None:
        raise DeployError(
            f"backup_copy_to: {where!r} is not a host of this inventory (use local, a host "
            "name, or an empty value for no copy)"
        )


def copy_dir(s: Settings) -> str:
    if s.backup_copy_dir:
        return s.backup_copy_dir
    return f"backups/{s.deploy_env}" if s.backup_copy_to == "local" else s.backup_dir


def _keep_locally(fetched: Path, folder: Path, checksum: str, keep: int) -> str:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = folder / f"{fetched.name}.partial"
    shutil.move(fetched, partial)
    os.chmod(partial, 0o600)
    copied = sha256_of(partial)
    if copied != checksum:
        partial.unlink()
        raise DeployError(f"the copy of {fetched.name} has sha256 {copied}, not {checksum}")
    partial.rename(folder / fetched.name)
    by_age = sorted(folder.glob("backup_*.dump"), key=lambda p: p.stat().st_mtime)
    for old in by_age[:-keep]:
        old.unlink()
    return str(folder / fetched.name)


def _keep_on(target, fetched: Path, folder: str, checksum: str, keep: int) -> str:
    remote = f"{folder}/{fetched.name}"
    partial = f"{remote}.partial"
    q = shell.q
    sh(target, f"install -d -m 0700 {q(folder)} && umask 077 && : > {q(partial)}")
    if not target.put_file(str(fetched), partial):
        raise DeployError(f"could not copy {fetched.name} to {target.name}")
    ok, _, _ = sh(
        target,
        f"echo {q(checksum + '  ' + partial)} | sha256sum -c --quiet"
        f" && mv {q(partial)} {q(remote)}",
        check=False,
    )
    if not ok:
        sh(target, f"rm -f {q(partial)}")
        raise DeployError(f"the copy of {fetched.name} on {target.name} does not match {checksum}")
    sh(target, postgres.prune_backups(folder, keep))
    return f"{target.name}:{remote}"


def _copy_off_host(host, s: Settings, dump: str, checksum: str) -> str:
    """Copy DUMP to backup_copy_to, check its sha256 there, keep the last backup_keep; returns
    where the copy is. A copy that does not match is removed and fails the backup."""
    with tempfile.TemporaryDirectory(prefix="mdd-backup-") as tmp:
        fetched = Path(tmp) / dump.rsplit("/", 1)[1]
        if not host.get_file(dump, str(fetched)):
            raise DeployError(f"could not fetch {dump} from {host.name}")
        if s.backup_copy_to == "local":
            return _keep_locally(fetched, Path(copy_dir(s)), checksum, s.backup_keep)
        target = connected(inventory.get_host(s.backup_copy_to), "to keep a backup copy")
        return _keep_on(target, fetched, copy_dir(s), checksum, s.backup_keep)


def _verified(host, s: Settings, dump: str, seconds: float, reason: str) -> Backup:
    """The dump read back (pg_restore --list), its checksum and size, and the fingerprint of
    metrics it was taken with (row count, highest id, checksum of every row)."""
    _, fingerprint, _ = sh(
        host,
        postgres.psql(s, postgres.table_fingerprint_sql()),
        timeout=120,
        what="fingerprinting metrics",
    )
    rows, max_id, table_md5 = fingerprint.strip().split("|")
    _, entries, _ = sh(host, postgres.pg_restore_list(dump), what="pg_restore --list")
    _, out, _ = sh(host, f"sha256sum {q(dump)} && stat -c %s {q(dump)}")
    return Backup(
        taken=True,
        verified=True,
        method="pg_dump",
        path=dump,
        sha256=out.split()[0],
        bytes=int(out.split()[-1]),
        seconds=seconds,
        entries=int(entries.strip() or 0),
        metrics_rows=int(rows),
        metrics_max_id=int(max_id),
        metrics_md5=table_md5,
        reason=reason,
    )


def _restore_point(ctx: RunContext, host, s: Settings, reason: str) -> Backup:
    """backup_method pgbackrest: the deploy's backup is a restore point named after the run,
    its WAL archived in the repository; with the backup pre-flight chose, a full rollback
    restores the cluster to it. Nothing grows with the data: one WAL segment moves."""
    started = time.monotonic()
    name = archive.point_name(s.deploy_env, ctx.stamp)
    max_id, segment, waited = archive.restore_point(archive.servers(s).db, s, name)
    seconds = round(time.monotonic() - started, 2)
    backup_set = ctx.run(host).facts.get("preflight", {}).get("backup_set", "")
    ctx.run(host).changed.append(f"backup: restore point {name}")
    ctx.run(host).metric(
        "backup: restore point archived (pgbackrest)", "archived", f"{segment} in {waited}s", True
    )
    say(host, f"restore point {name} archived ({segment}, from backup {backup_set}, {seconds}s)")
    return Backup(
        taken=True,
        verified=True,
        reason=reason,
        method="pgbackrest",
        restore_point=name,
        backup_set=backup_set,
        wal_segment=segment,
        seconds=seconds,
        metrics_max_id=max_id,
    )


@phase_check("backup")
def _backup(ctx: RunContext, host, s: Settings, plan: Plan, method: Method) -> None:
    run = ctx.run(host)
    pending = run.pending if run.pending is not None else pending_migrations(host, s, plan)
    if not pending and not plan.release_changes:
        say(host, "no backup: no migration pending and the release does not change")
        run.backup = Backup(taken=False, reason="nothing will change")
        return
    reason = "migrations pending" if pending else "release changes"
    if s.backup_method == "pgbackrest":
        run.backup = _restore_point(ctx, host, s, reason)
        return
    stamp = datetime.now(UTC).strftime("%Y%m%d_%H%M%S")
    base = f"{s.backup_dir}/backup_{stamp}"
    dump = f"{base}.dump"
    sh(host, f"install -d -m 0700 {q(s.backup_dir)}")
    gate = guard.Gate(run, host, s, method)
    gate.wait("the backup (pg_dump)")
    started = time.monotonic()  # the dump's own time, not the guard's wait before it
    say(host, f"pg_dump of {s.db_name} to {dump}")
    sh(host, postgres.pg_dump(s, dump), timeout=s.backup_timeout, what="pg_dump")
    seconds = round(time.monotonic() - started, 2)
    gate.wait("the backup's checksum of metrics")
    taken = _verified(host, s, dump, seconds, reason)
    sh(
        host,
        f"umask 077 && (tail -n 200 {q(s.app_log_file)} 2>/dev/null || true) "
        f"> {q(base + '.log')} && (curl -s -m 5 {q(health_url(s))} || echo "
        f"'no answer') > {q(base + '.health.json')}",
    )
    sh(host, postgres.prune_backups(s.backup_dir, s.backup_keep))
    taken.copy = _copy_off_host(host, s, dump, taken.sha256 or "") if s.backup_copy_to else ""
    if taken.copy:
        say(host, f"backup copied to {taken.copy}, sha256 checked")
    run.backup = taken
    checksum, size = taken.sha256 or "", taken.bytes
    run.changed.append(f"backup: {dump}")
    run.metric(
        "backup verified (pg_restore --list)", "readable", f"{size} bytes in {seconds}s", True
    )
    say(host, f"backup verified: {size} bytes, {seconds}s, sha256 {checksum[:12]}")


@deploy("Backup")
def backup(ctx: RunContext, s: Settings, plan: Plan, method: Method) -> None:
    if plan.is_migration_host:
        python.call(
            name="Ensure a verified backup exists before anything changes",
            function=_backup,
            ctx=ctx,
            s=s,
            plan=plan,
            method=method,
        )
