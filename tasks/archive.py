"""Continuous archiving with pgBackRest (`backup_method: pgbackrest`): what the backup-setup
runbook sets up, what pre-flight and the backup phase ask of it (archiving proven, a backup
recent enough, a named restore point archived), and the restores: a cluster brought back to a
restore point or to the newest archived WAL; and restore drills of either method into a
scratch cluster (pgBackRest's repository on its host, the newest pg_dump on the migration
host).

Every function takes Remotes (tasks/remote.py): the database server (the inventory's host in
group db_servers), the repository host (backup_repo_host), the app hosts to hold in
maintenance while the database is down.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pyinfra import inventory
from pyinfra.api.host import Host

from tasks.commands import pgbackrest as pgb
from tasks.commands.shell import q
from tasks.config import Settings, seconds
from tasks.hosts import DB_GROUP, connected, database_servers
from tasks.remote import DeployError, Remote
from tasks.transport import remote, say, sh

SETUP_HINT = "run `pyinfra -y inventories/<env>.py runbook.py --data runbook=backup-setup` first"
POINT_PREFIX = "mdd_"


def address(h: Host) -> str:
    """Where the other hosts of the inventory reach H."""
    return str(h.data.get("ssh_hostname") or h.name)


@dataclass(frozen=True)
class Servers:
    """The database server and the repository host, as Remotes, and their addresses."""

    db: Remote
    repo: Remote
    db_address: str
    repo_address: str


def servers(s: Settings) -> Servers:
    """The inventory's database server and repository host, connected; a DeployError names
    what the inventory lacks."""
    found = database_servers()
    if len(found) != 1:
        raise DeployError(
            f"backup_method pgbackrest: the inventory needs exactly one host in group {DB_GROUP} "
            f"(the database server pgBackRest reads), found {len(found)}"
        )
    repo = inventory.get_host(s.backup_repo_host, None)
    if repo is None:
        raise DeployError(
            f"backup_repo_host: {s.backup_repo_host!r} is not a host of this inventory"
        )
    if repo is found[0]:
        raise DeployError(
            "backup_repo_host: the repository must be on another host than the database"
        )
    db = connected(found[0], "pgBackRest: the database server")
    repo = connected(repo, "pgBackRest: the repository host")
    return Servers(remote(db), remote(repo), address(db), address(repo))


# ----------------------------------------------------------------------------- setup


def _install_config(r: Remote, text: str) -> bool:
    """/etc/pgbackrest.conf on R as TEXT (0640 root:postgres, as pgBackRest reads it); True
    when its content, mode or owner changed."""
    found = f"stat -c '%a %U:%G' {pgb.CONFIG} && sha256sum {pgb.CONFIG}"
    _, now, _ = sh(r, f"{found} 2>/dev/null || true")
    wanted = ["640", f"root:{pgb.PG_USER}", hashlib.sha256(text.encode()).hexdigest()]
    if now.split()[:3] == wanted:
        return False
    r.put_text(text, pgb.CONFIG, mode="640")
    sh(r, f"chgrp {pgb.PG_USER} {pgb.CONFIG}")
    return True


def _trust_each_other(sv: Servers) -> list[str]:
    """User postgres on each host logs in to the other by key (host keys read once)."""
    _, db_key, _ = sh(sv.db, pgb.ensure_ssh_key(), what="postgres's SSH key")
    _, repo_key, _ = sh(sv.repo, pgb.ensure_ssh_key(), what="postgres's SSH key")
    done = []
    _, added, _ = sh(sv.repo, pgb.trust_peer(db_key.strip(), sv.db_address), what="SSH trust")
    if added.strip():
        done.append(f"{sv.repo.name} trusts {sv.db.name}'s postgres key")
    _, added, _ = sh(sv.db, pgb.trust_peer(repo_key.strip(), sv.repo_address), what="SSH trust")
    if added.strip():
        done.append(f"{sv.db.name} trusts {sv.repo.name}'s postgres key")
    return done


def archive_state(db: Remote, s: Settings) -> tuple[bool, bool]:
    """(every archive setting as wanted, a restart pending) on the database server."""
    _, out, _ = sh(db, pgb.superuser_psql(pgb.archive_state_sql(s)), what="archive settings")
    wanted, pending = out.strip().split("|")
    return wanted == "t", pending == "t"


def _archive_on(sv: Servers, s: Settings, watch: Callable[[Callable[[], Any]], str]) -> list[str]:
    """archive_mode, archive_command, archive_timeout set; PostgreSQL restarted only when
    archive_mode needs it, said before, with what the serving release saw (WATCH)."""
    wanted, pending = archive_state(sv.db, s)
    if wanted and not pending:
        return []
    for statement in pgb.archive_settings_sql(s):
        sh(sv.db, pgb.superuser_psql(statement), what="ALTER SYSTEM")
    sh(sv.db, pgb.superuser_psql("SELECT pg_reload_conf()"))
    time.sleep(0.5)  # the postmaster reads the files again asynchronously
    wanted, pending = archive_state(sv.db, s)
    done = [f"archive_command and archive_timeout {s.backup_archive_timeout}s set"]
    if pending:
        say(
            sv.db,
            f"archive_mode needs a restart: PostgreSQL ({s.backup_pg_service}) restarts now; "
            "the serving release's requests are counted while it happens",
        )
        seen = watch(lambda: sh(sv.db, f"systemctl restart {q(s.backup_pg_service)}", timeout=120))
        done.append(f"PostgreSQL restarted for archive_mode ({seen})")
        wanted, pending = archive_state(sv.db, s)
    if not wanted or pending:
        raise DeployError("the archive settings did not take effect on the database server")
    return done


def backups(repo: Remote, s: Settings) -> list[dict[str, Any]]:
    """The stanza's backups in the repository, oldest first (pgBackRest's own JSON)."""
    _, out, _ = sh(repo, pgb.info(s), what="pgbackrest info")
    stanzas = json.loads(out or "[]")
    return list(stanzas[0].get("backup", [])) if stanzas else []


def newest_backup(repo: Remote, s: Settings) -> dict[str, Any] | None:
    found = backups(repo, s)
    return found[-1] if found else None


def setup(sv: Servers, s: Settings, watch: Callable[[Callable[[], Any]], str]) -> list[str]:
    """The backup-setup runbook: SSH trust, configuration, archiving, the stanza, a first full
    backup. Each step is skipped when already done; returns what changed."""
    done = _trust_each_other(sv)
    sh(sv.repo, f"install -d -o {pgb.PG_USER} -g {pgb.PG_USER} -m 0750 {q(s.backup_repo_path)}")
    if _install_config(sv.db, pgb.db_config(s, sv.repo_address)):
        done.append(f"{pgb.CONFIG} on {sv.db.name}")
    if _install_config(sv.repo, pgb.repo_config(s, sv.db_address)):
        done.append(f"{pgb.CONFIG} on {sv.repo.name}")
    done += _archive_on(sv, s, watch)
    sh(sv.repo, pgb.pgbackrest(s, "stanza-create"), timeout=300, what="pgbackrest stanza-create")
    sh(sv.db, pgb.pgbackrest(s, "check"), timeout=300, what="pgbackrest check")
    if newest_backup(sv.repo, s) is None:
        say(sv.repo, "first full backup of the cluster (pgbackrest backup --type=full)")
        done.append(f"first full backup {take_backup(sv.repo, s, 'full')}")
    return done


def take_backup(repo: Remote, s: Settings, kind: str) -> str:
    """A pgBackRest backup of KIND (full, incr) taken now on the repository host; its label."""
    sh(
        repo,
        pgb.pgbackrest(s, "backup", f"--type={kind}"),
        timeout=s.backup_timeout,
        what=f"pgbackrest backup --type={kind}",
    )
    newest = newest_backup(repo, s)
    return str(newest["label"]) if newest else ""


# ----------------------------------------------------------------------------- deploy


def ready(sv: Servers, s: Settings) -> str:
    """Pre-flight: archiving works (`pgbackrest check` forces a WAL switch and waits for it in
    the repository) and the newest backup is younger than backup_max_age (otherwise an
    incremental backup is taken now). Returns the label of the backup a restore starts from."""
    wanted, pending = archive_state(sv.db, s)
    ok, _, err = sh(sv.db, pgb.pgbackrest(s, "check"), timeout=300, check=False)
    if not wanted or pending or not ok:
        detail = err.strip().splitlines()[-1:] or ["the archive settings are not in place"]
        raise DeployError(
            f"backup_method pgbackrest: {sv.db.name} does not archive its WAL to "
            f"{sv.repo.name} ({detail[0][:300]}): {SETUP_HINT}"
        )
    newest = newest_backup(sv.repo, s)
    age = time.time() - int(newest["timestamp"]["stop"]) if newest else None
    if newest and age is not None and age <= seconds(s.backup_max_age):
        return str(newest["label"])
    why = "none yet" if age is None else f"the newest is {age / 3600:.1f} h old"
    kind = "incr" if newest else "full"
    say(sv.repo, f"a {kind} backup first ({why}, backup_max_age {s.backup_max_age})")
    return take_backup(sv.repo, s, kind)


def point_name(env: str, stamp: str) -> str:
    """The restore point a deploy of ENV started at STAMP (%Y%m%d-%H%M%S) creates."""
    return f"{POINT_PREFIX}{env}_{stamp}"


def point_time(name: str) -> datetime | None:
    """When the restore point NAME (one of ours) was created, from its name; None for a name
    that is not ours."""
    try:
        return datetime.strptime(name.rsplit("_", 1)[-1], "%Y%m%d-%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def wait_archived(db: Remote, s: Settings, segment: str) -> float:
    """Wait until the WAL segment SEGMENT is archived; seconds waited. Archiving failures on
    or after it, or backup_archive_wait passing, fail with what PostgreSQL says."""
    started = time.monotonic()
    deadline = started + s.backup_archive_wait
    while True:
        _, out, _ = sh(db, pgb.superuser_psql(pgb.archived_sql()))
        last, failures, last_failed, _ = out.strip().split("|")
        if last and last[8:] >= segment[8:] and last[:8] >= segment[:8]:
            return round(time.monotonic() - started, 2)
        if time.monotonic() > deadline:
            problem = f", {failures} failure(s), last on {last_failed}" if last_failed else ""
            raise DeployError(
                f"WAL segment {segment} not archived after {s.backup_archive_wait}s "
                f"(last archived: {last or 'none'}{problem}); see {s.backup_pg_service}'s log"
            )
        time.sleep(0.5)


def restore_point(db: Remote, s: Settings, name: str) -> tuple[int, str, float]:
    """The named restore point NAME, its WAL segment archived: (metrics' highest id at the
    point or before, the segment, seconds waited for it)."""
    _, out, _ = sh(
        db, pgb.superuser_psql(pgb.restore_point_sql(name), s.db_name), what="restore point"
    )
    max_id, segment, _ = out.strip().split("|")
    return int(max_id), segment, wait_archived(db, s, segment)


# ----------------------------------------------------------------------------- restores


def backup_before(found: list[dict[str, Any]], when: datetime | None) -> dict[str, Any]:
    """Of the backups FOUND, the newest that ended before WHEN (any when None): a restore to
    a named point must start from a backup taken before the point."""
    limit = when.timestamp() if when else float("inf")
    before = [b for b in found if int(b["timestamp"]["stop"]) < limit]
    if not before:
        raise DeployError(
            f"no backup in the repository ended before "
            f"{when.isoformat() if when else 'now'}: nothing to restore from"
        )
    return before[-1]


def wait_promoted(db: Remote, s: Settings, psql: Callable[[str], str], limit: int) -> float:
    """Wait until the cluster PSQL reaches answers and is out of recovery; seconds waited."""
    started = time.monotonic()
    while True:
        ok, out, _ = sh(db, psql("SELECT pg_is_in_recovery()"), check=False)
        if ok and out.strip() == "f":
            return round(time.monotonic() - started, 2)
        if time.monotonic() - started > limit:
            raise DeployError(f"the restored cluster on {db.name} is not serving after {limit}s")
        time.sleep(0.5)


def promoted(db: Remote, s: Settings) -> None:
    """Wait until the live cluster restored on DB is out of recovery, then have it checkpoint:
    its checkpointer slept through the recovery on checkpoint_timeout and would not switch
    WAL on archive_timeout until its next checkpoint (seen with PostgreSQL 15 after a
    promotion at a restore point: no segment archived for minutes of writes)."""
    wait_promoted(db, s, pgb.superuser_psql, s.backup_timeout)
    sh(db, pgb.superuser_psql("CHECKPOINT"), timeout=300, what="the first checkpoint")


def restore_cluster(db: Remote, s: Settings, options: Sequence[str]) -> float:
    """The live cluster stopped, restored by pgBackRest with OPTIONS (a target, a set), started
    and out of recovery; seconds it took."""
    started = time.monotonic()
    sh(db, f"systemctl stop {q(s.backup_pg_service)}", timeout=120, what="stopping PostgreSQL")
    sh(db, pgb.restore(s, *options), timeout=s.backup_timeout, what="pgbackrest restore")
    sh(db, f"systemctl start {q(s.backup_pg_service)}", timeout=120, what="starting PostgreSQL")
    promoted(db, s)
    return round(time.monotonic() - started, 2)


@dataclass
class Drill:
    """A restore drill's verdict and figures (the report and the ledger keep them)."""

    target: str
    backup_set: str = ""
    passed: bool = False
    rto_seconds: float | None = None
    rpo_seconds: int | None = None
    checks: dict[str, str] = field(default_factory=dict)
    problem: str = ""


