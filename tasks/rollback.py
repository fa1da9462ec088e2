"""Rollback (the checklist's rollback plan), driven by the manifest each deploy leaves on each
app host, so it works on one host, from any machine, days later.

quick: switch back to the release the last successful deploy replaced (or to the release
       named by `rollback_to`), wait for a healthy answer, check the version served; refused
       when a contract migration the target lacks was applied (it removed what the target
       may use).
full:  bring the schema back to what that release expects: every applied migration it does
       not contain is reverted, newest first, with the down script recorded when it was
       applied (whatever the history of deploys was): the contract migrations before the
       switch, the expand migrations after it; then restore the last deploy's backup only
       when asked (`rollback_restore_backup=yes`, after saying how many rows would be lost);
       remove the Redis container that deploy created. With `--limit`, the
       database is left alone (and the rollback refused) while a host outside the run still
       runs a release that needs a migration it would revert.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass, field
from typing import Any

from pyinfra import host
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import python

from tasks import helm, ledger, recovery
from tasks import releases as releases_on_host
from tasks.commands import (
    deploy_lock,
    docker,
    git,
    host_state,
    http,
    migration_sql,
    postgres,
    shell,
)
from tasks.commands import helm as helm_commands
from tasks.config import Settings, seconds
from tasks.context import RunContext
from tasks.hosts import connected, migration_host_name, outside_the_run
from tasks.method import Method
from tasks.migrations import (
    CONTRACT,
    EXPAND,
    applied_contracts,
    read_history,
    read_migrations,
    revert_migration,
)
from tasks.operations import deploy
from tasks.outcome import failed
from tasks.records import append_record, now_iso
from tasks.remote import DeployError, wait_healthy
from tasks.settings import deployed_by
from tasks.strategy import Strategy
from tasks.transport import remote, say, sh

q = shell.q


@dataclass
class Target:
    """What a rollback of one host goes back to, read from its manifests before any change."""

    manifest_path: str
    manifest: dict[str, Any]
    release_dir: str
    current: str | None
    is_migration_host: bool
    migrations: set[str]  # versions the target release contains
    reverted: list[str] = field(default_factory=list)

    @property
    def already_there(self) -> bool:
        return self.current == self.release_dir

    @property
    def name(self) -> str:
        return self.release_dir.rsplit("/", 1)[-1]


def named_release(releases: list[str], wanted: str) -> str:
    """The release folder `rollback_to` names: its exact name, or the one release built from
    that ref (folders are `<ref>-<commit12>`); a clear error otherwise."""
    if wanted in releases:
        return wanted
    safe = git.release_id(wanted, "x" * 12)[: -len("-" + "x" * 12)]
    found = [r for r in releases if r.rsplit("-", 1)[0] == safe]
    if len(found) == 1:
        return found[0]
    if not found:
        raise DeployError(
            f"rollback_to={wanted}: no such release on the host (releases here: "
            f"{', '.join(sorted(releases)) or 'none'})"
        )
    raise DeployError(
        f"rollback_to={wanted}: several releases match ({', '.join(sorted(found))}): name one"
    )


def _manifests(s: Settings) -> list[tuple[str, dict[str, Any]]]:
    """(path, manifest) of every deploy recorded on this host, newest first."""
    p = shell.paths(s)
    _, out = host.run_shell_command(command=host_state.manifests(p["manifests"]), _timeout=30)
    manifests = []
    for line in out.stdout.splitlines():
        path, _, text = line.partition("\t")
        try:
            manifests.append((path, json.loads(text)))
        except ValueError:
            continue
    return manifests


def _release_to_go_back_to(
    s: Settings,
    manifests: list[tuple[str, dict[str, Any]]],
    path: str,
    releases: list[str],
    current: str | None,
    bad: dict[str, Any],
) -> str:
    """The release folder a rollback goes back to: the one rollback_to names, or what the
    newest successful deploy (its manifest at PATH) replaced, passing over the releases marked
    BAD; DeployError when there is none."""
    p, manifest = shell.paths(s), dict(manifests)[path]
    if s.rollback_to:
        release_dir = f"{p['releases']}/{named_release(releases, s.rollback_to)}"
        if s.rollback_restore_backup == "yes" and release_dir != manifest["previous_release"]:
            raise DeployError(
                f"[{host.name}] rollback_restore_backup=yes restores the backup taken before "
                f"the last deploy, which replaced {manifest['previous_release']}, not "
                f"{release_dir}: restore it by hand or roll back to that release"
            )
        name = release_dir.rsplit("/", 1)[-1]
        if name in bad:
            say(host, f"WARNING: rollback_to names {name}, marked bad: {bad[name]}; as asked")
        return release_dir
    if not manifest.get("previous_release"):
        raise DeployError(
            f"[{host.name}] nothing to roll back to: the last deploy "
            f"({manifest['version']}) was the first on this host"
        )
    # what the newest successful deploy replaced, then what each deploy before it did
    since = [found for found, _ in manifests].index(path)
    candidates = [m.get("previous_release") for _, m in manifests[since:]]
    implicit, skipped = ledger.implicit_target(candidates, bad, current)
    for why in skipped:
        say(host, f"not going back to {why} (bad; rollback_to can still name it)")
    if implicit is None:
        raise DeployError(
            f"[{host.name}] nothing to roll back to: every earlier release is marked bad "
            f"({'; '.join(skipped)}); name one with --data rollback_to=RELEASE"
        )
    return implicit


def _refuse_what_the_schema_forbids(ctx: RunContext, s: Settings, target: Target) -> None:
    """A rollback never migrates forward, a full one reverts nothing another host needs, a
    quick one does not cross a contract migration."""
    if target.is_migration_host:
        has_history, _, applied = read_history(host, s)
        missing = target.migrations - set(applied) if has_history else set()
        if missing:
            raise DeployError(
                f"[{host.name}] {target.name} needs migration(s) {', '.join(sorted(missing))}, "
                "which the database does not have (a rollback never migrates forward): "
                f"deploy it instead, with --data app_version=<its ref>"
            )
        if s.rollback_mode == "full":
            _refuse_if_others_need(s, set(applied) - target.migrations)
    if s.rollback_mode == "quick":
        _refuse_across_contract(ctx, s, target)


def plan(ctx: RunContext, s: Settings, method: Method) -> Target:
    """The newest successful deploy's manifest on this host and the release to go back to; a
    clear error when there is nothing to go back to (no change is made then)."""
    p = shell.paths(s)
    manifests = _manifests(s)
    done = [(path, m) for path, m in manifests if m.get("outcome") == "success"]
    if not done:
        raise DeployError(
            f"[{host.name}] nothing to roll back to: no successful deploy is "
            f"recorded in {p['manifests']}"
        )
    path, manifest = done[0]
    schemas, current, records = releases_on_host.read_state(host, s)
    releases = list(schemas)
    bad = {r: v for r, v in ledger.verdicts(records).items() if v.bad}
    if s.rollback_to and not method.on_hosts:
        raise DeployError(
            f"[{host.name}] rollback_to is not supported with release_method {method.name}: "
            "a rollback goes to the Helm release's previous revision"
        )
    release_dir = _release_to_go_back_to(s, manifests, path, releases, current, bad)
    if release_dir.rsplit("/", 1)[-1] not in releases:
        raise DeployError(
            f"[{host.name}] nothing to roll back to: release {release_dir} is no longer on "
            "the host (pruned)"
        )
    target = Target(
        path,
        manifest,
        release_dir,
        current,
        host.name == migration_host_name(s),
        {m.version for m in read_migrations(host, s, release_dir)},
    )
    _refuse_what_the_schema_forbids(ctx, s, target)
    ctx.keep_migrations[host.name] = target.migrations  # a full rollback keeps what any needs
    return target


def _refuse_if_others_need(s: Settings, to_revert: set[str]) -> None:
    """A host left out of the run that still runs a release needing a migration this full
    rollback would revert (TO_REVERT) stops the rollback before any change."""
    users = []
    for other in outside_the_run() if to_revert else []:
        connected(other, "to check which schema it needs")
        _, current, _ = sh(other, shell.read_link(shell.paths(s)["current"]))
        if current.strip():
            needs = to_revert & {m.version for m in read_migrations(other, s, current.strip())}
            if needs:
                users.append(
                    f"{other.name} runs {current.strip().rsplit('/', 1)[-1]} "
                    f"(needs {', '.join(sorted(needs))})"
                )
    if users:
        raise DeployError(
            f"[{host.name}] full rollback refused: it would revert migration(s) "
            f"{', '.join(sorted(to_revert))}, but hosts outside this run still need them: "
            f"{'; '.join(users)}. Roll those hosts back in the same run (leave out --limit), "
            "or roll this host back with rollback_mode=quick (the schema stays)"
        )


def _refuse_across_contract(ctx: RunContext, s: Settings, target: Target) -> None:
    """A contract migration applied after TARGET was released removed something TARGET may
    use: a quick rollback (schema kept) is refused before any change."""
    crossed = [
        f"{version}_{name}"
        for version, name in applied_contracts(host, s).items()
        if version not in target.migrations
    ]
    if crossed:
        raise DeployError(
            f"[{host.name}] quick rollback refused: contract migration(s) {', '.join(crossed)} "
            f"ran after every host served the release, and removed what {target.name} may "
            "still use. Roll back with the schema: pyinfra -y "
            f"{ctx.inventory} rollback.py --data rollback_mode=full (reverts the contract "
            "first with its down script, switches the hosts, then reverts the expand)"
        )


def _fail(
    ctx: RunContext, host, s: Settings, target: Target, step: str, error: Exception | str
) -> bool:
    lines = [
        f"    state now:   `current` is {target.current}; nothing after this step was done",
        "    next:        fix the cause and run the rollback again: every step is safe to repeat",
    ]
    return failed(ctx, host, s, target.name, step, error, lines)


def _revert_migrations(ctx: RunContext, host, s: Settings, target: Target, phase: str) -> None:
    """Revert, newest first, the applied migrations of PHASE (contract or expand) that no
    target of this run contains."""
    keep = set().union(*ctx.keep_migrations.values())
    _, out, _ = sh(
        host,
        postgres.psql(
            s,
            None,
            None,
            *migration_sql.history_table_sql(),
            f"SELECT version, name, down_sql IS NOT NULL FROM {postgres.HISTORY_TABLE} "
            f"WHERE reverted_at IS NULL AND phase = {postgres.sql_literal(phase)} "
            "ORDER BY version DESC",
        ),
        what="reading the history",
    )
    applied = [line.split("|") for line in out.splitlines() if line]
    revert = [(v, n, r == "t") for v, n, r in applied if v not in keep]
    if not revert:
        say(host, f"no migration to revert ({phase}): every one applied is in {target.name}")
        return
    for version, name, recorded in revert:
        say(host, f"reverting migration {version}_{name} ({phase}; {target.name} lacks it)")
        revert_migration(host, s, version, name, recorded)
        target.reverted.append(version)


def _restore_backup(ctx: RunContext, host, s: Settings, target: Target) -> None:
    backup = target.manifest.get("backup")
    if not backup:
        raise DeployError("the deploy took no backup, there is nothing to restore")
    if backup.get("method") == "pgbackrest":

        def take_lock() -> None:
            statements = deploy_lock.take_over_sql(s.deploy_env, ctx.lock_holder, ctx.command)
            sh(host, postgres.psql(s, None, None, *statements), what="taking the lock back")

        migrated = [
            *target.manifest.get("migrations_applied", []),
            *target.manifest.get("contract_migrations_applied", []),
        ]
        say(host, recovery.restore_to_point(remote(host), s, backup, migrated, take_lock))
        return
    _, now, _ = sh(host, postgres.psql(s, postgres.table_fingerprint_sql()), timeout=120)
    rows, _, md5 = now.strip().split("|")
    if md5 == backup["metrics_md5"] and int(rows) == backup["metrics_rows"]:
        say(host, "metrics already matches the backup: nothing to restore")
        return
    _, newer, _ = sh(
        host,
        postgres.psql(
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
    sh(host, postgres.pg_restore(s, backup["path"]), timeout=s.backup_timeout, what="pg_restore")
    _, after, _ = sh(host, postgres.psql(s, postgres.table_fingerprint_sql()), timeout=120)
    rows, _, md5 = after.strip().split("|")
    if md5 != backup["metrics_md5"] or int(rows) != backup["metrics_rows"]:
        raise DeployError(
            f"after the restore metrics has {rows} rows (md5 {md5}), the backup "
            f"had {backup['metrics_rows']} (md5 {backup['metrics_md5']})"
        )
    say(host, f"restored and verified: {rows} rows, md5 {md5}")


def _revert_contract(state, host, ctx: RunContext, s: Settings, target: Target) -> bool:
    """Before any host switches back: the contract migrations the target release lacks (it
    may need what they removed)."""
    try:
        _revert_migrations(ctx, host, s, target, CONTRACT)
    except DeployError as exc:
        return _fail(ctx, host, s, target, "database", exc)
    return True


def _schema_after_switch(ctx: RunContext, host, s: Settings, target: Target) -> None:
    """Once every host serves the target: the expand migrations it lacks, then the backup
    (taken before the last deploy, so of the target's schema) if asked. A restore point
    brings the whole cluster back, schema and history included: nothing to revert first."""
    backup = target.manifest.get("backup") or {}
    restore = s.rollback_restore_backup == "yes"
    if not (restore and backup.get("method") == "pgbackrest"):
        _revert_migrations(ctx, host, s, target, EXPAND)
    if restore:
        _restore_backup(ctx, host, s, target)


def _database(state, host, ctx: RunContext, s: Settings, target: Target) -> bool:
    try:
        _schema_after_switch(ctx, host, s, target)
    except DeployError as exc:
        return _fail(ctx, host, s, target, "database", exc)
    return True


def _remove_container(state, host, ctx: RunContext, s: Settings, target: Target) -> bool:
    if not target.manifest.get("redis_container_created"):
        say(host, f"{s.redis_container} was not created by that deploy: left as it is")
        return True
    sh(host, docker.container_remove(s.redis_container))
    say(host, f"container {s.redis_container} removed")
    return True


def _verify_and_record(state, host, ctx: RunContext, s: Settings, target: Target) -> bool:
    started = time.time()
    try:
        answer = wait_healthy(remote(host), s)
        _, version, _ = sh(host, http.body(f"http://127.0.0.1:{s.app_port}/api/v1/version"))
    except DeployError as exc:
        return _fail(ctx, host, s, target, "verify", exc)
    return _record(host, s, target, version, answer, started)


def _helm_rollback(state, host, ctx: RunContext, s: Settings, target: Target) -> bool:
    """Helm's previous revision, rolled out (release_method helm; see tasks/helm.py)."""
    started = time.time()
    limit = seconds(s.helm_timeout) + 60
    try:
        say(host, f"$ {shlex.join(helm_commands.rollback_command(s))}")
        helm.run(helm_commands.rollback_command(s), timeout=limit)
        status = helm.run(helm_commands.rollout_status_command(s), timeout=limit)
        current = shell.paths(s)["current"]  # the release the cluster runs, on this host
        sh(host, git.switch_current(current, target.release_dir), what="switching current")
    except DeployError as exc:
        return _fail(ctx, host, s, target, "switch", exc)
    if s.rollback_mode == "full":
        try:
            _schema_after_switch(ctx, host, s, target)
        except DeployError as exc:
            return _fail(ctx, host, s, target, "database", exc)
    return _record(
        host, s, target, f"Helm release {s.helm_release}: previous revision", status, started
    )


def _record(host, s: Settings, target: Target, version: str, answer: str, started: float) -> bool:
    """Write the rollback's record (nothing when it was already done)."""
    if target.already_there and not target.reverted and not s.rollback_disable_redis:
        say(host, f"already rolled back: serving {version.strip()} from {target.release_dir}")
        return True
    record = {
        "status": "rolled back",
        "host": host.name,
        "mode": s.rollback_mode,
        "completed": now_iso(),
        "by": deployed_by(s),
        "undid": target.manifest_path,
        "from_release": target.current,
        "to_release": target.release_dir,
        "serving": version.strip(),
        "health": answer,
        "migrations_reverted": target.reverted,
        "redis_disabled": s.rollback_disable_redis,
        "seconds": round(time.time() - started, 1),
    }
    append_record(host, s, record, left=True)
    say(host, f"rolled back: serving {version.strip()} from {target.release_dir}")
    return True


def _switch(
    state, host, ctx: RunContext, s: Settings, target: Target, strategy: Strategy, restart: bool
) -> bool:
    try:
        if restart or not strategy.serves(host, target.release_dir):
            done = strategy.put_in_service(host, target.release_dir, restart)
            say(host, done or f"{target.name} already serves")
    except DeployError as exc:
        return _fail(ctx, host, s, target, "switch", exc)
    return True


def _before_the_switch(ctx: RunContext, s: Settings, target: Target) -> None:
    """A full rollback's first steps: the contract migrations TARGET lacks reverted (on the
    migration host), the Redis container the deploy created removed."""
    if target.is_migration_host:
        python.call(
            name=f"Ensure no contract migration {target.name} lacks is applied",
            function=_revert_contract,
            ctx=ctx,
            s=s,
            target=target,
        )
    python.call(
        name=f"Ensure {s.redis_container} is gone if that deploy created it",
        function=_remove_container,
        ctx=ctx,
        s=s,
        target=target,
    )


@deploy("Rollback")
def rollback(
    ctx: RunContext,
    s: Settings,
    target: Target,
    strategy: Strategy | None,
    env_op: OperationMeta | None,
) -> None:
    """Go back to TARGET: the contract reverted first (full), then the switch (STRATEGY; None
    when the service runs on Kubernetes: Helm's previous revision), then the expand (full).
    Any operation that fails ends the host's rollback the way a failed step does."""
    ctx.on_failure(host, lambda error: _fail(ctx, host, s, target, "rollback", error))
    full = s.rollback_mode == "full"
    if full:
        _before_the_switch(ctx, s, target)
    if strategy is None:
        if target.is_migration_host:
            python.call(
                name=f"Ensure Helm release {s.helm_release} is back at its previous revision",
                function=_helm_rollback,
                ctx=ctx,
                s=s,
                target=target,
            )
        return
    python.call(
        name=f"Ensure {target.name} serves ({strategy.how})",
        function=_switch,
        ctx=ctx,
        s=s,
        target=target,
        strategy=strategy,
        restart=env_op is not None and env_op.will_change,
    )
    if full and target.is_migration_host:
        python.call(
            name=f"Ensure the schema is {target.name}'s (expand migrations it lacks reverted, "
            "the backup restored if asked)",
            function=_database,
            ctx=ctx,
            s=s,
            target=target,
        )
    python.call(
        name="Wait for a healthy answer and record the rollback",
        function=_verify_and_record,
        ctx=ctx,
        s=s,
        target=target,
    )
