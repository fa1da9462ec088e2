"""The release ledger: what each release on an app host is known for, from the host's own
deployment records (`deployments.jsonl`), newest judgement first.

A release's verdict is the last judgement of it on that host:
- `served`: a deploy of it succeeded;
- `failed health`: a deploy of it failed once it was switched to, or tried to be (the switch's
  health gate, verification, load test, monitoring window), whether it was switched back or
  not. The cause may be the release or what it runs on (a database restart fails the
  monitoring window too): the verdict says what happened and marks nothing;
- `rolled back`: a rollback went from it to another release: someone judged it bad;
- `rejected`: the canary analysis found it worse than the release it replaced, under the
  same traffic (tasks/analysis.py), and sent the canary back.
A deploy that failed before its release was ever tried (build, backup, migration...) judges
nothing. `rolled back` and `rejected` are bad: rollback.py never goes back to a bad release
unless `rollback_to` names it, and a deploy of one warns. A later successful deploy of it makes
it `served` again (the team chose it).

Pure functions over the records; tasks/releases.py reads them from the hosts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

BAD = ("rolled back", "rejected")
RECORDS_READ = 2000  # the newest lines of deployments.jsonl a verdict is read from
# phases whose failure judges the release: it was switched to, or its health gate refused it
JUDGING_PHASES = ("release", "verify", "loadtest", "monitor")


@dataclass(frozen=True)
class Verdict:
    verdict: str
    at: str
    by: str

    @property
    def bad(self) -> bool:
        return self.verdict in BAD

    def __str__(self) -> str:
        return f"{self.verdict} ({self.at}, {self.by})"


def parse_records(text: str) -> list[dict[str, Any]]:
    """The JSON lines of a deployment records file, a torn or foreign line skipped."""
    records = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            records.append(entry)
    return records


def _name(path: str | None) -> str | None:
    return path.rstrip("/").rsplit("/", 1)[-1] if path else None


def judgement(record: dict[str, Any]) -> tuple[str, str] | None:
    """(release, verdict) RECORD passes, or None when it judges no release."""
    status = str(record.get("status", ""))
    if "from_release" in record and status == "rolled back":
        source, target = _name(record.get("from_release")), _name(record.get("to_release"))
        return (source, "rolled back") if source and source != target else None
    release = record.get("release")
    if not release or "deployed_by" not in record:
        return None
    if status == "success":
        return release, "served"
    phase = str(record.get("failure") or "").split(":", 1)[0]
    if status.startswith("failed") and phase == "analysis":
        return release, "rejected"
    if status.startswith("failed") and (record.get("rolled_back") or phase in JUDGING_PHASES):
        return release, "failed health"
    return None


def verdicts(records: Iterable[dict[str, Any]]) -> dict[str, Verdict]:
    """Each release's last verdict, RECORDS oldest first."""
    found: dict[str, Verdict] = {}
    for record in records:
        judged = judgement(record)
        if judged:
            release, verdict = judged
            by = record.get("deployed_by") or record.get("by") or "?"
            found[release] = Verdict(verdict, str(record.get("completed", "?")), str(by))
    return found


def last_deploys(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each release's newest deploy record (successful or not), RECORDS oldest first."""
    return {r["release"]: r for r in records if r.get("release") and "deployed_by" in r}


def rows(
    releases: list[str],
    serving: str | None,
    schemas: dict[str, str],
    records: list[dict[str, Any]],
) -> list[dict[str, str]]:
    """The ledger of one host: a row per release on disk (RELEASES, folder names), newest
    deploy first; SERVING is the release `current` names, SCHEMAS each release's newest
    migration."""
    judged, deploys = verdicts(records), last_deploys(records)

    def row(release: str) -> dict[str, str]:
        deploy = deploys.get(release, {})
        verdict = judged.get(release)
        return {
            "release": release,
            "serves": "*" if release == serving else "",
            "deployed": str(deploy.get("completed", "-")),
            "by": str(deploy.get("deployed_by", "-")),
            "commit": str(deploy.get("commit") or release.rsplit("-", 1)[-1])[:12],
            "schema": schemas.get(release) or "-",
            "verdict": (verdict.verdict + (" (bad)" if verdict.bad else ""))
            if verdict
            else ("never deployed" if not deploy else "not judged"),
        }

    ledger = [row(r) for r in releases]
    return sorted(ledger, key=lambda x: (x["deployed"] != "-", x["deployed"]), reverse=True)


def table(ledger: list[dict[str, str]]) -> list[str]:
    """The ledger as aligned text lines."""
    columns = ("release", "serves", "deployed", "by", "commit", "schema", "verdict")
    widths = {c: max([len(c)] + [len(r[c]) for r in ledger]) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns).rstrip()]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in columns).rstrip() for r in ledger]
    return lines


def implicit_target(
    candidates: list[str | None], bad: dict[str, Verdict], current: str | None
) -> tuple[str | None, list[str]]:
    """The release a rollback goes back to when none is named: the first of CANDIDATES (what
    each successful deploy replaced, folder paths, newest deploy first; None for a first
    deploy) that is not bad, or is the current one (a rollback run again stays there), and
    the bad ones it passed over, each with why; None when there is nothing left (a first
    deploy, or only bad releases before the current one)."""
    skipped = []
    for release in candidates:
        name = _name(release)
        if name in bad and release != current:
            skipped.append(f"{name}: {bad[name]}")
            continue
        if skipped and release == current:  # nothing good before the bad ones
            return None, skipped
        return release, skipped
    return None, skipped
