"""Due-time arithmetic of schedules: intervals, cron in a zone (DST), bounded catch-up."""

from datetime import datetime, timedelta, timezone

import pytest

from durable_kafka.scheduled._timing import Recurrence, check_cron, zone_of

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_interval_due_times_are_anchored_at_the_start():
    r = Recurrence(T0, interval=timedelta(seconds=10))
    assert r.next_after(T0 - timedelta(days=1)) == T0
    assert r.next_after(T0) == T0 + timedelta(seconds=10)
    assert r.next_after(T0 + timedelta(seconds=25)) == T0 + timedelta(seconds=30)


def test_interval_catch_up_keeps_the_latest_and_counts_the_rest():
    r = Recurrence(T0, interval=timedelta(seconds=10))
    due, missed = r.due_through(T0, T0 + timedelta(seconds=35), keep=2)
    assert due == [T0 + timedelta(seconds=20), T0 + timedelta(seconds=30)]
    assert missed == 2
    due, missed = r.due_through(T0, T0 + timedelta(days=1), keep=1)  # a day down: one run, not 8,640
    assert due == [T0 + timedelta(days=1)] and missed == 8640


def test_nothing_due_before_first():
    r = Recurrence(T0, interval=timedelta(seconds=10))
    assert r.due_through(T0 + timedelta(seconds=10), T0 + timedelta(seconds=5), keep=3) == ([], 0)


def test_cron_follows_local_time_across_daylight_saving():
    r = Recurrence(T0, cron="0 9 * * *", zone="America/New_York")
    assert r.next_after(datetime(2026, 3, 7, tzinfo=timezone.utc)) == datetime(2026, 3, 7, 14, tzinfo=timezone.utc)
    # DST began on 2026-03-08: 09:00 local is 13:00 UTC from then on
    assert r.next_after(datetime(2026, 3, 9, tzinfo=timezone.utc)) == datetime(2026, 3, 9, 13, tzinfo=timezone.utc)


def test_cron_with_seconds_and_catch_up():
    r = Recurrence(T0, cron="* * * * * */15", zone="Asia/Tokyo")
    assert r.next_after(T0) == T0 + timedelta(seconds=15)
    due, missed = r.due_through(T0 + timedelta(seconds=15), T0 + timedelta(minutes=1, seconds=1), keep=2)
    assert due == [T0 + timedelta(seconds=45), T0 + timedelta(minutes=1)] and missed == 2


def test_cron_respects_the_anchor():
    r = Recurrence(T0 + timedelta(hours=1), cron="*/30 * * * *")
    assert r.next_after(T0) == T0 + timedelta(hours=1)


def test_cron_catch_up_beyond_counting_still_keeps_the_latest():
    r = Recurrence(T0, cron="* * * * * *")
    now = T0 + timedelta(days=3)  # 259,200 due times: more than the counting bound
    due, missed = r.due_through(T0 + timedelta(seconds=1), now, keep=2)
    assert due == [now - timedelta(seconds=1), now]
    assert missed > 0


@pytest.mark.parametrize("bad", ["", "* * *", "61 * * * *", "not a cron"])
def test_bad_cron_is_refused(bad):
    with pytest.raises(ValueError):
        check_cron(bad)


def test_unknown_zone_is_refused():
    with pytest.raises(ValueError, match="Mars/Olympus"):
        zone_of("Mars/Olympus")
