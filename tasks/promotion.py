"""The release artifact between environments. Each packed release is kept on the deploying
machine under its sha256 (`artifact_dir/<release>.<sha256>.tar.gz`); with `promote_from`, a
deploy ships only a tarball that a deploy of that environment passed with, read from that
environment's run reports (`promote_ledger`), and builds nothing.

A deploy passed when every host of its run succeeded, each ran its monitoring window and all
shipped the same sha256. Reading the reports and the tarballs happens here, on the deploying
machine; no host is touched.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.config import Settings
from tasks.remote import DeployError

ARTIFACTS_KEPT = 10  # tarballs kept in artifact_dir, newest first
SHOWN = 5  # passed deploys named in a refusal


@dataclass(frozen=True)
class Passed:
    """A deploy of the environment promoted from that passed every phase with one artifact."""

    release: str
    sha256: str
    run: str  # its report's run stamp


@dataclass(frozen=True)
class Promoted:
    """The tarball this deploy ships, and the passed deploy it was taken on (None: overridden)."""

    path: Path
    sha256: str
    passed: Passed | None


def sha256_of(path: Path) -> str:
    """A local file's sha256, read a megabyte at a time (tarballs here, dumps in backup.py)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def keep(folder: str, release: str, tarball: Path, sha256: str) -> Path:
    """TARBALL kept as FOLDER/<release>.<sha256>.tar.gz (written under a temporary name, then
    renamed); beyond the ARTIFACTS_KEPT newest, older tarballs go."""
    where = Path(folder)
    where.mkdir(parents=True, exist_ok=True)
    kept = where / f"{release}.{sha256}.tar.gz"
    if not kept.exists():
        partial = kept.with_name(kept.name + ".partial")
        shutil.copyfile(tarball, partial)
        partial.replace(kept)
    kept.touch()
    for old in sorted(where.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)[:-ARTIFACTS_KEPT]:
        old.unlink(missing_ok=True)
    return kept


def kept(folder: str, release: str) -> list[tuple[Path, str]]:
    """The tarballs of RELEASE in FOLDER with the sha256 their names give, newest first."""
    found = []
    for path in Path(folder).glob(f"{release}.*.tar.gz"):
        digest = path.name[len(release) + 1 : -len(".tar.gz")]
        if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
            found.append((path, digest))
    return sorted(found, key=lambda pair: pair[0].stat().st_mtime, reverse=True)


def passed_run(report: dict[str, Any]) -> Passed | None:
    """The deploy a JSON report describes, when it passed every phase with one artifact."""
    hosts = list((report.get("hosts") or {}).values())
    if not hosts:
        return None
    digests = {((h.get("artifact") or {}).get("sha256")) for h in hosts}
    releases = {h.get("release") for h in hosts}
    for h in hosts:
        watched = (h.get("facts") or {}).get("monitor") or {}
        if h.get("status") != "success" or not watched.get("samples"):
            return None
    if len(digests) != 1 or None in digests or len(releases) != 1:
        return None
    return Passed(str(releases.pop()), str(digests.pop()), str(report.get("run", "")))


def passed(ledger: str, env: str) -> list[Passed]:
    """ENV's deploys that passed, oldest first, from the JSON reports in the folder LEDGER."""
    found = []
    for path in sorted(Path(ledger).glob(f"{env}-*.json")):
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a report being written, or not a report
        if isinstance(report, dict) and report.get("environment") == env:
            run = passed_run(report)
            if run is not None:
                found.append(run)
    return found


def checked(path: Path, sha256: str) -> Path:
    """PATH, when its bytes have SHA256; a DeployError naming it otherwise."""
    actual = sha256_of(path)
    if actual != sha256:
        raise DeployError(
            f"{path} is not the tarball its name says (its sha256 is {actual}): a damaged copy; "
            "fetch it again"
        )
    return path


def choose(s: Settings, release: str) -> Promoted:
    """The tarball of RELEASE that a deploy of promote_from passed with (its bytes checked
    against its sha256); with promote_override, the newest tarball of RELEASE. Otherwise a
    DeployError saying which sha256 was looked for and what promote_from passed."""
    tarballs = kept(s.artifact_dir, release)
    runs = passed(s.promote_ledger, s.promote_from)
    good = {run.sha256: run for run in runs}
    for path, digest in tarballs:
        if digest in good:
            return Promoted(checked(path, digest), digest, good[digest])
    if tarballs and s.promote_override:
        path, digest = tarballs[0]
        return Promoted(checked(path, digest), digest, None)
    looked = ", ".join(digest for _, digest in tarballs) or (
        f"none ({s.artifact_dir}/ holds no tarball of {release}: {s.promote_from} never built it)"
    )
    shown = "; ".join(f"{r.release} sha256 {r.sha256} (run {r.run})" for r in runs[-SHOWN:])
    hint = f"deploy {release} to {s.promote_from} first"
    if tarballs:
        hint += ', or --data promote_override="reason" ships it anyway'
    raise DeployError(
        f"promote_from {s.promote_from}: no deploy of {s.promote_from} passed with release "
        f"{release}; sha256 looked for: {looked}; {s.promote_from} passed "
        f"(in {s.promote_ledger}/): {shown or 'nothing'}; {hint}"
    )
