"""When a deploy may start: deploy windows (`Mon-Thu 09:00-16:00; Fri 09:00-12:00`) and
freezes (`2026-12-20..2027-01-05 holidays; 2027-03-01 launch`), read in deploy_timezone.

Pure: pre-flight asks `refusal(now, ...)`; the variables' check asks `problems(...)`. Dates
and times are dateutil's (parsing, time zones, the recurrence of a window's opening);
rollbacks and runbooks never ask.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from dateutil import parser, rrule, tz

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEKDAYS = (rrule.MO, rrule.TU, rrule.WE, rrule.TH, rrule.FR, rrule.SA, rrule.SU)
WINDOW = re.compile(r"(?P<days>[A-Za-z, -]+?)\s+(?P<start>\d\d?:\d\d)-(?P<end>\d\d?:\d\d)")
FREEZE = re.compile(r"(?P<first>\d{4}-\d\d-\d\d)(\.\.(?P<last>\d{4}-\d\d-\d\d))?(\s+(?P<why>.+))?")
HORIZON_DAYS = 400  # how far ahead the next opening is looked for


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # 0 is Monday
    start: time
    end: time  # at or before start: the window ends the next day
    text: str

    def holds(self, local: datetime) -> bool:
        moment = local.time()
        if self.start < self.end:
            return local.weekday() in self.days and self.start <= moment < self.end
        began_today = local.weekday() in self.days and moment >= self.start
        began_yesterday = (local.weekday() - 1) % 7 in self.days and moment < self.end
        return began_today or began_yesterday


@dataclass(frozen=True)
class Freeze:
    first: date
    last: date  # included
    reason: str
    text: str

    def holds(self, local: datetime) -> bool:
        return self.first <= local.date() <= self.last


def rules(value: Any) -> list[str]:
    """The rules of a variable: a YAML list, or one string with `;` between them."""
    items = value if isinstance(value, list) else str(value or "").split(";")
    return [str(item).strip() for item in items if str(item).strip()]


def joined(value: Any) -> str:
    """The rules as the one string Settings keeps (`a; b`)."""
    return "; ".join(rules(value))


def _days(text: str) -> frozenset[int]:
    days: set[int] = set()
    for part in text.replace(" ", "").lower().split(","):
        first, _, last = part.partition("-")
        if first[:3] not in DAYS or (last and last[:3] not in DAYS):
            raise ValueError(f"{text!r}: days are Mon, Tue, ... Sun, or a range like Mon-Thu")
        a, b = DAYS.index(first[:3]), DAYS.index((last or first)[:3])
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(days)


def _clock(text: str) -> time:
    hours, minutes = (int(x) for x in text.split(":"))
    if hours == 24 and minutes == 0:
        return time(0, 0)
    if hours > 23 or minutes > 59:
        raise ValueError(f"{text!r} is not a time of day (00:00 to 24:00)")
    return time(hours, minutes)


def parse_windows(value: Any) -> list[Window]:
    windows = []
    for text in rules(value):
        match = WINDOW.fullmatch(text)
        if not match:
            raise ValueError(f"{text!r}: a window is days and hours, like Mon-Thu 09:00-16:00")
        start, end = _clock(match["start"]), _clock(match["end"])
        if start == end:
            raise ValueError(f"{text!r}: the window opens and closes at the same time")
        windows.append(Window(_days(match["days"]), start, end, text))
    return windows


def parse_freezes(value: Any) -> list[Freeze]:
    freezes = []
    for text in rules(value):
        match = FREEZE.fullmatch(text)
        if not match:
            raise ValueError(
                f"{text!r}: a freeze is a day or a range and a reason, like "
                "2026-12-20..2027-01-05 holidays"
            )
        try:
            first = parser.isoparse(match["first"]).date()
            last = parser.isoparse(match["last"] or match["first"]).date()
        except ValueError as exc:
            raise ValueError(f"{text!r}: {exc}") from None
        if last < first:
            raise ValueError(f"{text!r}: the freeze ends before it starts")
        freezes.append(Freeze(first, last, (match["why"] or "").strip(), text))
    return freezes


def zone(name: str) -> tzinfo:
    found = tz.gettz(name) if name else None
    if found is None:
        raise ValueError(f"{name!r} is not a time zone (UTC, Europe/Paris, America/New_York...)")
    return found


def problems(windows: Any, freezes: Any, timezone: str) -> list[str]:
    """What is wrong with the three variables, one line each (empty when they are usable)."""
    found = []
    for name, check in (
        ("deploy_windows", lambda: parse_windows(windows)),
        ("deploy_freeze", lambda: parse_freezes(freezes)),
        ("deploy_timezone", lambda: zone(timezone)),
    ):
        try:
            check()
        except ValueError as exc:
            found.append(f"{name}: {exc}")
    return found


def _allowed(local: datetime, windows: list[Window], freezes: list[Freeze]) -> bool:
    in_window = not windows or any(w.holds(local) for w in windows)
    return in_window and not any(f.holds(local) for f in freezes)


def next_opening(
    now: datetime, windows: list[Window], freezes: list[Freeze], where: tzinfo
) -> datetime | None:
    """The first moment after NOW when a deploy may start (in WHERE), or None within the
    horizon: a window's opening, or the end of a freeze that falls inside a window."""
    local = now.astimezone(where)
    until = local + timedelta(days=HORIZON_DAYS)
    candidates: list[datetime] = []
    for w in windows:
        opens = rrule.rrule(
            rrule.DAILY,
            dtstart=local.replace(second=0, microsecond=0),
            byweekday=[WEEKDAYS[d] for d in sorted(w.days)],
            byhour=w.start.hour,
            byminute=w.start.minute,
            bysecond=0,
        )
        candidates += opens.between(local, until)
    for f in freezes:
        thawed = datetime.combine(f.last + timedelta(days=1), time(0, 0), tzinfo=where)
        if local < thawed <= until:
            candidates.append(thawed)
    return next((c for c in sorted(candidates) if _allowed(c, windows, freezes)), None)


def _when(moment: datetime) -> str:
    return moment.strftime("%a %Y-%m-%d %H:%M %Z")


def refusal(now: datetime, windows_value: Any, freezes_value: Any, timezone: str) -> str | None:
    """Why a deploy may not start at NOW, with the next opening; None when it may."""
    where = zone(timezone)
    windows, freezes = parse_windows(windows_value), parse_freezes(freezes_value)
    local = now.astimezone(where)
    if _allowed(local, windows, freezes):
        return None
    frozen = [f for f in freezes if f.holds(local)]
    if frozen:
        why = f"inside the deploy freeze {frozen[0].text!r}"
    else:
        why = f"outside every deploy window ({'; '.join(w.text for w in windows)})"
    opening = next_opening(now, windows, freezes, where)
    then = _when(opening) if opening else f"none within {HORIZON_DAYS} days"
    return f"deploy window: it is {_when(local)}, {why}; the next window opens: {then}"
