"""Rollback (the checklist's rollback plan), driven by the manifest each deploy leaves on each
app host, so it works on one host, from any machine, days later.

quick: switch `current` back to the release the last successful deploy replaced, restart,
       wait for a healthy answer, check the version served.
full:  first revert that deploy's migrations with their down scripts (recorded in the
       history), restore its backup only when asked (`rollback_restore_backup=yes`, after
       saying how many rows would be lost), remove the Redis container it created, then as
       quick.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import python, systemd

from tasks import commands, lock, operations, slots
from tasks.runtime import (
    DeployError,
    append_record,
    deployed_by,
    migration_host_name,
    now_iso,
    say,
    sh,
    wait_healthy,
)

q = commands.q


@dataclass
class Target:
    """What a rollback of one host goes back to, read from its manifests before any change."""

    manifest_path: str
    manifest: dict[str, Any]
    current: str | None
    is_migration_host: bool

    @property
    def release_dir(self) -> str:
        return self.manifest["previous_release"]

    @property
    def already_there(self) -> bool:
        return self.current == self.release_dir


def plan(s: dict[str, Any]) -> Target:
    """The newest successful deploy's manifest on this host; a clear error when there is
    nothing to go back to (no change is made then)."""
    p = commands.paths(s)
    ok, out = host.run_shell_command(
        command=f"for f in $(ls -1 {q(p['manifests'])}/2*.json 2>/dev/null | sort -r); do "
        'printf "%s\\t" "$f"; tr -d "\\n" < "$f"; echo; done',
        _timeout=30,
    )
    manifests = []
    for line in out.stdout.splitlines():
        path, _, text = line.partition("\t")
        try:
            manifests.append((path, json.loads(text)))
        except ValueError:
            continue
    done = [(path, m) for path, m in manifests if m.get("outcome") == "success"]
    if not done:
        raise DeployError(
            f"[{host.name}] nothing to roll back to: no successful deploy is "
            f"recorded in {p['manifests']}"
        )
    path, manifest = done[0]
    if not manifest.get("previous_release"):
        raise DeployError(
            f"[{host.name}] nothing to roll back to: the last deploy "
            f"({manifest['version']}) was the first on this host"
        )
    ok, out = host.run_shell_command(
        command=f"test -x {q(manifest['previous_release'] + '/' + commands.SERVICE_BINARY)} "
        f"&& echo present; readlink {q(p['current'])} || true"
    )
    lines = out.stdout.splitlines()
    if not lines or lines[0] != "present":
        raise DeployError(
            f"[{host.name}] nothing to roll back to: release "
            f"{manifest['previous_release']} is no longer on the host (pruned)"
        )
    return Target(
        path, manifest, lines[1] if len(lines) > 1 else None, host.name == migration_host_name(s)
    )


def _fail(host, s: dict[str, Any], target: Target, step: str, error: Exception) -> bool:
    if target.is_migration_host:
        lock.release(host, s)
    say(
        host,
        f"ROLLBACK FAILED in {step}: {error}\n    state now: `current` is "
        f"{target.current}; nothing after this step was done. Fix the cause and run the "
        "rollback again: every step is safe to repeat.",
    )
    return False


def _revert_migrations(host, s: dict[str, Any], target: Target) -> None:
    versions = target.manifest.get("migrations_applied") or []
    if not versions:
        say(host, "no migration to revert: the deploy applied none")
        return
    values = ", ".join(commands.sql_literal(v) for v in versions)
    _, out, _ = sh(
        host,
        commands.psql(
            s,
            f"SELECT version, name FROM {commands.HISTORY_TABLE} WHERE version IN ({values}) "
            "AND reverted_at IS NULL ORDER BY version DESC",
        ),
        what="reading the history",
    )
    for line in out.splitlines():
        version, name = line.split("|")
        down = f"{target.manifest['release']}/{s['migrate_dir']}/{version}_{name}.down.sql"
        say(host, f"reverting migration {version}_{name} with {down}")
        sh(host, f"test -f {q(down)}", what=f"finding {down}")
        sh(host, commands.psql(s, None, down), timeout=600, what=f"reverting {version}")
        sh(
            host,
            commands.psql(
                s,
                f"UPDATE {commands.HISTORY_TABLE} SET reverted_at = now() WHERE version = "
                f"{commands.sql_literal(version)}",
            ),
            what="recording the revert",
        )
    if not out.strip():
        say(host, f"migrations {', '.join(versions)} are already reverted")


def _restore_backup(host, s: dict[str, Any], target: Target) -> None:
    backup = target.manifest.get("backup")
    if not backup:
        raise DeployError("the deploy took no backup, there is nothing to restore")
    _, now, _ = sh(host, commands.psql(s, commands.table_fingerprint_sql()), timeout=120)
    rows, _, md5 = now.strip().split("|")
    if md5 == backup["metrics_md5"] and int(rows) == backup["metrics_rows"]:
        say(host, "metrics already matches the backup: nothing to restore")
        return
    _, newer, _ = sh(
        host,
        commands.psql(
            s, f"SELECT count(*) FROM metrics WHERE id > {int(backup['metrics_max_id'])}"
        ),
    )
    say(
        host,
        f"restoring {backup['path']}: {int(newer)} row(s) written since the backup will "
        f"be lost (metrics has {rows} rows, the backup {backup['metrics_rows']})",
    )
    _, out, _ = sh(host, f"sha256sum {q(backup['path'])}", what="finding the backup")
    if out.split()[0] != backup["sha256"]:
        raise DeployError(f"{backup['path']} does not match its recorded checksum")
    sh(host, commands.pg_restore(s, backup["path"]), timeout=s["backup_timeout"], what="pg_restore")
    _, after, _ = sh(host, commands.psql(s, commands.table_fingerprint_sql()), timeout=120)
    rows, _, md5 = after.strip().split("|")
    if md5 != backup["metrics_md5"] or int(rows) != backup["metrics_rows"]:
        raise DeployError(
            f"after the restore metrics has {rows} rows (md5 {md5}), the backup "
            f"had {backup['metrics_rows']} (md5 {backup['metrics_md5']})"
        )
    say(host, f"restored and verified: {rows} rows, md5 {md5}")


def _database(state, host, s: dict[str, Any], target: Target) -> bool:
    try:
        _revert_migrations(host, s, target)
        if s["rollback_restore_backup"] == "yes":
            _restore_backup(host, s, target)
    except DeployError as exc:
        return _fail(host, s, target, "database", exc)
    return True


def _remove_container(state, host, s: dict[str, Any], target: Target) -> bool:
    if not target.manifest.get("redis_container_created"):
        say(host, f"{s['redis_container']} was not created by that deploy: left as it is")
        return True
    sh(host, f"docker rm -f {q(s['redis_container'])} >/dev/null 2>&1 || true")
    say(host, f"container {s['redis_container']} removed")
    return True


def _verify_and_record(state, host, s: dict[str, Any], target: Target) -> bool:
    started = time.time()
    try:
        answer = wait_healthy(host, s)
        _, version, _ = sh(host, f"curl -s -m 5 http://127.0.0.1:{s['app_port']}/api/v1/version")
    except DeployError as exc:
        return _fail(host, s, target, "verify", exc)
    if target.already_there and not s["rollback_disable_redis"]:
        say(host, f"already rolled back: serving {version.strip()} from {target.release_dir}")
        if target.is_migration_host:
            lock.release(host, s)
        return True
    record = {
        "status": "rolled back",
        "host": host.name,
        "mode": s["rollback_mode"],
        "completed": now_iso(),
        "by": deployed_by(s),
        "undid": target.manifest_path,
        "from_release": target.manifest["release"],
        "to_release": target.release_dir,
        "serving": version.strip(),
        "health": answer,
        "redis_disabled": s["rollback_disable_redis"],
        "seconds": round(time.time() - started, 1),
    }
    append_record(host, s, record)
    if target.is_migration_host:
        lock.release(host, s)
    say(host, f"rolled back: serving {version.strip()} from {target.release_dir}")
    return True


def _switch_slots(state, host, s: dict[str, Any], target: Target, restart: bool) -> bool:
    try:
        done = slots.activate(host, s, target.release_dir, restart=restart)
    except DeployError as exc:
        return _fail(host, s, target, "switch", exc)
    if done:
        say(host, done)
    return True


@deploy("Rollback")
def rollback(s: dict[str, Any], target: Target, env_op: OperationMeta | None) -> None:
    if s["rollback_mode"] == "full":
        if target.is_migration_host:
            python.call(
                name="Revert the deploy's migrations (and restore its backup if asked)",
                function=_database,
                s=s,
                target=target,
            )
        python.call(
            name=f"Ensure {s['redis_container']} is gone if that deploy created it",
            function=_remove_container,
            s=s,
            target=target,
        )
    if s["release_strategy"] == "blue_green":
        python.call(
            name=f"Ensure {target.release_dir.rsplit('/', 1)[-1]} serves (blue/green, no failed "
            "request)",
            function=_switch_slots,
            s=s,
            target=target,
            restart=env_op is not None and env_op.will_change,
        )
    else:
        p = commands.paths(s)
        link = operations.current_release(
            name=f"Ensure current points at {target.release_dir.rsplit('/', 1)[-1]}",
            current=p["current"],
            release_dir=target.release_dir,
        )
        changed = link.will_change or (env_op is not None and env_op.will_change)
        systemd.service(
            name=f"Ensure {s['app_service']} is running"
            + (" (restart: release or .env changed)" if changed else ""),
            service=s["app_service"],
            running=True,
            restarted=changed,
        )
    python.call(
        name="Wait for a healthy answer and record the rollback",
        function=_verify_and_record,
        s=s,
        target=target,
    )