# what a drill checks in the restored database (the last column: compared with the live one)
METRICS_SQL = (
    "SELECT count(*), coalesce(max(id), 0), "
    "(SELECT md5(coalesce(string_agg(id::text || ':' || value::text, ',' ORDER BY id), '')) "
    "FROM (SELECT id, value FROM metrics ORDER BY id LIMIT 1000) AS sample) FROM metrics"
)
HISTORY_SQL = (
    "SELECT coalesce(max(version), 'none') FROM schema_migrations WHERE reverted_at IS NULL"
)


def _checks(
    r: Remote, s: Settings, scratch: str, live: Callable[[], str | None], history: bool
) -> dict[str, str]:
    """What the restored database in SCRATCH holds (with HISTORY, its newest migration: a
    restore whose history is gone fails here), its sample compared with LIVE's."""
    psql = _scratch_psql(s, scratch)
    _, out, _ = sh(r, psql(METRICS_SQL), timeout=600, what="checking the drill's metrics")
    rows, max_id, sample = out.strip().split("|")
    live_sample = live()
    compared = (
        ""
        if live_sample is None
        else " (matches the live database)"
        if live_sample == sample
        else " (differs from the live database)"
    )
    found = {
        "metrics rows": rows,
        "metrics highest id": max_id,
        "sample checksum (1000 oldest rows)": sample + compared,
    }
    if history:
        _, version, _ = sh(r, psql(HISTORY_SQL), what="checking the drill's migration history")
        found["migration history"] = f"newest {version.strip()}"
    return found


