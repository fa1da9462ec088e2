"""git and go: the release fetched, built, shipped between hosts, switched and pruned."""

from __future__ import annotations

import re

from tasks.commands.shell import LOW_PRIORITY, q

SERVICE_BINARY = "bin/monitoring-dashboard-api"
MAIN_PACKAGE = "./cmd/monitoring-dashboard-api"


def release_id(ref: str, commit: str) -> str:
    """A release folder name: the ref made file-safe, then the commit's first 12 digits."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", ref).strip("._-") or "ref"
    return f"{safe}-{commit[:12]}"


def ls_remote(repo_url: str, ref: str) -> str:
    """Resolve REF on the remote: prints `<sha>\\t<name>` lines (peeled tags end in ^{})."""
    return f"git ls-remote {q(repo_url)} {q(ref)} {q('refs/tags/' + ref + '^{}')}"


def parse_ls_remote(output: str, ref: str) -> str | None:
    """The commit REF names: a peeled tag first, then an exact tag or branch, then a SHA."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 2:
            found[parts[1]] = parts[0]
    for name in (f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}", f"refs/heads/{ref}", ref):
        if name in found:
            return found[name]
    if re.fullmatch(r"[0-9a-f]{40}", ref):
        return ref
    return None


def build_release(repo_url: str, commit: str, cache: str, target: str, user: str | None) -> str:
    """Fetch COMMIT into a bare cache, export it into TARGET and `go build` there (at the
    lowest CPU and I/O priority: the host may serve), owned by root and USER's group (None:
    left as built, on the deploying machine).

    The cache follows the repository, tags too (a tag moved there moves here: git refuses
    that without --force). The release appears under its final name only when the build
    succeeded; a failed build leaves no partial folder behind. The binary is the same bytes
    wherever one Go version builds the commit: no paths (-trimpath), no VCS stamp.
    """
    partial = f"{target}.partial"
    gocache = f"{cache}/gocache"
    return " && ".join(
        [
            "set -e",
            f"partial={q(partial)}",
            "trap 'rm -rf \"$partial\"' EXIT",  # a failed build (a full disk) leaves nothing
            f"test -d {q(cache)} || git init -q --bare {q(cache)}",
            f"git -C {q(cache)} fetch -q --force --tags {q(repo_url)} '+refs/heads/*:refs/heads/*'",
            f"git -C {q(cache)} cat-file -e {q(commit + '^{commit}')}",
            f"rm -rf {q(partial)}",
            f"mkdir -p {q(partial)}",
            f"git -C {q(cache)} archive {q(commit)} | tar -x -C {q(partial)}",
            f"echo {q(commit)} > {q(partial + '/REVISION')}",
            f"cd {q(partial)}",
            f"CGO_ENABLED=0 GOFLAGS=-mod=vendor GOPROXY=off GOCACHE={q(gocache)} "
            f"{LOW_PRIORITY} go build -trimpath -buildvcs=false -o {SERVICE_BINARY} {MAIN_PACKAGE}",
            *([f"chown -R root:{q(user)} {q(partial)}"] if user else []),
            f"mv -T {q(partial)} {q(target)}",
        ]
    )


def commit_time(release_dir: str) -> str:
    """A shell expression: the release's commit time in epoch seconds, read from its go.mod,
    which `git archive` dated with it (and a received release's tarball, below, kept)."""
    return f"$(stat -c %Y {q(release_dir + '/go.mod')})"


def pack_release(release_dir: str, tarball: str) -> str:
    """The built release folder as one gzipped tarball (its name inside: the folder's), the
    same bytes wherever the same binary was built: entries in name order, owned by 0:0,
    without group or other write, every time the commit's, no name or time in the gzip
    header; at the lowest CPU and I/O priority. A release received as such a tarball packs
    to the same bytes again."""
    parent, name = release_dir.rsplit("/", 1)
    if not tarball.endswith(".gz"):
        raise ValueError(f"{tarball}: the tarball's name ends in .gz")
    tar = tarball[: -len(".gz")]
    return " && ".join(
        [
            "umask 077",
            f"epoch={commit_time(release_dir)}",
            f"{LOW_PRIORITY} tar -C {q(parent)} --sort=name --mtime=@$epoch --owner=0 --group=0 "
            f"--numeric-owner --mode=go-w -cf {q(tar)} {q(name)}",
            f"{LOW_PRIORITY} gzip -n -f {q(tar)}",
        ]
    )


