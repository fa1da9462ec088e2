"""Stand-ins for `helm` and `kubectl` (no Kubernetes cluster can run on the lab's machine):
each call is recorded with its stdin in $KUBE_STANDIN_STATE, and answered as Helm and kubectl
answer: `helm version` as $KUBE_STANDIN_HELM_VERSION, `helm get values` prints what the last
upgrade set (parsed from its --set and --set-string flags), a server-side `kubectl apply`
bumps the Secret's resourceVersion only when its manifest changed. An upgrade is first
rendered by the real helm ($KUBE_STANDIN_REAL_HELM, `helm template` with the same chart and
values): a chart the values break fails the upgrade. Used by test_helm.py only; it proves what
the deploy runs and that the chart renders with it, never what a cluster does."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path


def parse_set(text: str, as_string: bool) -> tuple[list[str], object]:
    key, _, value = text.partition("=")
    value = re.sub(r"\\(.)", r"\1", value)  # helm's escapes: \, and \\
    return key.split("."), value if as_string else int(value)


def rendered(upgrade: list[str]) -> bool:
    """Whether the real helm renders the chart of UPGRADE (`upgrade --install NAME CHART ...`)
    with its values."""
    sets = [
        part
        for flag, text in zip(upgrade, upgrade[1:], strict=False)
        if flag in ("--set", "--set-string")
        for part in (flag, text)
    ]
    argv = [os.environ["KUBE_STANDIN_REAL_HELM"], "template", upgrade[2], upgrade[3], *sets]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    print(done.stderr, file=sys.stderr, end="")
    return done.returncode == 0


def main(tool: str, args: list[str]) -> int:
    path = Path(os.environ["KUBE_STANDIN_STATE"])
    state = json.loads(path.read_text()) if path.exists() else {"calls": []}
    stdin = sys.stdin.read() if args[-2:] == ["-f", "-"] else None
    state["calls"].append({"argv": [tool, *args], "stdin": stdin})
    answer, code = "", 0
    if tool == "helm" and args[0] == "version":
        answer = os.environ.get("KUBE_STANDIN_HELM_VERSION", "v3.17.2+gcc0bbbd")
    elif tool == "kubectl" and "apply" in args:
        digest = hashlib.sha256((stdin or "").encode()).hexdigest()
        name = json.loads(stdin or "{}").get("metadata", {}).get("name", "?")
        if state.get("secret") != digest:
            state["secret"], state["secret_version"] = digest, state.get("secret_version", 0) + 1
        answer = f"secret/{name} serverside-applied"
    elif tool == "kubectl" and "get" in args and "secret" in args:
        if "secret_version" in state:
            answer = str(state["secret_version"])
        else:
            answer, code = 'Error from server (NotFound): secrets "x" not found', 1
    elif tool == "kubectl" and "annotate" in args:
        answer = "secret/x annotated"
    elif tool == "kubectl" and "restart" in args:
        state["restarts"] = state.get("restarts", 0) + 1
        answer = "deployment.apps/monitoring-dashboard restarted"
    elif tool == "kubectl" and "status" in args:
        answer = 'deployment "monitoring-dashboard" successfully rolled out'
    elif tool == "helm" and args[:2] == ["get", "values"]:
        if "values" not in state:
            answer, code = "Error: release: not found", 1
        else:
            answer = json.dumps(state["values"])
    elif tool == "helm" and args[0] == "upgrade" and not rendered(args):
        answer, code = "Error: the chart does not render with these values", 1
    elif tool == "helm" and args[0] == "upgrade":
        values: dict = {}
        for flag, text in zip(args, args[1:], strict=False):
            if flag in ("--set", "--set-string"):
                keys, value = parse_set(text, flag == "--set-string")
                node = values
                for part in keys[:-1]:
                    node = node.setdefault(part, {})
                node[keys[-1]] = value
        state.setdefault("revisions", []).append(values)
        state["values"] = values
        answer = f'Release "{args[2]}" has been upgraded. Happy Helming!'
    elif tool == "helm" and args[0] == "rollback":
        revisions = state.get("revisions", [])
        if len(revisions) < 2:
            answer, code = "Error: no revision to roll back to", 1
        else:
            revisions.append(revisions[-2])
            state["values"] = revisions[-1]
            answer = "Rollback was a success! Happy Helming!"
    path.write_text(json.dumps(state))
    print(answer, file=sys.stderr if code else sys.stdout)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
