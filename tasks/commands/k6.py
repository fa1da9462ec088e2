"""k6, run on the deploying machine."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def k6_run(script: str, summary: str, env: Mapping[str, Any]) -> list[str]:
    """The local k6 invocation (an argument list: k6 runs on the deploying machine)."""
    cmd = ["k6", "run", "--quiet", "--no-color", f"--summary-export={summary}"]
    for key, value in sorted(env.items()):
        cmd += ["-e", f"{key}={value}"]
    return [*cmd, script]
