"""The example CI stages in ci/ are real: the deploy step of each, read from the file and run
as written (a shell, the job's variables), deploys the lab's staging and leaves the JSON
report and its JUnit XML that the stage keeps as artifacts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest
import yaml
from pyinfra_runs import REPO, RUN_TIMEOUT, report_path

COMMIT = "0" * 40


def github_step(job: str, name: str) -> str:
    jobs = yaml.safe_load((REPO / "ci/github-actions-deploy.yml").read_text())["jobs"]
    return next(step["run"] for step in jobs[job]["steps"] if step.get("name") == name)


def github_deploy_step() -> str:
    return github_step("staging", "Deploy")


def gitlab_job_script(job: str) -> str:
    pipeline = yaml.safe_load((REPO / "ci/gitlab-ci.yml").read_text())
    found = pipeline[job]
    script = found.get("script") or pipeline[found["extends"]]["script"]
    return "\n".join(script)


def gitlab_deploy_script() -> str:
    return gitlab_job_script("deploy-staging")


def run_step(script: str, variables: dict[str, str]) -> subprocess.CompletedProcess:
    """SCRIPT as the job's shell runs it, with its variables, the inventory the lab's staging."""
    env = {
        **os.environ,
        **variables,
        "INVENTORY": "inventories/lab.py",  # the job's variable, pointed at the lab
        "APP_VERSION": "v2.0.0-perf",
        "CI": "true",
    }
    return subprocess.run(
        ["bash", "-eo", "pipefail", "-c", script],
        cwd=REPO,
        env=env,
        text=True,
        capture_output=True,
        timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("script", "variables", "who"),
    [
        (
            github_deploy_step,
            {"GITHUB_ACTOR": "lab-ci", "GITHUB_RUN_ID": "7", "GITHUB_SHA": COMMIT},
            "github:lab-ci",
        ),
        (
            gitlab_deploy_script,
            {"GITLAB_USER_LOGIN": "lab-ci", "CI_PIPELINE_ID": "7", "CI_COMMIT_SHA": COMMIT},
            "gitlab:lab-ci",
        ),
    ],
    ids=["github-actions", "gitlab-ci"],
)
def test_the_stage_deploys_the_lab_staging_as_written(lab, script, variables, who):
    done = run_step(script(), variables)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    path = report_path(done)
    assert f'"deployed_by": "{who}"' in path.read_text()
    assert ET.parse(path.with_suffix(".xml")).getroot().find("testsuite").get("failures") == "0"


@pytest.mark.parametrize(
    ("plan_step", "apply_step", "variables"),
    [
        (
            lambda: github_step("plan", "Plan") + "\n" + github_step("plan", "Show the plan"),
            lambda: github_step("production", "Deploy"),
            {"GITHUB_ACTOR": "lab-ci", "GITHUB_RUN_ID": "8", "GITHUB_SHA": COMMIT},
        ),
        (
            lambda: gitlab_job_script("plan-production"),
            lambda: gitlab_job_script("deploy-production"),
            {"GITLAB_USER_LOGIN": "lab-ci", "CI_PIPELINE_ID": "8", "CI_COMMIT_SHA": COMMIT},
        ),
    ],
    ids=["github-actions", "gitlab-ci"],
)
def test_the_plan_job_and_the_apply_job_run_the_approved_plan_as_written(
    lab, tmp_path, plan_step, apply_step, variables
):
    """The plan job's steps, then the apply job's deploy step with the plan it left (plans/
    holding only that plan, as a job that downloaded it)."""
    shutil.rmtree(REPO / "plans", ignore_errors=True)
    summary = tmp_path / "summary.md"
    planned = run_step(plan_step(), {**variables, "GITHUB_STEP_SUMMARY": str(summary)})
    assert planned.returncode == 0, (planned.stdout + planned.stderr)[-3000:]
    plan_id = (REPO / "plans" / "lab.id").read_text().strip()
    shown = summary.read_text() if summary.exists() else planned.stdout
    assert f"## Deploy plan `{plan_id}` for lab" in shown
    applied = run_step(apply_step(), variables)
    assert applied.returncode == 0, (applied.stdout + applied.stderr)[-3000:]
    record = json.loads(report_path(applied).read_text())["hosts"]["app1"]
    assert record["facts"]["preflight"]["deploy_plan"] == plan_id