def _scratch_psql(s: Settings, scratch: str) -> Callable[[str], str]:
    def psql(sql: str) -> str:
        return pgb.superuser_psql(sql, s.db_name, port=s.drill_port, socket_dir=scratch)

    return psql


def _clear_scratch(repo: Remote, s: Settings, scratch: str) -> None:
    """No scratch server left running, no scratch folder left (a killed drill's included)."""
    sh(repo, pgb.scratch_stop(s, scratch), timeout=90, check=False)
    sh(repo, f"rm -rf {q(s.drill_dir)}")


def _log_errors(repo: Remote, log: str) -> str:
    """The scratch server's log lines that say what went wrong (pgBackRest's errors first)."""
    _, out, _ = sh(
        repo, f"grep -E 'ERROR|FATAL' {q(log)} 2>/dev/null | tail -n 5 || true", check=False
    )
    return " | ".join(line.strip() for line in out.splitlines()) or "no error in its log"


def _start_scratch(r: Remote, s: Settings, scratch: str, log: str) -> None:
    ok, _, _ = sh(r, pgb.scratch_start(s, scratch, log), timeout=660, check=False)
    if not ok:
        raise DeployError(f"the scratch cluster did not start: {_log_errors(r, log)}")


def _in_scratch(
    r: Remote, s: Settings, result: Drill, restore: Callable[[str, str], None]
) -> Drill:
    """RESULT of a drill on R: RESTORE(scratch folder, its server's log) restores, starts and
    checks a scratch cluster, whose leftovers (a killed drill's too) are cleared before and
    after; a DeployError it raises is the drill's problem. RTO: from the start to the end."""
    started = time.monotonic()
    scratch = f"{s.drill_dir}/cluster"
    _clear_scratch(r, s, scratch)
    try:
        restore(scratch, f"{s.drill_dir}/server.log")
    except DeployError as exc:
        result.problem = str(exc)
    finally:
        _clear_scratch(r, s, scratch)
    result.rto_seconds = round(time.monotonic() - started, 2)
    return result


