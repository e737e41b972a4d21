"""When a schedule is due: intervals anchored at a start time, or cron expressions in a zone.

Pure functions of their arguments (no clock): the schedule entity passes "now" in, the unit
tests pass whatever time they like. Cron expressions are evaluated by croniter in the
schedule's time zone (zoneinfo), so "0 9 * * *" in "Europe/Paris" stays at 09:00 local time
across daylight-saving changes; every due time handed out is an aware UTC datetime.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, croniter  # type: ignore[import-untyped]  # ships no stubs

#: forward steps a cron catch-up count takes before it stops counting (croniter takes ~0.1-0.5 ms
#: a step, and this runs inside an entity operation); the runs kept are still exact, only
#: ``missed`` is then a lower bound
MAX_CRON_STEPS = 2_000
_TINY = timedelta(microseconds=1)


def utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (a naive one is taken to be UTC, as durabletask does)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def zone_of(name: str | None) -> ZoneInfo | timezone:
    """The zone named ``name`` (IANA, e.g. "Europe/Paris"); UTC for None. ValueError if unknown."""
    if name is None or name.upper() == "UTC":
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown time zone {name!r}") from error


def check_cron(expression: str) -> None:
    """ValueError unless ``expression`` is a cron expression croniter can evaluate."""
    if not isinstance(expression, str) or not expression.strip():
        raise ValueError("cron_expression must be a non-empty str")
    if len(expression.split()) not in (5, 6):
        raise ValueError(f"cron expression {expression!r} must have 5 fields (6 with seconds last)")
    try:
        croniter(expression, datetime(2000, 1, 1, tzinfo=timezone.utc))
    except (CroniterBadCronError, ValueError, KeyError) as error:
        raise ValueError(f"invalid cron expression {expression!r}: {error}") from error


@dataclass(frozen=True)
class Recurrence:
    """The due times of one schedule: ``anchor + k * interval`` (k >= 0), or the cron times >= anchor."""

    anchor: datetime
    interval: timedelta | None = None
    cron: str | None = None
    zone: str | None = None

    def next_after(self, after: datetime) -> datetime:
        """The first due time strictly after ``after``."""
        after = utc(after)
        anchor = utc(self.anchor)
        if self.cron is None:
            assert self.interval is not None
            if after < anchor:
                return anchor
            return anchor + self.interval * ((after - anchor) // self.interval + 1)
        base = max(after, anchor - _TINY).astimezone(zone_of(self.zone))
        return utc(croniter(self.cron, base).get_next(datetime))

    def due_through(self, first: datetime, now: datetime, keep: int) -> tuple[list[datetime], int]:
        """Due times from ``first`` (itself due) up to ``now``: the last ``keep`` of them, and how many
        were left out before those (the runs a bounded catch-up skips)."""
        first, now = utc(first), utc(now)
        if first > now or keep <= 0:
            return [], 0
        kept: deque[datetime] = deque([first], maxlen=keep)
        total = 1
        nxt = self.next_after(first)
        if nxt > now:
            return list(kept), 0
        if self.cron is None:
            assert self.interval is not None
            more = (now - nxt) // self.interval + 1
            total += more
            start = max(0, more - keep)
            kept.extend(nxt + self.interval * k for k in range(start, more))
            return list(kept), total - len(kept)
        itr = croniter(str(self.cron), first.astimezone(zone_of(self.zone)))
        steps = 0
        while nxt <= now and steps < MAX_CRON_STEPS:
            kept.append(nxt)
            total += 1
            steps += 1
            nxt = utc(itr.get_next(datetime))
            while nxt <= kept[-1]:  # defensive: the iterator restarts at ``first``, not at ``nxt``
                nxt = utc(itr.get_next(datetime))
        if nxt <= now:  # too many to count: keep the latest ones, counted backwards from now
            back = croniter(str(self.cron), (now + _TINY).astimezone(zone_of(self.zone)))
            latest = [utc(back.get_prev(datetime)) for _ in range(keep)]
            kept = deque(sorted(d for d in latest if d >= first), maxlen=keep)
        return list(kept), total - len(kept)
