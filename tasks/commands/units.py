"""An instance of the service in either form (a systemd unit or a container): what runs,
stopping it, the blue/green slots' state."""

from __future__ import annotations

from tasks.commands.docker import container_remove
from tasks.commands.shell import q


def instance_form(unit: str, container: str) -> str:
    """Print one line: `systemd` when UNIT is active, `docker` when CONTAINER runs, else
    nothing (a host without Docker has no container)."""
    running = "'{{.State.Running}}'"
    return (
        f"if systemctl is-active -q {q(unit)}; then echo systemd; "
        f"elif command -v docker >/dev/null && "
        f'[ "$(docker inspect -f {running} {q(container)} 2>/dev/null)" = true ]; '
        "then echo docker; else echo; fi"
    )


def unit_stop(unit: str) -> str:
    """UNIT stopped and disabled (nothing to do when it is not there)."""
    return f"systemctl disable --now {q(unit)} >/dev/null 2>&1"


def instance_stop(unit: str, container: str) -> str:
    """Stop an instance in both forms: the unit stopped and disabled, the container removed."""
    return f"{unit_stop(unit)}; {container_remove(container)}"


def slot_state(
    active_file: str, links: list[str], instances: list[tuple[str, str]], proxy: str
) -> str:
    """Print, one per line: the active slot's name (or nothing), where each of LINKS points
    (or nothing), the form each (unit, container) instance runs in (see instance_form), then
    `systemctl is-active` of the PROXY unit."""
    return "; ".join(
        [
            f"(cat {q(active_file)} 2>/dev/null || echo)",
            *(f"(readlink {q(link)} || echo)" for link in links),
            *(f"({instance_form(unit, container)})" for unit, container in instances),
            f"systemctl is-active {q(proxy)} || true",
        ]
    )