def unpack_release(tarball: str, sha256: str, target: str, user: str) -> str:
    """Check TARBALL against SHA256, unpack it as TARGET (under a .partial name until
    complete), owned like a release built here; the tarball is removed either way."""
    partial = f"{target}.partial"
    return " && ".join(
        [
            "set -e",
            f"tarball={q(tarball)}",
            "trap 'rm -f \"$tarball\"' EXIT",
            f"echo {q(sha256 + '  ' + tarball)} | sha256sum -c --quiet",
            f"rm -rf {q(partial)}",
            f"mkdir -p {q(partial)}",
            f"{LOW_PRIORITY} tar -xzf {q(tarball)} -C {q(partial)} --strip-components=1",
            f"chown -R root:{q(user)} {q(partial)}",
            f"mv -T {q(partial)} {q(target)}",
        ]
    )


def cat_files(folder: str, pattern: str, mark: str) -> str:
    """Every file of FOLDER matching PATTERN, each after a line `MARK<file name>` and ending
    in exactly one newline (one round trip instead of one per file); fails if FOLDER is
    missing."""
    return (
        f'cd {q(folder)} && for f in {pattern}; do [ -f "$f" ] || continue; '
        f"printf '%s%s\\n' {q(mark)} \"$f\"; sed -e '$a\\' -- \"$f\"; done"
    )


def git_cat_files(repo_url: str, cache: str, commit: str, folder: str, mark: str) -> str:
    """Like cat_files, for the *.sql files of FOLDER at COMMIT: read from the bare repository
    CACHE when it has COMMIT, else fetched into a temporary repository (borrowing CACHE's
    objects) that is removed afterwards. Nothing on the host changes: what a release would
    hold, before it is built."""
    spec = f'"$commit":{q(folder)}'
    return "; ".join(
        [
            "set -e",
            f"commit={q(commit)}",
            f"repo={q(cache)}",
            "tmp=$(mktemp -d) && trap 'rm -rf \"$tmp\"' EXIT",
            f'if ! git -C "$repo" cat-file -e "$commit^{{commit}}" 2>/dev/null; then '
            'git init -q --bare "$tmp/repo"; '
            f'if [ -d "$repo/objects" ]; then echo "$repo/objects" '
            '> "$tmp/repo/objects/info/alternates"; fi; '
            f"git -C \"$tmp/repo\" fetch -q --tags {q(repo_url)} '+refs/heads/*:refs/heads/*'; "
            'repo="$tmp/repo"; fi',
            f"git -C \"$repo\" ls-tree --name-only {spec} | grep '\\.sql$' | while read -r f; do "
            f"printf '%s%s\\n' {q(mark)} \"$f\"; "
            f'git -C "$repo" show "$commit":{q(folder)}/"$f" | sed -e \'$a\\\'; done',
        ]
    )


def switch_current(current: str, target: str) -> str:
    """Point CURRENT at TARGET atomically (a new link renamed over the old one)."""
    tmp = f"{current}.new"
    return f"ln -sfn {q(target)} {q(tmp)} && mv -T {q(tmp)} {q(current)}"


def prune_releases(releases: str, keep: int, protect: list[str]) -> str:
    """Remove all but the KEEP newest releases, never one named in PROTECT, and any .partial."""
    excludes = " ".join(f"-e {q(p)}" for p in protect)
    return (
        f"cd {q(releases)} && rm -rf -- *.partial && ls -1t | grep -v -x -F {excludes} "
        f"| tail -n +{max(1, keep - len(protect) + 1)} | xargs -r rm -rf --"
    )
