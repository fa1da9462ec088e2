"""Option C of the checklist (`release_method: helm`): the service on Kubernetes, installed
from the deploying machine with the chart in files/helm, against the kubeconfig the operator
names (`helm_kubeconfig`, `helm_kube_context`, `helm_namespace`).

The database work (pre-flight, backup, migrations) runs on the migration host as with the
other methods, and the run is reported and recorded the same way. Instead of the app hosts'
phases (Redis container, .env, switch, verify, load test, monitoring window):

1. the Secret `<helm_release>-secrets` (DB_PASSWORD, REDIS_PASSWORD) is applied server-side
   (`kubectl apply --server-side -f -`, our own field manager), its manifest on stdin: no
   secret is a Helm value, an argument, a file, or a `last-applied-configuration` annotation
   (a client-side apply would store the whole manifest there, values included; one left by an
   older deploy is removed). Its resourceVersion before and after says whether it changed;
2. `helm upgrade --install` with the checklist's --set values (image.tag is app_version; the
   .env without its secrets goes into the chart's ConfigMap), `--wait` and Helm's rollback on
   failure (`--atomic` in Helm 3, `--rollback-on-failure` in Helm 4, read from `helm
   version`): the pods' readiness probe on the health path is the health gate, and Helm puts
   the previous revision back by itself when they never become ready. It runs only when the
   values changed: a Secret-only change makes no Helm revision, so a later `helm rollback`
   still goes back to the previous release;
3. a changed Secret restarts the pods of an installed release (`kubectl rollout restart`):
   they read it at start;
4. `kubectl rollout status`, bounded by helm_timeout.

No cluster can run on the lab's machines: the chart is rendered, linted and validated by the
real helm in the test suite, the deploy's commands run against stand-ins. `--dry` prints
exactly the commands it would run (the Secret's values masked).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from pyinfra.operations import python

from tasks.commands import git, shell
from tasks.commands.helm import (
    chart_path,
    get_values_command,
    restart_command,
    rollout_status_command,
    secret_apply_command,
    secret_manifest,
    secret_name,
    secret_unannotate_command,
    secret_version_command,
    upgrade_command,
    wanted_values,
)
from tasks.config import Settings, seconds
from tasks.context import Plan, RunContext
from tasks.operations import deploy
from tasks.outcome import phase_check
from tasks.remote import DeployError
from tasks.settings import secret
from tasks.transport import say, sh


def helm_major() -> int:
    """The major version of the helm installed here (3 when there is none: --dry's plan)."""
    try:
        short = run(["helm", "version", "--short"], timeout=30)
    except (DeployError, FileNotFoundError):
        return 3
    found = re.match(r"v?(\d+)\.", short)
    if not found:
        raise DeployError(f"helm version --short printed {short!r}, not a version")
    return int(found.group(1))


def missing_tools(s: Settings) -> list[str]:
    """What the deploying machine lacks to run this road (checked before any host is touched)."""
    problems = [f"{x} is not installed here" for x in ("helm", "kubectl") if not shutil.which(x)]
    if not Path(s.helm_kubeconfig).is_file():
        problems.append(f"helm_kubeconfig {s.helm_kubeconfig} is not a file")
    if not Path(chart_path(s), "Chart.yaml").is_file():
        problems.append(f"helm_chart {chart_path(s)} has no Chart.yaml")
    return problems


def run(argv: list[str], timeout: float, stdin: str | None = None) -> str:
    """Run ARGV on the deploying machine; its output, or DeployError with its last lines."""
    try:
        done = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise DeployError(f"{argv[0]} {argv[1]} took over {timeout:.0f}s") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()[-1500:]
        raise DeployError(f"{argv[0]} {argv[1]} failed (exit {done.returncode}): {detail}")
    return done.stdout.strip()


def _installed_values(s: Settings) -> dict[str, Any] | None:
    """The release's values now, or None when it is not installed."""
    try:
        return json.loads(run(get_values_command(s), timeout=60) or "null") or {}
    except DeployError as exc:
        if "not found" in str(exc):
            return None
        raise


def _secret_version(s: Settings) -> str | None:
    """The Secret's resourceVersion, or None when there is no such Secret."""
    try:
        return run(secret_version_command(s), timeout=60)
    except DeployError as exc:
        if "NotFound" in str(exc) or "not found" in str(exc):
            return None
        raise


def _apply_secret(host, s: Settings) -> bool:
    """Apply the Secret server-side; whether it changed."""
    before = _secret_version(s)
    manifest = secret_manifest(s, secret(s, "DB_PASSWORD"), secret(s, "REDIS_PASSWORD"))
    say(
        host,
        f"kubectl apply --server-side (Secret {secret_name(s)}): "
        f"{run(secret_apply_command(s), timeout=60, stdin=manifest)}",
    )
    run(secret_unannotate_command(s), timeout=60)
    return _secret_version(s) != before


@phase_check("release")
def _release(ctx: RunContext, host, s: Settings, plan: Plan) -> None:
    record = ctx.run(host)
    limit = seconds(s.helm_timeout) + 60
    secret_changed = _apply_secret(host, s)
    installed = _installed_values(s)
    values_current = installed == wanted_values(s)
    if values_current and not secret_changed:
        say(
            host,
            f"Helm release {s.helm_release} already has these values and Secret: nothing to do",
        )
        record.facts["helm"] = {"upgraded": False, "restarted": False}
        return
    if not values_current:
        upgrade = upgrade_command(s, helm_major())
        say(host, f"$ {shlex.join(upgrade)}")
        upgraded = run(upgrade, timeout=limit)
        say(host, upgraded.splitlines()[-1] if upgraded else "helm upgrade done")
        record.changed.append(f"helm: {s.helm_release} runs {s.helm_image}:{s.app_version}")
    restart = secret_changed and installed is not None  # a first install's pods read it
    if restart:  # the pods read it at start; no Helm revision for it
        say(host, f"Secret {secret_name(s)} changed: restarting the pods")
        run(restart_command(s), timeout=60)
        record.changed.append(f"helm: Secret {secret_name(s)} changed, pods restarted")
    status = run(rollout_status_command(s), timeout=limit)
    say(host, status.splitlines()[-1] if status else "rolled out")
    # `current` on this host names the release the cluster runs (a rollback goes back from it)
    sh(host, git.switch_current(shell.paths(s)["current"], plan.release_dir))
    record.facts["helm"] = {
        "upgraded": not values_current,
        "restarted": restart,
        "installed_before": installed is not None,
    }


@deploy("Release (Helm)")
def release(ctx: RunContext, s: Settings, plan: Plan) -> None:
    """On the migration host's turn only: the commands run on the deploying machine."""
    if plan.is_migration_host:
        python.call(
            name=f"Ensure Helm release {s.helm_release} runs {s.app_version} "
            f"(namespace {s.helm_namespace})",
            function=_release,
            ctx=ctx,
            s=s,
            plan=plan,
        )