def drill(repo: Remote, s: Settings, target: str, live: Callable[[], str | None]) -> Drill:
    """Restore the newest backup before TARGET plus the archived WAL up to TARGET into a
    scratch cluster on the repository host (never the live one), start it on drill_port,
    check it, stop and delete it. LIVE gives the live database's sample checksum (None when
    it does not answer). The archive is read first: a corrupted or missing WAL segment is
    named."""
    result = Drill(target=target)

    def restore(scratch: str, log: str) -> None:
        when = point_time(target) if target != "latest" else None
        if target != "latest" and when is None and target[:4].isdigit():
            when = datetime.fromisoformat(target.replace(" UTC", "+00:00"))
        chosen = backup_before(backups(repo, s), when)
        result.backup_set = str(chosen["label"])
        _, listing, _ = sh(repo, pgb.archive_listing(s), timeout=600, what="reading the archive")
        problems, result.rpo_seconds = pgb.wal_problems(listing, chosen["archive"]["start"])
        if problems:
            raise DeployError("; ".join(problems))
        config = f"{s.drill_dir}/pgbackrest.conf"
        sh(repo, f"install -d -o {pgb.PG_USER} -m 0700 {q(s.drill_dir)} {q(scratch)}")
        repo.put_text(pgb.drill_config(s, scratch), config, mode="640")
        sh(repo, f"chgrp {pgb.PG_USER} {q(config)}")
        options = pgb.target_options(target, result.backup_set)
        say(repo, f"drill: restoring {result.backup_set} + WAL to {target} into {scratch}")
        sh(
            repo,
            pgb.restore(s, *options, config=config, delta=False),
            timeout=s.backup_timeout,
            what="pgbackrest restore (drill)",
        )
        _start_scratch(repo, s, scratch, log)
        wait_promoted(repo, s, _scratch_psql(s, scratch), s.backup_timeout)
        result.checks = _checks(repo, s, scratch, live, history=True)
        result.passed = result.checks["migration history"] != "newest none"
        if not result.passed:
            result.problem = "the restored database has no migration history"

    return _in_scratch(repo, s, result, restore)


