"""Production takes only what staging proved, on the lab: one commit built in four places
(three lab hosts and this machine) is the same tarball and, on two app hosts, the same image;
the lab's production with promote_from the lab's staging refuses a release staging never
passed, with nothing changed on any host, takes it once staging passed it, builds nothing
itself, and ships an unproven tarball only with promote_override, whose reason the hosts'
records keep. A plan made, then a migration pushed to the branch: the deploy of that plan is
refused naming it; a new plan applies."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from pyinfra_runs import QUICK, lab_settings, output, pyinfra, report

from lab import apprepo, core
from lab.apprepo import pushed_release
from lab.topology import topology
from tasks import service
from tasks.commands import docker, git
from tasks.commands.pgbackrest import superuser_psql

PRODUCTION = "inventories/lab_production.py"
APP = "/app/monitoring-dashboard-api"


def sh(host, command: str) -> str:
    return core.ssh(host, command, timeout=600).stdout.decode().strip()


def _build_and_pack(run, folder: str, commit: str, repo_url: str) -> str:
    """The deploy's own build and pack commands, run by RUN in FOLDER; the tarball's sha256."""
    release, cache = f"{folder}/v-{commit[:12]}", f"{folder}/repo.git"
    tarball = f"{release}.tar.gz"
    run(f"rm -rf {folder} && mkdir -p {folder}")
    run(git.build_release(repo_url, commit, cache, release, None))
    run(git.pack_release(release, tarball))
    return run(f"sha256sum {tarball}").split()[0]


def _image_id(run, folder: str, commit: str) -> str:
    """The image the deploy makes of that build (Option B), its ID; the image and FOLDER go."""
    release = f"{folder}/v-{commit[:12]}"
    tag = f"mdd-repro:{commit[:12]}"
    config = docker.image_config(service.image_labels(release), "/monitoring-dashboard-api", 8080)
    run(docker.image_load(release, git.SERVICE_BINARY, tag, config))
    found = run(f"docker image inspect -f '{{{{.Id}}}}' {tag}")
    run(f"docker rmi -f {tag} >/dev/null && rm -rf {folder}")
    return found


def test_one_commit_built_in_four_places_is_the_same_tarball_and_image(lab, tmp_path):
    app1, _, repo1 = topology("staging")
    s = lab_settings()
    commit = sh(app1, f"git ls-remote {s.app_repo_url} refs/tags/v2.0.2-slow").split()[0]

    def here(command: str) -> str:
        done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.strip()

    production_app1 = topology("production")[0]
    places = {
        "app1": (lambda c: sh(app1, c), "/tmp/repro-a"),
        "repo1": (lambda c: sh(repo1, c), "/var/tmp/b"),
        "local": (here, str(tmp_path / "c")),
        "production app1": (lambda c: sh(production_app1, c), "/var/tmp/d"),
    }
    digests = {
        name: _build_and_pack(run, folder, commit, s.app_repo_url)
        for name, (run, folder) in places.items()
    }
    assert len(set(digests.values())) == 1, digests
    images = {  # two app hosts, each with its own Docker Engine
        name: _image_id(*places[name][:2], commit) for name in ("app1", "production app1")
    }
    assert len(set(images.values())) == 1 and images["app1"].startswith("sha256:"), images
    for name in ("repo1", "local"):
        places[name][0](f"rm -rf {places[name][1]}")


@pytest.fixture(scope="module")
def promoting(lab, tmp_path_factory):
    """Both lab environments fresh, and a reports and artifacts folder of their own (the ones
    a CI pipeline hands from its staging stage to its production stage)."""
    core.reset("staging", echo=lambda _m: None)
    core.reset("production", echo=lambda _m: None)
    folder = tmp_path_factory.mktemp("pipeline")
    shared = ("--data", f"artifact_dir={folder}/artifacts")
    staging = (
        *shared,
        "--data",
        f"report_dir={folder}/reports",
        "--data",
        "loadtest_enabled=false",
    )
    production = (
        *shared,
        "--data",
        "promote_from=lab",
        "--data",
        f"promote_ledger={folder}/reports",
        *QUICK,
    )
    apps = {h.name: h for h in topology("production") if h.is_app}
    yield staging, production, apps, folder
    shutil.rmtree(folder, ignore_errors=True)
    core.reset("staging", echo=lambda _m: None)  # the plan test's migration 004 goes


def _left_alone(apps) -> dict[str, str]:
    """What a refused deploy must not change on a production app host."""
    return {
        name: sh(h, f"readlink {APP}/current; ls {APP}/releases 2>/dev/null; ls -a {APP} || true")
        for name, h in apps.items()
    }


def _records(h) -> list[dict]:
    text = sh(h, "cat /var/lib/monitoring-dashboard-deploy/deployments.jsonl")
    return [json.loads(line) for line in text.splitlines()]


def test_production_refuses_a_release_staging_never_passed_then_takes_the_one_it_passed(
    promoting,
):
    staging, production, apps, _ = promoting
    before = _left_alone(apps)
    refused = pyinfra("--data", "app_version=v1.9.0", *production, inventory=PRODUCTION)
    text = output(refused)
    assert refused.returncode != 0
    assert "promote_from lab: no deploy of lab passed with release v1.9.0-" in text
    assert "lab never built it" in text and "lab passed (in " in text
    assert _left_alone(apps) == before  # no release, no link, nothing on any app host

    # staging builds it on this machine (build_host local) and passes it, monitoring included
    passed = pyinfra("--data", "app_version=v1.9.0", "--data", "build_host=local", *staging)
    assert passed.returncode == 0, output(passed)[-3000:]
    staged = report(passed)
    assert staged["facts"]["monitor"]["samples"] > 0
    digest = staged["artifact"]["sha256"]
    assert staged["artifact"]["built_on"] == "local"

    promoted = pyinfra("--data", "app_version=v1.9.0", *production, inventory=PRODUCTION)
    text = output(promoted)
    assert promoted.returncode == 0, text[-3000:]
    for name, h in apps.items():
        assert sh(h, "curl -s -m 5 localhost:8080/api/v1/version") == '{"version":"1.9.0"}'
        last = _records(h)[-1]
        assert last["artifact"] == {"sha256": digest, "built_on": "lab's passed deploy"}, name
        # never built here: the build's repository cache and Go's cache do not exist
        assert sh(h, f"test -e {APP}/repo.git && echo built || echo never") == "never", name
    assert report(promoted)["facts"]["preflight"]["promoted_run"]


def test_an_unproven_tarball_ships_only_with_an_override_whose_reason_is_kept(promoting):
    staging, production, apps, _ = promoting
    # staging builds v2.0.0-perf but never watches it (no monitoring window): not passed
    unwatched = pyinfra(
        "--data", "app_version=v2.0.0-perf", "--data", "monitor_duration=0", *staging
    )
    assert unwatched.returncode == 0, output(unwatched)[-3000:]
    digest = report(unwatched)["artifact"]["sha256"]
    before = _left_alone(apps)
    refused = pyinfra("--data", "app_version=v2.0.0-perf", *production, inventory=PRODUCTION)
    text = output(refused)
    assert refused.returncode != 0
    assert f"sha256 looked for: {digest}" in text and "lab passed (in " in text
    assert "v1.9.0-" in text.split("lab passed (in ", 1)[1]  # what staging did pass
    assert _left_alone(apps) == before

    reason = "hotfix 812 verified by hand"
    overridden = pyinfra(
        "--data",
        "app_version=v2.0.0-perf",
        "--data",
        f"promote_override={reason}",
        *production,
        inventory=PRODUCTION,
    )
    assert overridden.returncode == 0, output(overridden)[-3000:]
    assert "shipping it anyway (promote_override: hotfix 812 verified by hand)" in output(
        overridden
    )
    for name, h in apps.items():
        last = _records(h)[-1]
        assert last["artifact"]["sha256"] == digest, name
        assert last["facts"]["preflight"]["promote_override"] == reason, name
        assert sh(h, f"test -e {APP}/repo.git && echo built || echo never") == "never", name


MARKER = f"{apprepo.MIGRATIONS}/004_plan_marker.sql"


def _plan(*args: str) -> str:
    made = pyinfra(*args, script="plan.py")
    assert made.returncode == 0, output(made)[-3000:]
    return output(made).split("--> plan: ", 1)[1].split()[0]


def test_a_plan_refuses_a_migration_pushed_after_it_and_a_new_plan_applies(promoting):
    app1, db1, _ = topology("staging")
    marker = superuser_psql("SELECT to_regclass('plan_marker')", lab_settings().db_name)
    args = ("--data", "app_version=plan-test", *QUICK)
    with pushed_release("plan-test", "v2.0.0-perf", {"PLAN.txt": "reviewed\n"}):
        reviewed = _plan(*args)
    serving = sh(app1, f"readlink {APP}/current || true")
    migration = "CREATE TABLE IF NOT EXISTS plan_marker (id bigint PRIMARY KEY);\n"
    with pushed_release("plan-test", "v2.0.0-perf", {"PLAN.txt": "reviewed\n", MARKER: migration}):
        refused = pyinfra(*args, "--data", f"deploy_plan={reviewed}")
        text = output(refused)
        assert refused.returncode != 0
        assert f"deploy_plan {reviewed}: the deploy would not do what was approved" in text
        assert "migration 004_plan_marker.sql: new since the plan" in text
        assert "commit: planned " in text
        assert sh(app1, f"readlink {APP}/current || true") == serving
        assert sh(db1, marker) == ""  # the migration never ran

        again = _plan(*args)
        assert again != reviewed
        applied = pyinfra(*args, "--data", f"deploy_plan={again}")
        assert applied.returncode == 0, output(applied)[-3000:]
    assert report(applied)["facts"]["preflight"]["deploy_plan"] == again
    record = json.loads(
        sh(app1, "tail -n 1 /var/lib/monitoring-dashboard-deploy/deployments.jsonl")
    )
    assert record["facts"]["preflight"]["deploy_plan"] == again
    assert record["release"].startswith("plan-test-")
    assert sh(db1, marker) == "plan_marker"
