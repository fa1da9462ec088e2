"""The runbooks of backups and restores, run once per run from the migration host:
backup-setup (pgBackRest archiving), restore-drill (a backup proven by restoring it into a
scratch cluster, both methods) and restore-latest (a database server that lost its data
directory brought back from the archive); and the full rollback's restore to a deploy's
restore point. The database is down only while the app hosts answer the maintenance 503.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from tasks import archive, slots
from tasks.commands import pgbackrest as pgb
from tasks.commands import postgres
from tasks.commands.shell import paths, q
from tasks.config import Settings
from tasks.hosts import app_hosts
from tasks.migrations import read_history
from tasks.remote import DeployError, Remote, wait_healthy
from tasks.transport import remote, say, sh

WATCH_LIMIT = 600  # at most this many requests (a minute) while PostgreSQL restarts


def _probe_url(s: Settings) -> str:
    number = random.randrange(3600, 86400)
    return f"http://127.0.0.1:{s.app_port}{s.migrate_probe_path.replace('{n}', str(number))}"


def watching(h: Remote, s: Settings) -> Callable[[Callable[[], Any]], str]:
    """A watch: runs an action while host H asks its serving release every 100 ms (a path that
    reads the database), and says how many of those requests failed."""

    def watch(action: Callable[[], Any]) -> str:
        out = f"{paths(s)['state']}/restart-watch.txt"
        loop = (
            f"for i in $(seq {WATCH_LIMIT}); do curl -s -o /dev/null -m 2 -w '%{{http_code}}\\n' "
            f"{q(_probe_url(s))} >> {q(out)}; sleep 0.1; done"
        )
        sh(h, f"rm -f {q(out)}; (sh -c {q(loop)}) >/dev/null 2>&1 & echo $! > {q(out)}.pid")
        started = time.monotonic()
        try:
            action()
            time.sleep(2)  # the requests right after the restart count too
        finally:
            _, codes, _ = sh(h, f"kill $(cat {q(out)}.pid) 2>/dev/null; cat {q(out)}", check=False)
        answers = codes.split()
        failed = sum(1 for code in answers if code != "200")
        return (
            f"{failed} of {len(answers)} requests to the serving release on {h.name} failed "
            f"over {time.monotonic() - started:.1f}s"
        )

    return watch


def backup_setup(h: Remote, s: Settings) -> list[str]:
    if s.backup_method != "pgbackrest":
        raise DeployError("runbook backup-setup sets up pgBackRest: set backup_method pgbackrest")
    return archive.setup(archive.servers(s), s, watching(h, s))


@contextmanager
def maintenance(s: Settings, why: str) -> Iterator[None]:
    """Every app host of the run answers the maintenance 503 (its health path still answers)
    while the database is down; let back in after, and only the hosts this turned on."""
    hosts = [remote(h) for h in app_hosts()]
    if s.release_strategy != "blue_green":
        for h in hosts:
            say(h, f"no local proxy to answer 503 (release_strategy restart): {why}")
        yield
        return
    turned_on = [h for h in hosts if slots.set_maintenance(h, s, True)]
    for h in turned_on:
        say(h, f"maintenance mode on: {why}")
    try:
        yield
    finally:
        for h in turned_on:
            slots.set_maintenance(h, s, False)
            say(h, "maintenance mode off")


def _metrics(h: Remote, s: Settings) -> tuple[int, int]:
    _, out, _ = sh(h, postgres.psql(s, "SELECT count(*), coalesce(max(id), 0) FROM metrics"))
    rows, max_id = out.strip().split("|")
    return int(rows), int(max_id)


def restore_drill(h: Remote, s: Settings) -> tuple[list[str], dict[str, Any]]:
    """The drill of the configured method; its lines and its record (verdict, RTO, RPO)."""

    def live_sample() -> str | None:
        ok, out, _ = sh(h, postgres.psql(s, archive.METRICS_SQL), timeout=120, check=False)
        return out.strip().split("|")[-1] if ok else None

    if s.backup_method == "pg_dump":
        result = archive.dump_drill(h, s, live_sample)
    else:
        result = archive.drill(archive.servers(s).repo, s, s.drill_target, live_sample)
    lines = [
        f"drill to {result.target} from {result.backup_set or 'no backup'}: "
        f"{'PASSED' if result.passed else 'FAILED'}, RTO {result.rto_seconds}s, "
        f"RPO {result.rpo_seconds}s (age of the newest archived WAL)"
    ] + [f"{name}: {value}" for name, value in result.checks.items()]
    return lines, {"drill": asdict(result)}


def restore_latest(h: Remote, s: Settings) -> list[str]:
    """A database server that lost its data directory: what is left moved aside, the newest
    backup plus every archived WAL restored, started, checked; how much could be missing."""
    if s.backup_method != "pgbackrest":
        raise DeployError("runbook restore-latest restores from pgBackRest: backup_method pg_dump")
    sv = archive.servers(s)
    data = q(s.backup_pg_data)
    ok, _, _ = sh(sv.db, f"test -f {data}/PG_VERSION", check=False)
    answers, _, _ = sh(sv.db, pgb.superuser_psql("SELECT 1"), check=False)
    if ok and answers:
        raise DeployError(
            f"{sv.db.name}'s cluster has its data directory and answers: restore-latest "
            "replaces a lost one (to go back to a deploy's backup, roll back with "
            "rollback_restore_backup=yes)"
        )
    _, listing, _ = sh(sv.repo, pgb.archive_listing(s), timeout=600, what="reading the archive")
    _, age = pgb.wal_problems(listing, "0" * 24)
    say(sv.db, f"restoring the newest backup and every archived WAL (newest {age}s old)")
    with maintenance(s, f"{sv.db.name} is being restored"):
        sh(sv.db, f"systemctl stop {q(s.backup_pg_service)}", timeout=120, check=False)
        aside = f"{s.backup_pg_data}.lost-{time.strftime('%Y%m%d-%H%M%S')}"
        sh(
            sv.db,
            f"if [ -e {data} ]; then mv {data} {q(aside)}; fi && "
            f"install -d -o {pgb.PG_USER} -g {pgb.PG_USER} -m 0700 {data}",
        )
        started = time.monotonic()
        sh(sv.db, pgb.restore(s), timeout=s.backup_timeout, what="pgbackrest restore")
        sh(sv.db, f"systemctl start {q(s.backup_pg_service)}", timeout=120)
        archive.promoted(sv.db, s)
        seconds = round(time.monotonic() - started, 2)
    rows, max_id = _metrics(h, s)
    for app in app_hosts():
        wait_healthy(remote(app), s)
    return [
        f"{sv.db.name} restored from the archive in {seconds}s: metrics has {rows} rows, "
        f"highest id {max_id}",
        f"could not be brought back: writes of the last {age}s before the loss at most (the "
        f"newest archived WAL's age; archive_timeout {s.backup_archive_timeout}s) and the WAL "
        "not yet archived",
        f"what was left of the data directory: {aside} (remove it once the restore is checked)",
        "the service answers on every app host",
    ]


def restore_to_point(
    h: Remote, s: Settings, backup: dict[str, Any], migrated: list[str], take_lock: Callable
) -> str:
    """Full rollback: the cluster back to the deploy's restore point (point-in-time recovery),
    the app hosts in maintenance while it is down; TAKE_LOCK puts this run's lock back (the
    lock table went back in time too). Says how many rows written since are lost first.
    Nothing to do when no row is newer than the point and none of the deploy's migrations
    (MIGRATED) is in the history: the cluster is at the point already."""
    point, backup_set = backup["restore_point"], backup["backup_set"]
    since = f"SELECT count(*) FROM metrics WHERE id > {int(backup['metrics_max_id'])}"
    _, newer, _ = sh(h, postgres.psql(s, since))
    _, _, applied = read_history(h, s)
    if int(newer) == 0 and not set(migrated) & set(applied):
        return f"the database has nothing newer than restore point {point}: nothing to restore"
    say(
        h,
        f"restoring the cluster to restore point {point} (from {backup_set}): {int(newer)} "
        "row(s) written since will be lost",
    )
    sv = archive.servers(s)
    with maintenance(s, f"{sv.db.name} is being restored to {point}"):
        seconds = archive.restore_cluster(sv.db, s, pgb.target_options(point, backup_set))
        take_lock()
    _, max_id = _metrics(h, s)
    if max_id != int(backup["metrics_max_id"]):
        raise DeployError(
            f"after the restore metrics' highest id is {max_id}, at {point} it was "
            f"{backup['metrics_max_id']}"
        )
    return f"restored to {point} in {seconds}s and verified (highest id {max_id})"