def dump_drill(h: Remote, s: Settings, live: Callable[[], str | None]) -> Drill:
    """backup_method pg_dump: the newest dump in backup_dir on H (the migration host)
    restored into a scratch cluster there (initdb, drill_port, PostgreSQL's server binaries
    needed), checked like a pgBackRest drill but for the migration history, which dumps leave
    out; stopped and deleted. RPO: the dump's age."""
    result = Drill(target="latest")

    def restore(scratch: str, log: str) -> None:
        _, newest, _ = sh(h, f"ls -1t {q(s.backup_dir)}/backup_*.dump 2>/dev/null | head -n 1")
        result.backup_set = newest.strip()
        if not result.backup_set:
            raise DeployError(f"no dump in {s.backup_dir} on {h.name}: nothing to drill")
        _, age, _ = sh(h, f"echo $(( $(date +%s) - $(stat -c %Y {q(result.backup_set)}) ))")
        result.rpo_seconds = int(age)
        sh(h, f"install -d -o {pgb.PG_USER} -m 0700 {q(s.drill_dir)}")
        say(h, f"drill: restoring {result.backup_set} into a scratch cluster in {scratch}")
        sh(h, pgb.scratch_init(s, scratch), timeout=300, what="initdb (drill)")
        _start_scratch(h, s, scratch, log)
        sh(
            h,
            pgb.dump_restore(s, scratch, result.backup_set),
            timeout=s.backup_timeout,
            what="pg_restore (drill)",
        )
        result.checks = _checks(h, s, scratch, live, history=False)
        result.passed = True

    return _in_scratch(h, s, result, restore)
