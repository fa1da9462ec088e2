"""Reading the service's log file on a host: its size, the ERROR lines after an offset, the
lines since the service last started."""

from __future__ import annotations

from tasks.commands.shell import q

START_LINE = "Starting monitoring-dashboard-api"  # what the service logs first


def size(path: str) -> str:
    """Print the size of the log PATH in bytes (0 when there is none)."""
    return f"stat -c %s {q(path)} 2>/dev/null || echo 0"


def errors_after(path: str, offset: int) -> str:
    """Print the ERROR lines the log PATH got after its first OFFSET bytes."""
    return f"tail -c +{int(offset) + 1} {q(path)} 2>/dev/null | grep ERROR || true"


def since_start(path: str) -> str:
    """Print the lines of the log PATH since the service's most recent start."""
    return f"tac {q(path)} 2>/dev/null | sed '/{START_LINE}/q' | tac"
