"""Recurring schedules on the real broker: the client API, cron in a zone, overlap policies,
catch-up after downtime, and ``kill -9`` of the worker (every due time runs exactly once)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from durable_kafka import AsyncClient, Client, OrchestrationStatus, Worker
from durable_kafka.connectors.audit import read_topic
from durable_kafka.scheduled import (
    AsyncScheduledTaskClient,
    OverlapPolicy,
    ScheduleCreationOptions,
    ScheduledTaskClient,
    ScheduleInvalidTransitionError,
    ScheduleNotFoundError,
    ScheduleQuery,
    ScheduleStatus,
    ScheduleUpdateOptions,
    run_instance_id,
)
from durable_kafka.streams import events as ev
from durable_kafka.streams.codec import Codec

from sizes import full_size  # tests/ is on sys.path (rootdir conftest)

ROOT = Path(__file__).resolve().parents[2]
SECOND = timedelta(seconds=1)


def ping(ctx, input):
    return input


def blocked(ctx, _):
    """A run that goes on until the test raises "go" to it (overlap tests)."""
    yield ctx.wait_for_external_event("go")
    return "done"


@pytest.fixture
def engine(hub, tmp_path):
    w = Worker(hub.bootstrap, hub=hub.name, state_dir=str(tmp_path / "state"), partitions=hub.partitions)
    w.configure_scheduled_tasks()
    w.add_orchestrator(ping)
    w.add_orchestrator(blocked)
    with w, Client(hub.bootstrap, hub=hub.name) as c:
        yield w, c


def wait_for(predicate, what, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def completed(client, iid):
    s = client.get_orchestration_state(iid)
    return s is not None and s.runtime_status == OrchestrationStatus.COMPLETED


def started_runs(hub, prefix) -> dict[str, set[str]]:
    """instance id -> execution ids of every ExecutionStarted in the history topic for ids under ``prefix``."""
    out: dict[str, set[str]] = defaultdict(set)
    for rec in (r for _, v in read_topic(hub.bootstrap, hub.topics.history, Codec.default())
                for r in ev.history_records(v)):
        if rec.instance_id.startswith(prefix) and isinstance(rec.event, ev.ExecutionStarted):
            out[rec.instance_id].add(rec.execution_id)
    return out


def due_of(schedule_id: str, instance_id: str) -> datetime:
    return datetime.fromisoformat(instance_id[len(schedule_id) + 1:])


# ---------------------------------------------------------------- the API
def test_create_get_list_pause_resume_update_trigger_delete(engine, hub):
    _, client = engine
    schedules = ScheduledTaskClient(client)
    assert schedules.get_schedule("s-a") is None
    handle = schedules.create_schedule(ScheduleCreationOptions("s-a", ping, interval=SECOND, orchestration_input=7))
    schedules.create_schedule(ScheduleCreationOptions("other", ping, interval=timedelta(hours=1)))
    d = schedules.get_schedule("s-a")
    assert d is not None and d.status == ScheduleStatus.ACTIVE and d.orchestration_name == "ping"
    assert d.interval == SECOND and d.orchestration_input == 7 and d.created_at is not None

    first = wait_for(lambda: (x := handle.describe()).last_run_at and x, "a first run")
    iid = run_instance_id("s-a", first.last_run_at)
    state = client.wait_for_orchestration_completion(iid, timeout=30)
    assert state.get_output() == 7
    assert (first.last_run_at - first.created_at) % SECOND == timedelta(0)  # due times: created_at + k s

    assert [x.schedule_id for x in schedules.list_schedules()] == ["other", "s-a"]
    assert [x.schedule_id for x in schedules.list_schedules(ScheduleQuery(schedule_id_prefix="s-"))] == ["s-a"]
    handle.pause()
    assert handle.describe().status == ScheduleStatus.PAUSED
    assert [x.schedule_id for x in schedules.list_schedules(ScheduleQuery(status=ScheduleStatus.PAUSED))] == ["s-a"]
    with pytest.raises(ScheduleInvalidTransitionError):
        handle.pause()
    paused_runs = handle.describe().run_count
    time.sleep(2.5)  # two due times pass while paused: nothing starts (durabletask's e2e check)
    assert handle.describe().run_count == paused_runs
    assert not [i for i in started_runs(hub, "s-a-2")
                if due_of("s-a", i) > handle.describe().last_modified_at]
    handle.resume()
    with pytest.raises(ScheduleInvalidTransitionError):
        handle.resume()
    handle.update(ScheduleUpdateOptions(interval=timedelta(hours=2), orchestration_input=8))
    d = handle.describe()
    assert d.interval == timedelta(hours=2) and d.orchestration_input == 8 and d.status == ScheduleStatus.ACTIVE
    assert d.run_count >= paused_runs

    manual = handle.trigger_now()
    assert manual is not None and manual.startswith("s-a-manual-")
    assert client.wait_for_orchestration_completion(manual, timeout=30).get_output() == 8

    handle.delete()
    assert schedules.get_schedule("s-a") is None
    with pytest.raises(ScheduleNotFoundError):
        handle.describe()
    with pytest.raises(ScheduleNotFoundError):
        handle.pause()
    assert [x.schedule_id for x in schedules.list_schedules()] == ["other"]


def test_async_client(engine, hub):
    async def main():
        async with AsyncClient(hub.bootstrap, hub=hub.name) as ac:
            schedules = AsyncScheduledTaskClient(ac)
            handle = await schedules.create_schedule(
                ScheduleCreationOptions("as-1", "ping", cron_expression="0 9 * * *", time_zone="Europe/Paris"))
            await handle.pause()
            d = await schedules.get_schedule("as-1")
            listed = await schedules.list_schedules(ScheduleQuery(schedule_id_prefix="as-"))
            await handle.delete()
            return d, listed, await schedules.get_schedule("as-1")

    d, listed, gone = asyncio.run(main())
    assert d.status == ScheduleStatus.PAUSED and d.cron_expression == "0 9 * * *" and d.time_zone == "Europe/Paris"
    assert [x.schedule_id for x in listed] == ["as-1"] and gone is None


def test_cron_in_a_time_zone(engine):
    _, client = engine
    schedules = ScheduledTaskClient(client)
    handle = schedules.create_schedule(ScheduleCreationOptions(
        "cron", ping, cron_expression="* * * * * */2", time_zone="Asia/Kolkata", orchestration_input="c"))
    d = wait_for(lambda: (x := handle.describe()).run_count >= 2 and x, "two cron runs")
    for due in (d.last_run_at, d.next_run_at):
        assert due.microsecond == 0 and due.second % 2 == 0  # every even second, whatever the zone
    assert d.next_run_at - d.last_run_at == 2 * SECOND
    assert client.wait_for_orchestration_completion(run_instance_id("cron", d.last_run_at),
                                                    timeout=30).get_output() == "c"
    handle.delete()


@pytest.mark.parametrize("policy", [OverlapPolicy.SKIP, OverlapPolicy.BUFFER_ONE, OverlapPolicy.ALLOW_ALL])
def test_overlap_policies(engine, policy):
    _, client = engine
    schedules = ScheduledTaskClient(client)
    sid = f"ov-{policy.value.lower()}"
    handle = schedules.create_schedule(ScheduleCreationOptions(sid, blocked, interval=SECOND, overlap_policy=policy))
    if policy == OverlapPolicy.ALLOW_ALL:  # every due time starts a run while the first still blocks
        d = wait_for(lambda: (x := handle.describe()).run_count >= 3 and x, "three concurrent runs")
        assert d.running_instance_ids == [] and d.overlap_skipped == 0
        runs = [run_instance_id(sid, d.last_run_at - k * SECOND) for k in range(3)]
        wait_for(lambda: all(client.get_orchestration_state(r) for r in runs), "the runs to exist")
        handle.delete()
        return
    d = wait_for(lambda: (x := handle.describe()).overlap_skipped >= 2 and x, "due times meeting a running run")
    assert len(d.running_instance_ids) == 1 and d.run_count >= 3
    first = d.running_instance_ids[0]
    if policy == OverlapPolicy.BUFFER_ONE:
        assert d.buffered_instance_id is not None
    else:
        assert d.buffered_instance_id is None
    wait_for(lambda: client.get_orchestration_state(first), "the first run to start")
    client.raise_orchestration_event(first, "go")
    assert client.wait_for_orchestration_completion(first, timeout=30).get_output() == "done"
    second = wait_for(lambda: (x := handle.describe()).running_instance_ids and x.running_instance_ids[0] != first
                      and x.running_instance_ids[0], "the next run")
    if policy == OverlapPolicy.BUFFER_ONE:
        assert second == d.buffered_instance_id  # the buffered due time, started when the first ended
    else:
        assert due_of(sid, second) > due_of(sid, first) + SECOND  # the due times in between were skipped
    handle.pause()
    wait_for(lambda: client.get_orchestration_state(second), "the second run to start")
    client.raise_orchestration_event(second, "go")
    client.wait_for_orchestration_completion(second, timeout=30)
    wait_for(lambda: handle.describe().running_instance_ids == [], "the second run to be reported ended")
    handle.delete()


def test_catch_up_after_downtime_is_bounded(hub, tmp_path):
    """A worker down for ~5 s: with no catch-up the missed due times are counted and skipped; with a
    large bound every one of them runs, once, after the restart."""
    def worker():
        w = Worker(hub.bootstrap, hub=hub.name, state_dir=str(tmp_path / "state"), partitions=hub.partitions)
        w.configure_scheduled_tasks()
        w.add_orchestrator(ping)
        return w

    with Client(hub.bootstrap, hub=hub.name) as client:
        schedules = ScheduledTaskClient(client)
        with worker():
            none = schedules.create_schedule(ScheduleCreationOptions("cu-none", ping, interval=SECOND))
            full = schedules.create_schedule(ScheduleCreationOptions("cu-full", ping, interval=SECOND,
                                                                     max_catch_up_runs=1000))
            wait_for(lambda: none.describe().run_count >= 2 and full.describe().run_count >= 2, "runs before")
        time.sleep(5)  # no worker: due times pass unserved
        with worker():
            before = none.describe().last_run_at
            wait_for(lambda: none.describe().last_run_at > before + 6 * SECOND, "runs after the restart")
            none.pause()
            full.pause()
        for handle in (none, full):
            d = handle.describe()
            first = d.created_at + SECOND
            due_count = (d.last_run_at - first) // SECOND + 1
            assert d.run_count + d.missed_runs == due_count
        assert none.describe().missed_runs >= 3
        assert full.describe().missed_runs == 0
        with worker():
            runs = wait_for(lambda: (r := started_runs(hub, "cu-full-"))
                            and len(r) == full.describe().run_count and r, "every run of cu-full to start")
        assert all(len(execs) == 1 for execs in runs.values())
        d = full.describe()
        assert sorted(due_of("cu-full", i) for i in runs) == [d.created_at + k * SECOND
                                                               for k in range(1, d.run_count + 1)]


# ---------------------------------------------------------------- kill -9
def _scale() -> tuple[int, float, int]:
    """(schedules, seconds before the first kill, due times of each schedule after each restart):
    the issue's 200 schedules at full size (``make chaos``, DK_CHAOS_SCALE=1), 20 in the normal suite."""
    return (200, 20.0, 20) if full_size() else (20, 6.0, 2)


