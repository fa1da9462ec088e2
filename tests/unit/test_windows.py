"""Deploy windows and freezes (tasks/windows.py): what the variables accept, when a deploy may
start, the next opening named in the refusal, and pre-flight's use of them with the clock
frozen (the run's start is the moment that counts)."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
import time_machine
from fake_remote import FakeRemote

from tasks import preflight, windows
from tasks.config import validate

BASE = {"deploy_env": "t", "app_repo_url": "git://h/r.git", "db_host": "db1"}
SECRET = {"DB_PASSWORD": "x"}
WINDOWS = "Mon-Thu 09:00-16:00; Fri 09:00-12:00"
FREEZES = "2026-12-20..2027-01-05 holidays; 2027-03-01 launch"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("moment", "allowed"),
    [
        ("2026-12-07 09:00", True),  # Monday, the window opens
        ("2026-12-07 15:59", True),
        ("2026-12-07 16:00", False),  # closes
        ("2026-12-07 08:59", False),
        ("2026-12-11 11:00", True),  # Friday morning
        ("2026-12-11 13:00", False),  # Friday afternoon
        ("2026-12-12 10:00", False),  # Saturday
        ("2026-12-21 10:00", False),  # Monday, inside the holidays
        ("2027-01-05 10:00", False),  # the freeze's last day is included
        ("2027-01-06 10:00", True),
        ("2027-03-01 10:00", False),  # one frozen day
    ],
)
def test_a_deploy_may_start_only_inside_a_window_and_outside_every_freeze(moment, allowed):
    refused = windows.refusal(at(moment), WINDOWS, FREEZES, "UTC")
    assert (refused is None) is allowed, refused


@pytest.mark.parametrize(
    ("moment", "rule", "opens"),
    [
        ("2026-12-05 18:40", "outside every deploy window", "Mon 2026-12-07 09:00 UTC"),
        ("2026-12-11 12:00", "outside every deploy window", "Mon 2026-12-14 09:00 UTC"),
        ("2026-12-07 07:00", "outside every deploy window", "Mon 2026-12-07 09:00 UTC"),
        # the holidays end on a Tuesday: Wednesday's window is the next that is not frozen
        ("2026-12-18 13:00", "outside every deploy window", "Wed 2027-01-06 09:00 UTC"),
        ("2026-12-22 10:00", "'2026-12-20..2027-01-05 holidays'", "Wed 2027-01-06 09:00 UTC"),
    ],
)
def test_a_refusal_names_the_rule_and_the_next_opening(moment, rule, opens):
    refused = windows.refusal(at(moment), WINDOWS, FREEZES, "UTC")
    assert refused is not None and rule in refused
    assert refused.endswith(f"the next window opens: {opens}")


def test_windows_are_read_in_the_time_zone_across_a_daylight_saving_change():
    # Paris is UTC+1 in winter, UTC+2 in summer: 08:30 UTC is inside a 09:00 window in July
    assert windows.refusal(at("2027-07-05 08:30"), "Mon 09:00-17:00", "", "Europe/Paris") is None
    refused = windows.refusal(at("2027-01-04 07:30"), "Mon 09:00-17:00", "", "Europe/Paris")
    assert refused is not None and "Mon 2027-01-04 08:30 CET" in refused
    assert refused.endswith("Mon 2027-01-04 09:00 CET")
    # the Sunday the clocks go forward, the next Monday opens at 09:00 local, 07:00 UTC
    sunday = windows.refusal(at("2027-03-28 12:00"), "Mon 09:00-17:00", "", "Europe/Paris")
    assert sunday is not None and sunday.endswith("Mon 2027-03-29 09:00 CEST")


def test_a_window_past_midnight_belongs_to_the_day_it_opens():
    night = "Fri 22:00-02:00"
    assert windows.refusal(at("2026-12-11 23:00"), night, "", "UTC") is None
    assert windows.refusal(at("2026-12-12 01:59"), night, "", "UTC") is None  # Saturday
    assert windows.refusal(at("2026-12-12 02:00"), night, "", "UTC") is not None
    assert windows.refusal(at("2026-12-10 23:00"), night, "", "UTC") is not None  # Thursday


def test_a_freeze_alone_opens_the_day_after_it_and_nothing_is_any_time():
    assert windows.refusal(at("2026-12-05 03:00"), "", "", "UTC") is None
    refused = windows.refusal(at("2027-03-01 10:00"), "", "2027-03-01 launch", "UTC")
    assert refused is not None and refused.endswith("Tue 2027-03-02 00:00 UTC")


def test_no_opening_within_the_horizon_is_said():
    refused = windows.refusal(
        at("2026-12-07 10:00"), "Sat 10:00-11:00", "2026-12-01..2029-01-01 x", "UTC"
    )
    assert refused is not None and refused.endswith(f"none within {windows.HORIZON_DAYS} days")


def test_yaml_lists_and_strings_are_the_same_rules():
    listed, problems = validate(
        {**BASE, "deploy_windows": WINDOWS.split("; "), "deploy_freeze": FREEZES.split("; ")},
        SECRET,
    )
    assert not problems, problems
    assert listed.deploy_windows == WINDOWS and listed.deploy_freeze == FREEZES
    joined, problems = validate(
        {**BASE, "deploy_windows": WINDOWS, "deploy_freeze": FREEZES}, SECRET
    )
    assert not problems and joined == listed


def test_every_bad_rule_is_reported_with_the_variable_it_is_in():
    _, problems = validate(
        {
            **BASE,
            "deploy_windows": "Mon-Thu 09:00-25:00",
            "deploy_freeze": ["2027-01-05..2026-12-20 backwards"],
            "deploy_timezone": "Mars/Base",
            "app_port": 0,
        },
        SECRET,
    )
    text = "\n".join(problems)
    assert "deploy_windows: '25:00' is not a time of day" in text
    assert "deploy_freeze: '2027-01-05..2026-12-20 backwards': the freeze ends before" in text
    assert "deploy_timezone: 'Mars/Base' is not a time zone" in text
    assert "app_port:" in text  # reported with the others, at once
    for bad in ("Funday 09:00-10:00", "Mon 9-10", "Mon 10:00-10:00"):
        _, problems = validate({**BASE, "deploy_windows": bad}, SECRET)
        assert problems and problems[0].startswith("deploy_windows: "), bad
    _, problems = validate({**BASE, "deploy_freeze": [1]}, SECRET)
    assert problems == ["deploy_freeze: must be a string or a list of strings, got [1]"]


S, _ = validate({**BASE, "deploy_windows": WINDOWS, "deploy_freeze": FREEZES}, SECRET)


@pytest.mark.parametrize(
    ("clock", "override", "refused"),
    [
        ("2026-12-08 10:00", "", False),
        ("2026-12-05 18:40", "", True),
        ("2026-12-24 10:00", "", True),
        ("2026-12-24 10:00", "payments are down", False),
    ],
)
def test_pre_flight_refuses_outside_a_window_unless_overridden(clock, override, refused):
    with time_machine.travel(at(clock), tick=False):
        ctx = SimpleNamespace(started=time.time())
    h = FakeRemote("app1")
    problems, facts = preflight._window(ctx, h, replace(S, deploy_override=override))
    assert bool(problems) is refused
    if refused:
        assert "deploy window: " in problems[0] and 'deploy_override="reason"' in problems[0]
    if override:
        assert facts["deploy_override"] == override and "deploy window: " in facts["deploy_window"]
        assert any("deploying anyway (deploy_override: payments are down)" in x for x in h.said)
    else:
        assert facts == {}
