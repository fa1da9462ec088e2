"""DORA's four keys of one environment, from its app hosts' deployment records (pure).

- deployments: deploy runs that changed the release (on any host) and succeeded on every
  host they reached; deploys per day = deployments / the window's days.
- lead time for changes: from the release's commit (`commit_time`) to the end of the
  deployment that put it in service (its last host); the median.
- change failure rate: of the runs that changed the release, those that failed (any host), or
  succeeded and were then rolled back (a rollback from that release before the next deploy).
- time to restore: from the start of a failed change (for one rolled back after it
  succeeded: from its end, when the bad release served) to the first end of what served again:
  the failed run itself when it switched its hosts back, the next successful deploy, a
  rollback; the median.

A run is the records with one `run` stamp; records written before they carried one are grouped
by their start's minute and version. Only runs that ended inside the window count.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class Dora:
    days: int
    deployments: int
    changes: int
    failed_changes: int
    deploys_per_day: float
    lead_time_s: float | None  # median; None: no deployment with a known commit time
    change_failure_rate: float | None  # None: no change in the window
    time_to_restore_s: float | None  # median; None: no failure restored in the window

    def lines(self) -> list[str]:
        """The four keys as the operator reads them."""

        def took(seconds: float | None) -> str:
            if seconds is None:
                return "-"
            if seconds < 3600:
                return f"{seconds / 60:.1f} min"
            return f"{seconds / 3600:.1f} h" if seconds < 172800 else f"{seconds / 86400:.1f} d"

        rate = self.change_failure_rate
        return [
            f"deployment frequency     {self.deploys_per_day:.2f}/day "
            f"({self.deployments} in {self.days} days)",
            f"lead time for changes    {took(self.lead_time_s)} (median, commit to serving)",
            "change failure rate      "
            + ("-" if rate is None else f"{rate:.0%} ({self.failed_changes} of {self.changes})"),
            f"time to restore service  {took(self.time_to_restore_s)} (median)",
        ]


def _at(text: Any) -> datetime | None:
    try:
        found = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return found if found.tzinfo else found.replace(tzinfo=UTC)


@dataclass
class _Run:
    started: datetime
    ended: datetime
    release: str
    changed: bool
    succeeded: bool
    switched_back: bool  # a failed run that put its hosts back on the release before
    commit: datetime | None


def _deploy_runs(records: Iterable[dict[str, Any]]) -> list[_Run]:
    groups: dict[tuple[str, str], list[tuple[datetime, datetime, dict[str, Any]]]] = {}
    for r in records:
        ended = _at(r.get("completed"))
        if "deployed_by" not in r or not r.get("release") or ended is None:
            continue
        key = (str(r.get("run") or str(r.get("started", ""))[:16]), str(r.get("version")))
        groups.setdefault(key, []).append((_at(r.get("started")) or ended, ended, r))
    runs = []
    for group in groups.values():
        found = [r for _, _, r in group]
        commits = [_at(r["commit_time"]) for r in found if r.get("commit_time")]
        runs.append(
            _Run(
                started=min(started for started, _, _ in group),
                ended=max(ended for _, ended, _ in group),
                release=str(found[0]["release"]),
                changed=any(
                    r.get("release_changed", r.get("previous_release") != r.get("version"))
                    for r in found
                ),
                succeeded=all(r.get("status") == "success" for r in found),
                switched_back=any(r.get("rolled_back") for r in found),
                commit=commits[0] if commits else None,
            )
        )
    return sorted(runs, key=lambda run: run.started)


def _rollbacks(records: Iterable[dict[str, Any]]) -> list[tuple[datetime, str]]:
    """(when it ended, the release it went away from) of each rollback record."""
    found = []
    for r in records:
        at = _at(r.get("completed"))
        if r.get("status") == "rolled back" and "from_release" in r and at:
            source = str(r.get("from_release") or "").rstrip("/").rsplit("/", 1)[-1]
            found.append((at, source))
    return sorted(found)


def figures(records: Iterable[dict[str, Any]], now: datetime, days: int) -> Dora:
    """The four keys over the DAYS before NOW, from every app host's RECORDS together."""
    records = list(records)
    since = now - timedelta(days=days)
    runs = [r for r in _deploy_runs(records) if r.changed]
    rollbacks = _rollbacks(records)
    changes = [r for r in runs if since <= r.ended <= now]
    failed, restore = [], []
    for run in changes:
        next_start = min((r.started for r in runs if r.started > run.started), default=now)
        undone = [
            at
            for at, source in rollbacks
            if run.ended <= at <= next_start and source == run.release
        ]
        if run.succeeded and not undone:
            continue
        failed.append(run)
        if run.succeeded:  # served, then rolled back
            began, served_again = run.ended, undone[:1]
        else:
            began = run.started
            served_again = [run.ended] if run.switched_back else []
            served_again += [r.ended for r in runs if r.succeeded and r.started > run.started]
            served_again += [at for at, _ in rollbacks if at > run.started]
        if served_again and min(served_again) <= now:
            restore.append((min(served_again) - began).total_seconds())
    deployments = [r for r in changes if r.succeeded]
    leads = [(r.ended - r.commit).total_seconds() for r in deployments if r.commit]
    return Dora(
        days=days,
        deployments=len(deployments),
        changes=len(changes),
        failed_changes=len(failed),
        deploys_per_day=len(deployments) / days,
        lead_time_s=statistics.median(leads) if leads else None,
        change_failure_rate=len(failed) / len(changes) if changes else None,
        time_to_restore_s=statistics.median(restore) if restore else None,
    )
