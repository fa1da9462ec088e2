"""Option C's command builders and chart (no cluster can run here: see tasks/helm.py)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from tasks.commands import helm
from tasks.config import validate

ENV = {"DB_PASSWORD": "pw,with=odd\\chars"}
BASE = {
    "deploy_env": "staging",
    "app_repo_url": "git@example.com:team/app.git",
    "db_host": "db.internal",
    "release_method": "helm",
    "redis_mode": "external",
    "redis_host": "redis-cache",
    "helm_kubeconfig": "/home/ops/.kube/staging",
    "helm_image": "registry.example.com/team/monitoring-dashboard-api",
    "helm_namespace": "staging",
    "app_version": "v2.0.0-perf",
}
CHART = Path(helm.REPO, "files/helm/monitoring-dashboard")


def settings(**more):
    s, problems = validate({**BASE, **more}, environ=ENV)
    assert problems == []
    return s


def test_helm_needs_a_kubeconfig_and_an_image_and_says_so_at_once():
    broken = {**BASE, "helm_kubeconfig": "", "helm_image": "", "redis_mode": "container"}
    _, problems = validate(broken, environ=ENV)
    assert problems[:2] == [
        "helm_kubeconfig: required with release_method helm",
        "helm_image: required with release_method helm",
    ]
    assert problems[2].startswith("redis_mode: the chart runs no Redis") and len(problems) == 3


def test_the_upgrade_is_the_checklists_with_install_wait_atomic_and_every_value():
    s = settings(db_max_open_conns=100, db_max_idle_conns=50)
    argv = helm.upgrade_command(s, 3)
    assert argv[:5] == ["helm", "upgrade", "--install", "monitoring-dashboard", str(CHART)]
    line = shlex.join(argv)
    for part in (
        "--kubeconfig /home/ops/.kube/staging --namespace staging",
        "--wait --atomic --timeout 5m",
        "--set-string image.tag=v2.0.0-perf",
        "--set-string image.repository=registry.example.com/team/monitoring-dashboard-api",
        "--set replicas=2",
        "--set-string env.REDIS_ENABLED=true",
        "--set-string env.REDIS_HOST=redis-cache",
        "--set-string env.DB_MAX_OPEN_CONNS=100",
        "--set-string env.DB_MAX_IDLE_CONNS=50",
        "--set-string secretName=monitoring-dashboard-secrets",
    ):
        assert part in line, part
    assert "PASSWORD" not in line and ENV["DB_PASSWORD"] not in line


def test_a_context_is_named_the_way_each_tool_spells_it():
    s = settings(helm_kube_context="prod-eu")
    assert "--kube-context prod-eu" in shlex.join(helm.upgrade_command(s, 4))
    assert "--context prod-eu" in shlex.join(helm.rollout_status_command(s))
    assert helm.rollout_status_command(s)[-2:] == [
        "deployment/monitoring-dashboard",
        "--timeout=5m",
    ]


def test_set_values_keep_commas_and_backslashes_literal():
    assert helm.set_escape("a,b\\c") == "a\\,b\\\\c"


def test_secrets_go_only_into_the_manifest_on_stdin():
    s = settings()
    manifest = yaml.safe_load(helm.secret_manifest(s, ENV["DB_PASSWORD"], "r-pw"))
    assert manifest["kind"] == "Secret" and manifest["metadata"]["name"] == helm.secret_name(s)
    assert manifest["stringData"] == {"DB_PASSWORD": ENV["DB_PASSWORD"], "REDIS_PASSWORD": "r-pw"}
    apply = shlex.join(helm.secret_apply_command(s))
    assert apply.endswith(
        " apply --server-side --field-manager=monitoring-dashboard-deploy --force-conflicts -f -"
    )
    assert helm.secret_unannotate_command(s)[-1] == (
        "kubectl.kubernetes.io/last-applied-configuration-"
    )
    shown = "\n".join(helm.plan_text(s, 4))
    assert ENV["DB_PASSWORD"] not in shown and "r-pw" not in shown
    assert shown.splitlines()[1].startswith(shlex.join(helm.upgrade_command(s, 4)) + "  # ")


def test_wanted_values_are_what_helm_get_values_prints_for_them():
    wanted = helm.wanted_values(settings())
    assert wanted["image"] == {
        "repository": "registry.example.com/team/monitoring-dashboard-api",
        "tag": "v2.0.0-perf",
    }
    assert wanted["replicas"] == 2 and wanted["port"] == 8080
    assert wanted["env"]["LISTEN_ADDR"] == ":8080" and "DB_PASSWORD" not in wanted["env"]


def test_the_chart_is_complete_and_keeps_no_secret_in_its_values():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "monitoring-dashboard"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert not [k for k in values["env"] if "PASSWORD" in k]
    templates = {p.name: p.read_text() for p in (CHART / "templates").iterdir()}
    assert {"deployment.yaml", "service.yaml", "configmap.yaml"} <= set(templates)
    deployment = templates["deployment.yaml"]
    assert "readinessProbe:" in deployment
    assert "path: {{ .Values.healthPath | quote }}" in deployment
    assert "secretRef:" in deployment and "maxUnavailable: 0" in deployment
    used = set(re.findall(r"\.Values\.([A-Za-z]+)", "".join(templates.values())))
    assert used <= set(values), used - set(values)  # every value a template reads has a default
    set_keys = {key.split(".")[0] for key, _, _ in helm.values(settings())}
    assert set_keys <= set(values), set_keys - set(values)


def test_a_rollback_goes_to_the_previous_revision_and_waits():
    argv = helm.rollback_command(settings())
    assert argv[:3] == ["helm", "rollback", "monitoring-dashboard"]
    assert argv[-3:] == ["--wait", "--timeout", "5m"]
