"""Any operation that fails on a host ends it through the run's failure path: a real pyinfra
run on `@local` (its own executor and callbacks, real commands), with an ending that records
what it was told."""

from __future__ import annotations

import pytest
from pyinfra.api import Config, Inventory, State
from pyinfra.api.connect import connect_all
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.operation import add_op
from pyinfra.api.operations import run_ops
from pyinfra.operations import server

from tasks.context import RunContext


def run(
    commands: list[str],
    lock_holder: str = "me",
    already_failed: bool = False,
    ending=None,
    **arguments,
):
    """Run one server.shell of COMMANDS on @local with a deploy's context; what the host's
    ending was told, in order."""
    state = State(Inventory((["@local"], {})), Config())
    connect_all(state)
    ctx = RunContext.of(state, "deploy", [])
    ctx.lock_holder = lock_holder
    told: list[str] = []
    local = state.inventory.get_host("@local")
    ctx.on_failure(local, ending or told.append)
    if already_failed:
        ctx.failed_hosts.add(local.name)
    add_op(state, server.shell, name="Ensure the proxy answers", commands=commands, **arguments)
    try:
        run_ops(state)
    except PyinfraError:  # "No hosts remaining!": the only host failed
        pass
    return told


def test_a_failed_operation_ends_the_host_once_naming_the_operation():
    told = run(["true", "exit 3", "true"])
    assert told == ["operation 'Ensure the proxy answers' failed (its output is above)"]


def test_an_operation_that_succeeds_ends_nothing():
    assert run(["true"]) == []


def test_a_host_that_already_took_the_failure_path_is_not_ended_twice():
    assert run(["false"], already_failed=True) == []


def test_before_the_lock_is_held_nothing_was_changed_and_pyinfras_error_stands():
    assert run(["false"], lock_holder="") == []


def test_an_ending_that_fails_is_said_and_never_breaks_the_run(capsys):
    def broken(error: str) -> None:
        raise RuntimeError("the database is gone")

    run(["false"], ending=broken)
    err = capsys.readouterr().err
    assert "the failure path itself failed on @local: RuntimeError: the database is gone" in err


@pytest.mark.parametrize("fails", ["a timeout", "a killed shell"])
def test_a_command_that_cannot_finish_is_a_failure_too(fails):
    command = "sleep 5" if fails == "a timeout" else "kill -9 $$"
    state = State(Inventory((["@local"], {})), Config())
    connect_all(state)
    ctx = RunContext.of(state, "deploy", [])
    ctx.lock_holder = "me"
    told: list[str] = []
    ctx.on_failure(state.inventory.get_host("@local"), told.append)
    add_op(state, server.shell, name="Slow", commands=[command], _timeout=1)
    with pytest.raises(PyinfraError):
        run_ops(state)
    assert told == ["operation 'Slow' failed (its output is above)"]


def test_an_error_pyinfra_was_told_to_ignore_ends_nothing():
    """The build runs with _ignore_errors: its own check reports a failed build."""
    assert run(["false"], _ignore_errors=True) == []
