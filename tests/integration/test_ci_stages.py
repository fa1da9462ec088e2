"""The example CI stages in ci/ are real: the deploy step of each, read from the file and run
as written (a shell, the job's variables), deploys the lab's staging and leaves the JSON
report and its JUnit XML that the stage keeps as artifacts."""

from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET

import pytest
import yaml
from pyinfra_runs import REPO, RUN_TIMEOUT, report_path

COMMIT = "0" * 40


def github_deploy_step() -> str:
    jobs = yaml.safe_load((REPO / "ci/github-actions-deploy.yml").read_text())["jobs"]
    return next(step["run"] for step in jobs["staging"]["steps"] if step.get("name") == "Deploy")


def gitlab_deploy_script() -> str:
    pipeline = yaml.safe_load((REPO / "ci/gitlab-ci.yml").read_text())
    assert pipeline["deploy-staging"]["extends"] == ".deploy"
    return "\n".join(pipeline[".deploy"]["script"])


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
    env = {
        **os.environ,
        **variables,
        "INVENTORY": "inventories/lab.py",  # the job's variable, pointed at the lab
        "APP_VERSION": "v2.0.0-perf",
        "CI": "true",
    }
    done = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", script()],
        cwd=REPO,
        env=env,
        text=True,
        capture_output=True,
        timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    path = report_path(done)
    assert f'"deployed_by": "{who}"' in path.read_text()
    assert ET.parse(path.with_suffix(".xml")).getroot().find("testsuite").get("failures") == "0"
