"""The artifact store and the promotion gate (tasks/promotion.py) on real files: what counts
as a passed deploy, which tarball is chosen, what a refusal says, a damaged copy, pruning."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from fake_remote import FakeRemote

from tasks import promotion
from tasks.config import validate
from tasks.hosts import builds_here
from tasks.remote import DeployError

S, _ = validate(
    {"deploy_env": "prod", "app_repo_url": "git://h/r.git", "db_host": "db1"}, {"DB_PASSWORD": "x"}
)


def host_record(sha: str | None, status="success", samples=5, release="v1-abc") -> dict:
    return {
        "status": status,
        "release": release,
        "artifact": {"sha256": sha, "built_on": "app1"} if sha else None,
        "facts": {"monitor": {"samples": samples}} if samples is not None else {},
    }


def write_report(folder: Path, env: str, run: str, hosts: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    data = {"environment": env, "run": run, "hosts": hosts}
    (folder / f"{env}-{run}.json").write_text(json.dumps(data))


def tarball(folder: Path, release: str, content: bytes) -> str:
    digest = hashlib.sha256(content).hexdigest()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{release}.{digest}.tar.gz").write_bytes(content)
    return digest


@pytest.mark.parametrize(
    ("hosts", "passes"),
    [
        ({"app1": host_record("a" * 64)}, True),
        ({"app1": host_record("a" * 64), "app2": host_record("a" * 64)}, True),
        ({"app1": host_record("a" * 64), "app2": host_record("a" * 64, "failed")}, False),
        ({"app1": host_record("a" * 64, samples=0)}, False),  # the window never watched
        ({"app1": host_record("a" * 64, samples=None)}, False),
        ({"app1": host_record("a" * 64), "app2": host_record("b" * 64)}, False),  # two builds
        ({"app1": host_record(None)}, False),
        ({}, False),
    ],
)
def test_a_deploy_passed_when_every_host_succeeded_watched_and_shipped_one_artifact(hosts, passes):
    found = promotion.passed_run({"environment": "staging", "run": "r1", "hosts": hosts})
    assert (found is not None) is passes
    if passes:
        assert found == promotion.Passed("v1-abc", "a" * 64, "r1")


def test_only_the_named_environment_s_reports_count(tmp_path):
    ledger = tmp_path / "reports"
    write_report(ledger, "lab", "20260101-000000", {"app1": host_record("a" * 64)})
    # lab-production-*.json also matches lab-*.json: its environment field tells them apart
    write_report(ledger, "lab-production", "20260101-000001", {"app1": host_record("b" * 64)})
    (ledger / "lab-20260101-000002.json").write_text("{torn")
    (ledger / "lab-20260101-000003-drift.json").write_text(json.dumps({"differences": []}))
    assert [p.sha256 for p in promotion.passed(str(ledger), "lab")] == ["a" * 64]


def settings(tmp_path: Path, **changes) -> object:
    return replace(
        S,
        artifact_dir=str(tmp_path / "artifacts"),
        promote_ledger=str(tmp_path / "reports"),
        promote_from="staging",
        **changes,
    )


def test_the_tarball_staging_passed_is_chosen_and_checked(tmp_path):
    digest = tarball(tmp_path / "artifacts", "v1-abc", b"release bytes")
    write_report(tmp_path / "reports", "staging", "r7", {"app1": host_record(digest)})
    chosen = promotion.choose(settings(tmp_path), "v1-abc")
    assert chosen.sha256 == digest and chosen.passed and chosen.passed.run == "r7"


def test_a_refusal_names_the_sha256_looked_for_and_what_staging_passed(tmp_path):
    other = tarball(tmp_path / "artifacts", "v0-old", b"old release")
    write_report(
        tmp_path / "reports", "staging", "r1", {"app1": host_record(other, release="v0-old")}
    )
    digest = tarball(tmp_path / "artifacts", "v1-abc", b"unproven")
    with pytest.raises(DeployError) as refused:
        promotion.choose(settings(tmp_path), "v1-abc")
    text = str(refused.value)
    assert f"sha256 looked for: {digest}" in text
    assert f"staging passed (in {tmp_path}/reports/): v0-old sha256 {other} (run r1)" in text
    assert 'promote_override="reason"' in text
    with pytest.raises(DeployError) as never:
        promotion.choose(settings(tmp_path), "v2-new")
    assert "holds no tarball of v2-new: staging never built it" in str(never.value)
    assert "promote_override" not in str(never.value)  # nothing to ship, even overridden


def test_an_override_ships_the_newest_unproven_tarball(tmp_path):
    digest = tarball(tmp_path / "artifacts", "v1-abc", b"unproven")
    chosen = promotion.choose(settings(tmp_path, promote_override="incident 4"), "v1-abc")
    assert chosen.sha256 == digest and chosen.passed is None


def test_a_damaged_copy_is_refused(tmp_path):
    digest = tarball(tmp_path / "artifacts", "v1-abc", b"release bytes")
    write_report(tmp_path / "reports", "staging", "r7", {"app1": host_record(digest)})
    (tmp_path / "artifacts" / f"v1-abc.{digest}.tar.gz").write_bytes(b"release byteZ")
    with pytest.raises(DeployError, match="is not the tarball its name says"):
        promotion.choose(settings(tmp_path), "v1-abc")


def test_the_store_keeps_the_newest_tarballs_under_their_sha256(tmp_path):
    source = tmp_path / "built.tar.gz"
    for n in range(promotion.ARTIFACTS_KEPT + 2):
        source.write_bytes(f"release {n}".encode())
        digest = promotion.sha256_of(source)
        kept = promotion.keep(str(tmp_path / "store"), f"v{n}-abc", source, digest)
        os.utime(kept, (1_000_000 + n, 1_000_000 + n))
    names = sorted(p.name.split(".")[0] for p in (tmp_path / "store").glob("*.tar.gz"))
    assert len(names) == promotion.ARTIFACTS_KEPT and "v0-abc" not in names
    assert promotion.kept(str(tmp_path / "store"), "v11-abc")[0][1] == digest


@pytest.mark.parametrize(
    ("changes", "builders"),
    [
        ({}, {"app1"}),  # the migration host, as the checklist did
        ({"app_build": "each"}, {"app1", "app2"}),
        ({"build_host": "local"}, set()),  # this machine: no app host runs go build
        ({"build_host": "repo1"}, set()),
        ({"build_host": "app2"}, {"app2"}),
        ({"promote_from": "staging"}, set()),  # nothing is built at all
        ({"promote_from": "staging", "app_build": "each"}, set()),
    ],
)
def test_which_app_hosts_run_go_build(changes, builders):
    s = replace(S, deploy_migration_host="app1", **changes)
    hosts = [FakeRemote("app1"), FakeRemote("app2")]
    assert {h.name for h in hosts if builds_here(h, s)} == builders
