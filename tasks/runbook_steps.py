"""What every runbook does around its own work (tasks/runbooks.py, tasks/rotation.py): the
record on the host and the local report, the zero-downtime restart, the failure message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tasks.commands import shell
from tasks.config import Settings
from tasks.context import RunContext
from tasks.outcome import failed
from tasks.records import append_record, now_iso
from tasks.settings import deployed_by
from tasks.strategy import Strategy
from tasks.transport import say, sh

q = shell.q


def record(
    ctx: RunContext, h, s: Settings, name: str, done: list[str], found: dict[str, Any]
) -> None:
    """A deployment record on the host (when something changed or FOUND holds a finding,
    a drill's verdict) and the run's local report."""
    entry = {
        "status": "runbook",
        "runbook": name,
        "host": h.name,
        "completed": now_iso(),
        "by": deployed_by(s),
        "changed": done,
        **found,
    }
    if done or found:
        append_record(h, s, entry, left=bool(done))
    ctx.runbook_records[h.name] = entry
    folder = Path(s.report_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{s.deploy_env}-{ctx.stamp}-runbook-{name}.json"
    path.write_text(json.dumps({"runbook": name, "hosts": ctx.runbook_records}, indent=2) + "\n")
    say(h, f"runbook {name}: {'; '.join(done) if done else 'nothing to change'} (report: {path})")


def restart(h, s: Settings, strategy: Strategy) -> str:
    """The release that serves now, started again with the new .env (with blue_green, no
    request failing)."""
    _, current, _ = sh(h, f"readlink {q(shell.paths(s)['current'])}")
    return strategy.put_in_service(h, current.strip(), restart=True) or "restarted"


def fail(ctx: RunContext, h, s: Settings, error: Exception | str, done: list[str] | None) -> bool:
    """Host H's runbook failed; DONE: its steps done before (None: not known)."""
    lines = [f"    done before: {'; '.join(done) or 'nothing'}"] if done is not None else []
    lines.append(
        "    next:        fix the cause and run the runbook again: each step is safe to repeat"
    )
    return failed(ctx, h, s, s.runbook, f"runbook {s.runbook}", error, lines)
