"""Option C (`release_method: helm`) on the lab's staging, as far as this machine can take it.

No Kubernetes cluster can run here, so `helm` and `kubectl` are stand-ins (tests/integration/
kube_standin.py) that record their arguments and stdin and answer as Helm 3 and kubectl do.
This proves the deploy's side: the database work runs for real on the lab, the commands run
are exactly those `--dry` printed, the passwords reach kubectl's stdin and nothing else, a
second run changes nothing, a rollback asks Helm for the previous revision. It cannot prove
that a cluster accepts the chart: docs/design.md says so."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import pytest
from pyinfra_runs import QUICK, output, pyinfra, report

from lab import core

STANDIN = Path(__file__).with_name("kube_standin.py")
REAL_HELM = Path(__file__).parents[2] / ".venv/helm/4.1.4/helm"


@pytest.fixture(scope="module")
def kube(lab, tmp_path_factory):
    """A PATH with the stand-ins first, their log, a kubeconfig and the deploy's arguments."""
    root = tmp_path_factory.mktemp("kube")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    for tool in ("helm", "kubectl"):
        (bin_dir / tool).write_text(f'#!/bin/sh\nexec {sys.executable} {STANDIN} {tool} "$@"\n')
        (bin_dir / tool).chmod(0o755)
    kubeconfig = root / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    args = (
        *("--data", "release_method=helm", "--data", "redis_mode=external"),
        *("--data", "redis_host=redis-cache", "--data", f"helm_kubeconfig={kubeconfig}"),
        *("--data", "helm_image=registry.example.com/team/monitoring-dashboard-api"),
        *("--data", "helm_namespace=staging"),
    )
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "KUBE_STANDIN_STATE": str(root / "state.json"),
        "MDD_LAB_REDIS_PASSWORD": "helm-redis-pw",
        "KUBE_STANDIN_HELM_VERSION": "v4.1.4+g05fa379",
        "KUBE_STANDIN_REAL_HELM": str(REAL_HELM),
    }
    assert REAL_HELM.is_file(), f"{REAL_HELM} is missing: `make deps` installs it"
    return args, env, root


def calls(root: Path) -> list[dict]:
    state = root / "state.json"
    return json.loads(state.read_text())["calls"] if state.exists() else []


V1 = ("--data", "app_version=v1.9.0")


def test_without_helm_installed_the_deploy_stops_before_any_change(kube):
    args, _, root = kube
    result = pyinfra(*args, *V1, *QUICK, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode != 0
    assert "helm is not installed here" in output(result)
    assert "Nothing was changed." in output(result)
    assert calls(root) == []


def test_dry_prints_the_commands_and_the_deploy_runs_exactly_those(kube):
    args, env, root = kube
    dry = pyinfra(*args, *V1, *QUICK, "--dry", env=env)
    assert dry.returncode == 0, output(dry)[-3000:]
    assert [c["argv"] for c in calls(root)] == [["helm", "version", "--short"]]  # reads only
    printed = output(dry).split("on the deploying machine, would run:\n", 1)[1].splitlines()[:4]
    printed = [line.split("  # ")[0].strip() for line in printed]
    result = pyinfra(*args, *V1, *QUICK, env=env)
    assert result.returncode == 0, output(result)[-3000:]
    ran = [shlex.join(c["argv"]) for c in calls(root)]
    assert printed[1] in ran and ran[-1] == printed[3]
    assert "--rollback-on-failure" in printed[1]  # the stand-in says it is Helm 4
    assert printed[0] in ran  # kubectl apply --server-side -f -, its stdin masked
    apply = next(c for c in calls(root) if shlex.join(c["argv"]) == printed[0])
    assert json.loads(apply["stdin"])["stringData"]["REDIS_PASSWORD"] == "helm-redis-pw"
    everything = output(result) + "\n".join(ran) + json.dumps(report(result))
    db_password = core.secret_file("db_password").read_text().strip()
    assert db_password not in everything and "helm-redis-pw" not in everything
    done = report(result)
    assert done["status"] == "success"
    assert "helm: monitoring-dashboard runs registry.example.com" in done["changed"][-1]
    assert done["facts"]["migrations"] is not None  # the database work ran on the lab


def test_the_same_helm_deploy_again_changes_nothing(kube):
    args, env, root = kube
    before = len(calls(root))
    result = pyinfra(*args, *V1, *QUICK, env=env)
    assert result.returncode == 0, output(result)[-3000:]
    new = [c["argv"][:3] for c in calls(root)[before:]]
    assert ["helm", "upgrade", "--install"] not in new
    assert not [argv for argv in new if "restart" in argv]
    assert "already has these values and Secret: nothing to do" in output(result)


def state(root: Path) -> dict:
    return json.loads((root / "state.json").read_text())


def test_an_upgrade_a_password_rotation_then_a_rollback_to_the_release_before(kube):
    args, env, root = kube
    upgrade = pyinfra(*args, "--data", "app_version=v2.0.0-perf", *QUICK, env=env)
    assert upgrade.returncode == 0, output(upgrade)[-3000:]
    upgrades = [c["argv"] for c in calls(root) if c["argv"][:2] == ["helm", "upgrade"]]
    assert "--set-string image.tag=v2.0.0-perf" in shlex.join(upgrades[-1])
    revisions = len(state(root)["revisions"])

    rotated = {**env, "MDD_LAB_REDIS_PASSWORD": "helm-redis-pw-rotated"}
    before = len(calls(root))
    rotation = pyinfra(*args, "--data", "app_version=v2.0.0-perf", *QUICK, env=rotated)
    assert rotation.returncode == 0, output(rotation)[-3000:]
    new = [c["argv"] for c in calls(root)[before:]]
    assert not [argv for argv in new if argv[:2] == ["helm", "upgrade"]]
    assert [argv for argv in new if argv[-2:-1] == ["restart"]]
    assert len(state(root)["revisions"]) == revisions and state(root)["restarts"] == 1
    assert "helm-redis-pw-rotated" not in output(rotation)

    before = len(calls(root))
    result = pyinfra(*args, script="rollback.py", env=rotated)
    assert result.returncode == 0, output(result)[-3000:]
    argvs = [c["argv"] for c in calls(root)[before:]]
    assert argvs[0][:3] == ["helm", "rollback", "monitoring-dashboard"]
    assert argvs[1][-3:-1] == ["status", "deployment/monitoring-dashboard"]
    assert state(root)["values"]["image"]["tag"] == "v1.9.0"  # not v2.0.0-perf again
