"""Report (the checklist's success metrics and its "Deployment Status" block), the last phase
of a deploy that went well: the record and manifest on each host, the table on the terminal and
the local reports (tasks/records.py writes them)."""

from __future__ import annotations

import time

import click
from pyinfra.operations import python

from tasks.config import Settings
from tasks.context import Plan, RunContext
from tasks.operations import deploy
from tasks.records import mark_phase, print_table, write_records


def _report(state, host, ctx: RunContext, s: Settings, plan: Plan) -> bool:
    run = ctx.run(host)
    mark_phase(run, "done")
    run.outcome, run.completed = "success", time.time()
    path = write_records(ctx, host, s, plan)
    print_table(run)
    click.echo(f"    report: {path}\n", err=True)
    return True


@deploy("Report")
def report(ctx: RunContext, s: Settings, plan: Plan) -> None:
    python.call(
        name="Write the deployment record and the success metrics",
        function=_report,
        ctx=ctx,
        s=s,
        plan=plan,
    )
