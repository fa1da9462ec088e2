"""Replacing a file the service reads, so that a failed step can put it back: the new content
is checked as a candidate beside the file, the old content is kept in the run's folder of
replaced files, and the failure path moves every kept file back to where it came from."""

from __future__ import annotations

from pathlib import PurePosixPath

from tasks.commands.shell import q


def candidate(path: str) -> str:
    """Where the new content of PATH waits, checked, before it is renamed into place."""
    return f"{path}.upload"


def kept_copy(path: str, folder: str) -> str:
    """Where FOLDER keeps the previous content of PATH (its absolute path below FOLDER)."""
    return f"{folder.rstrip('/')}/{path.lstrip('/')}"


def keep_previous(path: str, folder: str) -> str:
    """Copy PATH (mode and owner kept) into FOLDER, unless FOLDER has it already: the first
    content a run replaced is the one a failure puts back. Nothing to do when PATH is new."""
    kept = kept_copy(path, folder)
    parent = str(PurePosixPath(kept).parent)
    return (
        f"if [ -f {q(path)} ] && [ ! -e {q(kept)} ]; then "
        f"(umask 077 && mkdir -p {q(parent)}) && cp -p {q(path)} {q(kept)}; fi"
    )


def restore_previous(folder: str) -> str:
    """Move every file FOLDER keeps back to its path, then remove FOLDER; prints each path
    put back, one a line (nothing when FOLDER holds none)."""
    f = q(folder.rstrip("/"))
    return (
        f"if [ -d {f} ]; then cd {f} && find . -type f | sort | while IFS= read -r kept; do "
        'path="/${kept#./}"; mv -f "$kept" "$path" && printf \'%s\\n\' "$path" || exit 1; '
        f"done && cd / && rm -rf {f}; fi"
    )


def forget_previous(folder: str) -> str:
    """The run went well (or starts): FOLDER's copies are no longer needed."""
    return f"rm -rf {q(folder.rstrip('/'))}"


def checked(check: str, candidate_path: str) -> str:
    """Run CHECK on the candidate; when it fails, remove the candidate and fail with the
    check's own output (the file in place is left as it was)."""
    return f"( {check} ) || {{ rc=$?; rm -f {q(candidate_path)}; exit $rc; }}"


def haproxy_check(config: str) -> str:
    """HAProxy's own check of the configuration file CONFIG (`haproxy -c`)."""
    return f"haproxy -c -f {q(config)}"


# systemd-analyze verify also requires each ExecStart= program to exist; a slot's or the
# service's binary comes with the release, which the deploy installs after the unit
MISSING_BINARY = "is not executable: No such file or directory"


def unit_verify(unit_file: str, unit_name: str) -> str:
    """systemd's own check of UNIT_FILE as the unit UNIT_NAME (systemd-analyze verify reads a
    unit by its name, so the file is checked under that name in a private folder). Fails on
    any problem it reports, a warning included, but the release's binary not there yet."""
    return (
        "d=$(mktemp -d) && trap 'rm -rf \"$d\"' EXIT && "
        f'cp {q(unit_file)} "$d"/{q(unit_name)} && '
        f'out=$(systemd-analyze verify --man=no "$d"/{q(unit_name)} 2>&1); '
        f"problems=$(printf '%s\\n' \"$out\" | grep -v -F {q(MISSING_BINARY)} | grep .); "
        'if [ -n "$problems" ]; then printf \'%s\\n\' "$problems" >&2; exit 1; fi'
    )
