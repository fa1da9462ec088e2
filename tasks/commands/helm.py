"""Helm's and kubectl's command lines for `release_method: helm` (tasks/helm.py runs them on
the deploying machine), the values the chart gets and the Secret's manifest: pure, each tested
by its whole argv."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from tasks.commands import dotenv
from tasks.config import Settings

REPO = Path(__file__).resolve().parents[2]
MASK = "(not shown)"
FIELD_MANAGER = "monitoring-dashboard-deploy"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def chart_path(s: Settings) -> str:
    chart = Path(s.helm_chart)
    return str(chart if chart.is_absolute() else REPO / chart)


def secret_name(s: Settings) -> str:
    return f"{s.helm_release}-secrets"


def kube_flags(s: Settings, tool: str) -> list[str]:
    """The kubeconfig, context and namespace flags of TOOL (helm or kubectl)."""
    flags = ["--kubeconfig", s.helm_kubeconfig]
    if s.helm_kube_context:
        flags += ["--kube-context" if tool == "helm" else "--context", s.helm_kube_context]
    return [*flags, "--namespace", s.helm_namespace]


def set_escape(value: str) -> str:
    """VALUE as Helm's --set / --set-string read it literally (`\\` and `,` escaped)."""
    return value.replace("\\", "\\\\").replace(",", "\\,")


def values(s: Settings) -> list[tuple[str, str, bool]]:
    """Every value the chart gets: (key, value, is a string). The environment is the .env's,
    without its secrets (they are in the Secret)."""
    pairs = [
        ("image.repository", s.helm_image, True),
        ("image.tag", s.app_version, True),
        ("replicas", str(s.helm_replicas), False),
        ("port", str(s.app_port), False),
        ("healthPath", s.app_health_path, True),
        ("livenessPath", s.app_liveness_path, True),
        ("logDir", s.app_log_file.rsplit("/", 1)[0], True),
        ("secretName", secret_name(s), True),
    ]
    for key, value in dotenv.env_values(s, "", ""):
        if value is not None and key not in dotenv.ENV_SECRETS:
            pairs.append((f"env.{key}", str(value), True))
    return pairs


def upgrade_command(s: Settings, major: int) -> list[str]:
    """The checklist's `helm upgrade`, with --install, --wait and the rollback on failure
    spelled as helm MAJOR spells it."""
    argv = [
        "helm",
        "upgrade",
        "--install",
        s.helm_release,
        chart_path(s),
        *kube_flags(s, "helm"),
        "--wait",
        "--atomic" if major < 4 else "--rollback-on-failure",
        "--timeout",
        s.helm_timeout,
    ]
    return argv + set_flags(s)


def set_flags(s: Settings) -> list[str]:
    """values() as helm's --set (numbers) and --set-string flags."""
    flags = []
    for key, value, is_string in values(s):
        flags += ["--set-string" if is_string else "--set", f"{key}={set_escape(value)}"]
    return flags


def wanted_values(s: Settings) -> dict[str, Any]:
    """values() as `helm get values -o json` prints a release installed with them."""
    nested: dict[str, Any] = {}
    for key, value, is_string in values(s):
        *parents, last = key.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value if is_string else int(value)
    return nested


def get_values_command(s: Settings) -> list[str]:
    return ["helm", "get", "values", s.helm_release, *kube_flags(s, "helm"), "-o", "json"]


def secret_manifest(s: Settings, db_password: str, redis_password: str) -> str:
    """The Secret the Deployment reads its passwords from (given to kubectl on stdin)."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": secret_name(s),
                "labels": {"app.kubernetes.io/instance": s.helm_release},
            },
            "type": "Opaque",
            "stringData": {"DB_PASSWORD": db_password, "REDIS_PASSWORD": redis_password},
        }
    )


def secret_apply_command(s: Settings) -> list[str]:
    """Server-side, as our field manager, taking over fields an older client-side apply
    owned."""
    return [
        "kubectl",
        *kube_flags(s, "kubectl"),
        "apply",
        "--server-side",
        f"--field-manager={FIELD_MANAGER}",
        "--force-conflicts",
        "-f",
        "-",
    ]


def secret_version_command(s: Settings) -> list[str]:
    """The Secret's resourceVersion (it changes only when the Secret does)."""
    return [
        "kubectl",
        *kube_flags(s, "kubectl"),
        "get",
        "secret",
        secret_name(s),
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]


def secret_unannotate_command(s: Settings) -> list[str]:
    """Removes the copy of the manifest, values included, a client-side apply left."""
    return [
        "kubectl",
        *kube_flags(s, "kubectl"),
        "annotate",
        "secret",
        secret_name(s),
        f"{LAST_APPLIED}-",
    ]


def restart_command(s: Settings) -> list[str]:
    return [
        "kubectl",
        *kube_flags(s, "kubectl"),
        "rollout",
        "restart",
        f"deployment/{s.helm_release}",
    ]


def rollout_status_command(s: Settings) -> list[str]:
    """The checklist's `kubectl rollout status`, bounded."""
    return [
        "kubectl",
        *kube_flags(s, "kubectl"),
        "rollout",
        "status",
        f"deployment/{s.helm_release}",
        f"--timeout={s.helm_timeout}",
    ]


def rollback_command(s: Settings) -> list[str]:
    """Back to the previous revision of the Helm release (Helm keeps them)."""
    return [
        "helm",
        "rollback",
        s.helm_release,
        *kube_flags(s, "helm"),
        "--wait",
        "--timeout",
        s.helm_timeout,
    ]


def plan_text(s: Settings, major: int) -> list[str]:
    """What a deploy runs on the deploying machine, as shell lines (for --dry and the log)."""
    return [
        f"{shlex.join(secret_apply_command(s))}  # stdin: Secret {secret_name(s)} "
        f"(DB_PASSWORD, REDIS_PASSWORD: {MASK})",
        f"{shlex.join(upgrade_command(s, major))}  # only when the values changed",
        f"{shlex.join(restart_command(s))}  # only when the Secret changed",
        shlex.join(rollout_status_command(s)),
    ]
