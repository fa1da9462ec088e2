"""The reference service's git repository, as the lab's app hosts `git pull` it.

`lab/app/` holds the source of v2.0.0-perf (the checklist's commit). The repository gets one
commit per version, each the same tree with a release's own differences, plus `vendor/` with
Debian's packaged Go libraries (no module proxy is reachable, so `go build` stays offline).
It is served read-only by `git daemon` on the lab bridge.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from lab.paths import REPO_DIR, STATE_DIR
from lab.topology import BRIDGE_ADDRESS

APP_SOURCE = REPO_DIR / "lab" / "app"
OVERLAYS = REPO_DIR / "lab" / "releases"  # <tag>/<path>: a release's files over APP_SOURCE
REPO_NAME = "monitoring-dashboard-api.git"
GIT_PORT = 9418
MIGRATIONS = "internal/infrastructure/persistence/postgres/migrations"
RELEASE_FILE = "cmd/monitoring-dashboard-api/release.go"
# Debian package sources (inside the lab's base root) vendored as Go modules.
VENDORED = {
    "github.com/lib/pq": ("v1.10.7", "1.13", ["", "oid", "scram"]),
    "github.com/gomodule/redigo": ("v1.8.3", "1.14", ["redis"]),
}


def _release_go(
    version: str, cache: bool, health_query: str, delay_ms: int = 0, fail_per_mille: int = 0
) -> str:
    return (
        "package main\n\n// What distinguishes one release of the service from another.\n"
        "const (\n"
        f'\tVersion = "{version}"\n'
        f"\tcacheSupported = {'true' if cache else 'false'}\n"
        f'\thealthQuery = "{health_query}"\n'
        f"\thistoryDelayMS = {delay_ms}\n"
        f"\thistoryFailPerMille = {fail_per_mille}\n"
        ")\n"
    )


def _overlay(tag: str) -> dict[str, str | None]:
    """The files of OVERLAYS/TAG, by their path in the repository."""
    base = OVERLAYS / tag
    return {str(f.relative_to(base)): f.read_text() for f in sorted(base.rglob("*")) if f.is_file()}


@dataclass(frozen=True)
class Release:
    tag: str
    message: str
    files: dict[str, str | None] = field(default_factory=dict)  # path -> content, None = absent


RELEASES = [
    Release(
        "v1.9.0",
        "v1.9.0: metrics history from PostgreSQL",
        {
            RELEASE_FILE: _release_go("1.9.0", False, "SELECT 1 FROM metrics LIMIT 1"),
            f"{MIGRATIONS}/003_covering_indexes_optimization.sql": None,
            f"{MIGRATIONS}/003_covering_indexes_optimization.down.sql": None,
        },
    ),
    Release("v2.0.0-perf", "feat: add performance optimizations for 100+ RPS support"),
    Release(
        "v2.0.1-broken",
        "fix: read health from metrics_v2 (broken: no such table)",
        {
            RELEASE_FILE: _release_go("2.0.1-broken", True, "SELECT 1 FROM metrics_v2 LIMIT 1"),
        },
    ),
    Release(
        "v2.1.0",
        "feat: metrics.host renamed hostname (expand 004-005, contract 006)",
        {
            RELEASE_FILE: _release_go(
                "2.1.0", True, "SELECT 1 FROM metrics WHERE hostname IS NOT NULL LIMIT 1"
            ),
            **_overlay("v2.1.0"),
            "internal/store/store.go": (APP_SOURCE / "internal/store/store.go")
            .read_text()
            .replace("SELECT recorded_at, host, value", "SELECT recorded_at, hostname, value"),
        },
    ),
    # Worse, not broken: both pass every threshold of the checklist (p95 < 500 ms, errors <
    # 1%); only a comparison with the hosts still on the old release catches them.
    Release(
        "v2.0.2-slow",
        "perf: history answers carry more detail (regression: 15 ms slower each)",
        {RELEASE_FILE: _release_go("2.0.2-slow", True, "SELECT 1 FROM metrics LIMIT 1", 15)},
    ),
    Release(
        "v2.0.3-flaky",
        "fix: retry Redis reads (regression: 0.8% of history answers are 500)",
        {RELEASE_FILE: _release_go("2.0.3-flaky", True, "SELECT 1 FROM metrics LIMIT 1", 0, 8)},
    ),
]
MAIN_TAG = "v2.0.0-perf"


def git_dir() -> Path:
    return STATE_DIR / "git"


def repo_url() -> str:
    return f"git://{BRIDGE_ADDRESS}:{GIT_PORT}/{REPO_NAME}"


def _source_digest(base: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(APP_SOURCE.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(APP_SOURCE)).encode() + path.read_bytes())
    for release in RELEASES:
        digest.update(repr(release).encode())
    digest.update(str(base).encode())
    return digest.hexdigest()


def _vendor(tree: Path, base: Path) -> None:
    lines = []
    for module, (version, go_version, packages) in sorted(VENDORED.items()):
        lines += [f"# {module} {version}", f"## explicit; go {go_version}"]
        for package in packages:
            name = f"{module}/{package}".rstrip("/")
            source = base / "usr/share/gocode/src" / name
            target = tree / "vendor" / name
            target.mkdir(parents=True, exist_ok=True)
            for f in source.iterdir():
                if f.suffix == ".go" and not f.name.endswith("_test.go") or f.name == "LICENSE":
                    shutil.copy2(f, target / f.name)
            lines.append(name)
    (tree / "vendor" / "modules.txt").write_text("\n".join(lines) + "\n")


def _git(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=60, env=env
    ).stdout.strip()


def ensure_repo(base: Path, echo=print) -> Path:
    """Build the bare repository when the source changed; commits are reproducible."""
    bare = git_dir() / REPO_NAME
    digest = _source_digest(base)
    stamp = git_dir() / "source-digest"
    if bare.exists() and stamp.exists() and stamp.read_text() == digest:
        return bare
    echo(f"building the reference service's repository in {bare}")
    if bare.exists():
        shutil.rmtree(bare)
    bare.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Monitoring Team",
        "GIT_AUTHOR_EMAIL": "team@example.invalid",
        "GIT_COMMITTER_NAME": "Monitoring Team",
        "GIT_COMMITTER_EMAIL": "team@example.invalid",
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "work"
        _git(["init", "-q", "-b", "build", str(work)], Path(tmp))
        for day, release in enumerate(RELEASES, start=1):
            for child in work.iterdir():
                if child.name != ".git":
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
            shutil.copytree(APP_SOURCE, work, dirs_exist_ok=True)
            _vendor(work, base)
            for rel, content in release.files.items():
                if content is None:
                    (work / rel).unlink()
                else:
                    (work / rel).write_text(content)
            stamp_env = {
                **env,
                "GIT_AUTHOR_DATE": f"2026-02-0{day}T12:00:00Z",
                "GIT_COMMITTER_DATE": f"2026-02-0{day}T12:00:00Z",
            }
            _git(["add", "-A"], work)
            _git(["commit", "-q", "-m", release.message], work, stamp_env)
            _git(["tag", release.tag], work)
        _git(["init", "-q", "--bare", "-b", "main", str(bare)], Path(tmp))
        _git(["push", "-q", "--tags", str(bare), f"{MAIN_TAG}^{{commit}}:refs/heads/main"], work)
    (bare / "git-daemon-export-ok").touch()
    stamp.write_text(digest)
    return bare


def daemon_pid_file() -> Path:
    return git_dir() / "daemon.pid"


def daemon_running() -> bool:
    try:
        os.kill(int(daemon_pid_file().read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


def ensure_daemon() -> None:
    """Serve the repositories read-only on the lab bridge (git://)."""
    if daemon_running():
        return
    subprocess.run(
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--detach",
            "--max-connections=0",  # 32 app hosts may fetch at once (its default stops at 32)
            f"--base-path={git_dir()}",
            f"--listen={BRIDGE_ADDRESS}",
            f"--port={GIT_PORT}",
            f"--pid-file={daemon_pid_file()}",
            str(git_dir()),
        ],
        check=True,
        timeout=30,
    )


def stop_daemon() -> None:
    if daemon_running():
        os.kill(int(daemon_pid_file().read_text()), 15)
    daemon_pid_file().unlink(missing_ok=True)


@contextmanager
def pushed_release(branch: str, base: str, files: dict[str, str]) -> Iterator[str]:
    """A branch BRANCH of the reference service's repository: BASE (a tag) with FILES (path:
    content) written over it (over a branch a killed run left), for the block; removed
    afterwards. Yields the branch name."""
    bare = git_dir() / REPO_NAME
    with tempfile.TemporaryDirectory() as tmp:
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@lab", "-C", tmp]
        subprocess.run(["git", "clone", "-q", str(bare), tmp], check=True, timeout=60)
        subprocess.run([*git, "checkout", "-q", base], check=True)
        for path, content in files.items():
            (Path(tmp) / path).write_text(content)
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-qm", f"{branch} over {base}"], check=True)
        subprocess.run([*git, "push", "-qf", "origin", f"HEAD:refs/heads/{branch}"], check=True)
    try:
        yield branch
    finally:
        subprocess.run(["git", "-C", str(bare), "branch", "-q", "-D", branch], check=True)
