"""Reading what the deploy keeps on an app host in one command: its releases with their
schema, where `current` points, the newest deployment records, the manifests."""

from __future__ import annotations

from tasks.commands.shell import q, read_link


def releases_and_records(
    releases: str, migrate_dir: str, current: str, records: str, newest: int
) -> str:
    """Prints `<release> <newest migration's number>` per folder of RELEASES (migrations
    under MIGRATE_DIR of each; half-built `.partial` ones left out), `=`, where the link
    CURRENT points, `=`, the NEWEST last lines of the RECORDS file."""
    return (
        f"for r in $(ls -1 {q(releases)} 2>/dev/null); do "
        f'case "$r" in *.partial) continue;; esac; '
        f'm=$(ls -1 {q(releases)}/"$r"/{q(migrate_dir)} 2>/dev/null '
        "| grep '^[0-9].*\\.sql$' | grep -v '\\.down\\.sql$' | sort | tail -n 1); "
        'echo "$r ${m%%_*}"; done; '
        f"echo =; {read_link(current)}; "
        f"echo =; tail -n {int(newest)} {q(records)} 2>/dev/null || true"
    )


def manifests(folder: str) -> str:
    """Prints `<path>\t<its JSON on one line>` for each manifest of FOLDER, newest first."""
    return (
        f"for f in $(ls -1 {q(folder)}/2*.json 2>/dev/null | sort -r); do "
        'printf "%s\\t" "$f"; tr -d "\\n" < "$f"; echo; done'
    )