def _total_runs(schedules: ScheduledTaskClient, prefix: str) -> int:
    """Runs started so far by the schedules under ``prefix``, as their (committed) states count them."""
    return sum(d.run_count for d in schedules.list_schedules(ScheduleQuery(schedule_id_prefix=prefix)))


def _run_a_phase(schedules: ScheduledTaskClient, prefix: str, runs: int) -> None:
    """Wait until the restarted worker has started ``runs`` more runs (the due times it missed while
    down, then new ones): the kill that follows lands while due times are being served, never
    before the worker got going, and no later than needed."""
    before = _total_runs(schedules, prefix)
    wait_for(lambda: _total_runs(schedules, prefix) >= before + runs, f"{runs} more runs", timeout=600)


def _spawn(hub, state: Path) -> subprocess.Popen:
    env = {**os.environ, "DURABLE_KAFKA_BOOTSTRAP": hub.bootstrap, "DK_CRASH_HUB": hub.name,
           "DK_CRASH_STATE": str(state), "DK_CRASH_PARTITIONS": str(hub.partitions)}
    proc = subprocess.Popen([sys.executable, "-m", "durable_kafka", "worker", "tests.integration.schedules_app:make_worker"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "running" in line:
            return proc
    raise AssertionError(f"worker did not start: {''.join(seen)}")


def _each(hub, ids, op) -> None:
    """``op(async_schedules, schedule_id)`` for every id at once (creation and pause of many schedules)."""
    async def main():
        async with AsyncClient(hub.bootstrap, hub=hub.name) as ac:
            schedules = AsyncScheduledTaskClient(ac, operation_timeout=300)
            await asyncio.gather(*(op(schedules, sid) for sid in ids))

    asyncio.run(main())


def _create(hub, ids) -> None:
    _each(hub, ids, lambda s, sid: s.create_schedule(ScheduleCreationOptions(
        sid, "tick", interval=SECOND, orchestration_input=sid, max_catch_up_runs=100_000)))


def _freeze_and_check(hub, ids, prefix: str) -> int:
    """Pause every schedule, wait until every run they counted has started, then check that each due
    time from the first to the last ran exactly once. Returns the number of runs."""
    _each(hub, ids, lambda s, sid: s.get_schedule_client(sid).pause())
    with Client(hub.bootstrap, hub=hub.name) as client:
        final = {d.schedule_id: d for d in
                 ScheduledTaskClient(client).list_schedules(ScheduleQuery(schedule_id_prefix=prefix))}
    expected = sum(d.run_count for d in final.values())
    runs = wait_for(lambda: (r := started_runs(hub, prefix))
                    and sum(len(v) for v in r.values()) >= expected and r,
                    "every run counted by the schedules to start", timeout=1200)
    doubled = {iid: len(execs) for iid, execs in runs.items() if len(execs) != 1}
    assert not doubled, f"runs started more than once: {list(doubled.items())[:5]}"
    per_schedule: dict[str, list[datetime]] = defaultdict(list)
    for iid in runs:
        sid = iid[:len(ids[0])]
        per_schedule[sid].append(due_of(sid, iid))
    assert set(per_schedule) == set(ids)
    for sid, dues in per_schedule.items():
        d = final[sid]
        assert d.missed_runs == 0, f"{sid} missed {d.missed_runs} due times"
        assert sorted(dues) == [d.created_at + k * SECOND for k in range(1, d.run_count + 1)], sid
    return sum(len(v) for v in per_schedule.values())


@pytest.mark.slow
@pytest.mark.chaos
@pytest.mark.timeout(3600)  # the full size (make chaos) on a busy machine
def test_kill_9_twice_every_due_time_runs_exactly_once(hub, tmp_path):
    n, first_phase_s, dues_per_phase = _scale()
    state = tmp_path / "worker-state"
    worker = _spawn(hub, state)
    ids = [f"k{i:03d}" for i in range(n)]
    try:
        _create(hub, ids)
        time.sleep(first_phase_s)
        with Client(hub.bootstrap, hub=hub.name) as client:
            schedules = ScheduledTaskClient(client)
            for _ in range(2):
                worker.send_signal(signal.SIGKILL)
                worker.wait(10)
                worker = _spawn(hub, state)
                _run_a_phase(schedules, "k", n * dues_per_phase)
        total = _freeze_and_check(hub, ids, "k")
    finally:
        worker.kill()
        worker.wait(10)
    print(f"\n{n} schedules, 2 x kill -9: {total} runs, each due time exactly once")


@pytest.mark.slow
def test_rebalances_keep_every_due_time_once(hub, tmp_path):
    """A second worker takes half of the partitions (and their schedules), then the first is killed
    with -9 and the second takes everything: no due time is lost or doubled across the moves."""
    ids = [f"r{i:02d}" for i in range(10)]
    first = _spawn(hub, tmp_path / "a")
    second = None
    try:
        _create(hub, ids)
        time.sleep(4)
        second = _spawn(hub, tmp_path / "b")
        time.sleep(4)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        time.sleep(4)
        total = _freeze_and_check(hub, ids, "r")
    finally:
        for proc in (first, second):
            if proc is not None:
                proc.kill()
                proc.wait(10)
    print(f"\n10 schedules across a scale-out and a kill -9: {total} runs, each due time exactly once")


# ---------------------------------------------------------------- HTTP
def test_http_lists_schedules(engine, hub):
    import httpx

    from durable_kafka.http import BASE_PATH, create_app

    _, client = engine
    schedules = ScheduledTaskClient(client)
    schedules.create_schedule(ScheduleCreationOptions("h-1", ping, cron_expression="30 6 * * 1-5",
                                                      time_zone="Europe/Oslo"))
    schedules.create_schedule(ScheduleCreationOptions("h-2", ping, interval=timedelta(minutes=5))).pause()

    async def main():
        async with AsyncClient(hub.bootstrap, hub=hub.name) as ac:
            transport = httpx.ASGITransport(app=create_app(ac))
            async with httpx.AsyncClient(transport=transport, base_url="http://test" + BASE_PATH) as http:
                return [await http.get(path) for path in
                        ("/schedules", "/schedules?status=Paused", "/schedules/h-1", "/schedules/nope",
                         "/schedules?status=Sleeping")]

    every, paused, one, missing, bad = asyncio.run(main())
    assert every.status_code == 200 and [s["scheduleId"] for s in every.json()] == ["h-1", "h-2"]
    assert [s["scheduleId"] for s in paused.json()] == ["h-2"]
    body = one.json()
    assert body["cronExpression"] == "30 6 * * 1-5" and body["timeZone"] == "Europe/Oslo"
    assert body["status"] == "Active" and body["orchestrationName"] == "ping"
    assert missing.status_code == 404 and bad.status_code == 400
