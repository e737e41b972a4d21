"""The dashboard's pure views: instance filtering, paging and counts, and history -> timeline bars."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from durable_kafka._client_models import OrchestrationStatus as S
from durable_kafka._dashboard_views import InstanceFilter, filter_instances, status_counts, timeline
from durable_kafka._http_security import ApiKeyMiddleware
from durable_kafka.streams import events as ev

T0 = datetime(2026, 12, 2, 7, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def status(iid: str, name: str, runtime: S, created: float, parent: str | None = None) -> ev.InstanceStatus:
    return ev.InstanceStatus(instance_id=iid, name=name, execution_id="e", runtime_status=runtime,
                             created_at=at(created), last_updated_at=at(created + 1), parent_instance_id=parent)


FLEET = [status(f"order-{i:04d}", "process_order" if i % 2 else "ship", [S.RUNNING, S.COMPLETED, S.FAILED][i % 3], i)
         for i in range(1000)]


def test_counts_cover_every_status_even_when_zero() -> None:
    counts = status_counts(FLEET[:3])
    assert counts == {"Pending": 0, "Running": 1, "Completed": 1, "Failed": 1, "Terminated": 0,
                      "Suspended": 0, "ContinuedAsNew": 0}


def test_pages_are_newest_first_and_cover_all_matches_once() -> None:
    seen = []
    offset = 0
    while True:
        page = filter_instances(FLEET, InstanceFilter(), offset=offset, limit=300)
        seen += [row["instanceId"] for row in page["items"]]
        offset += 300
        if offset >= page["total"]:
            break
    assert seen[0] == "order-0999" and seen[-1] == "order-0000"
    assert len(seen) == len(set(seen)) == 1000


def test_filters_combine_and_counts_ignore_only_the_status_filter() -> None:
    where = InstanceFilter(statuses=frozenset({S.FAILED}), name="ORDER", id_prefix="order-00",
                           created_from=at(10), created_to=at(60))
    page = filter_instances(FLEET, where, offset=0, limit=50)
    ids = [row["instanceId"] for row in page["items"]]
    expected = [f"order-{i:04d}" for i in range(60, 9, -1) if i % 2 and i % 3 == 2]
    assert ids == expected and page["total"] == len(expected)
    assert page["counts"]["Failed"] == len(expected)
    assert page["counts"]["Running"] == len([i for i in range(10, 61) if i % 2 and i % 3 == 0])
    assert page["items"][0]["runtimeStatus"] == "Failed" and page["items"][0]["name"] == "process_order"


def test_bad_paging_is_refused() -> None:
    with pytest.raises(ValueError):
        filter_instances(FLEET, InstanceFilter(), offset=-1, limit=10)
    with pytest.raises(ValueError):
        filter_instances(FLEET, InstanceFilter(), offset=0, limit=501)


def fan_out_history() -> list[ev.HistoryEvent]:
    """Start, two activities in parallel (one fails), a timer, a child, then an event it waited for."""
    failure = ev.FailureDetails(message="no stock", error_type="ValueError", stack_trace="Traceback ...")
    return [
        ev.OrchestratorStarted(event_id=-1, timestamp=at(0)),
        ev.ExecutionStarted(event_id=-1, timestamp=at(0), name="order", execution_id="e"),
        ev.TaskScheduled(event_id=0, timestamp=at(0), name="reserve"),
        ev.TaskScheduled(event_id=1, timestamp=at(0), name="charge"),
        ev.OrchestratorStarted(event_id=-1, timestamp=at(2)),
        ev.TaskCompleted(event_id=-1, timestamp=at(2), task_scheduled_id=0, result="1"),
        ev.TaskFailed(event_id=-1, timestamp=at(3), task_scheduled_id=1, failure_details=failure),
        ev.TimerCreated(event_id=2, timestamp=at(3), fire_at=at(8)),
        ev.SubOrchestrationInstanceCreated(event_id=3, timestamp=at(3), name="ship", instance_id="order:ship"),
        ev.OrchestratorStarted(event_id=-1, timestamp=at(8)),
        ev.TimerFired(event_id=-1, timestamp=at(8), timer_id=2, fire_at=at(8)),
        ev.OrchestratorStarted(event_id=-1, timestamp=at(12)),
        ev.EventRaised(event_id=-1, timestamp=at(12), name="Approval", input='{"by": "ann"}'),
    ]


def test_timeline_pairs_work_with_its_results() -> None:
    result = timeline(fan_out_history(), now=at(20), running=True)
    bars = {b["label"]: b for b in result["bars"]}
    assert result["start"] == "2026-12-02T07:00:00.000Z" and result["end"] == "2026-12-02T07:00:20.000Z"
    assert bars["reserve"]["end"] == "2026-12-02T07:00:02.000Z" and bars["reserve"]["status"] == "completed"
    assert bars["charge"]["status"] == "failed" and bars["charge"]["failure"]["errorMessage"] == "no stock"
    timer = bars["timer until 07:00:08.000"]
    assert (timer["start"], timer["end"], timer["kind"]) == ("2026-12-02T07:00:03.000Z", "2026-12-02T07:00:08.000Z",
                                                             "timer")
    child = bars["ship"]
    assert child["kind"] == "suborchestration" and child["instanceId"] == "order:ship" and child["end"] is None
    # the event's wait began when the orchestrator last ran before it arrived (the timer's episode)
    assert bars["event Approval"]["start"] == "2026-12-02T07:00:08.000Z"
    assert bars["event Approval"]["end"] == "2026-12-02T07:00:12.000Z"
    assert result["bars"][0]["kind"] == "orchestration" and result["bars"][0]["status"] == "pending"
    assert not any(b["kind"] == "waiting" for b in result["bars"])  # the child is still outstanding


def test_a_running_instance_with_nothing_outstanding_is_waiting() -> None:
    history = fan_out_history()[:2]
    result = timeline(history, now=at(30), running=True)
    waiting = [b for b in result["bars"] if b["kind"] == "waiting"]
    assert len(waiting) == 1 and waiting[0]["start"] == "2026-12-02T07:00:00.000Z" and waiting[0]["end"] is None


def test_ended_instances_end_at_their_completion() -> None:
    failure = ev.FailureDetails(message="boom", error_type="ValueError")
    history = [*fan_out_history()[:2],
               ev.ExecutionCompleted(event_id=-1, timestamp=at(5), runtime_status=S.FAILED, failure_details=failure)]
    result = timeline(history, now=at(99), running=False)
    assert result["end"] == "2026-12-02T07:00:05.000Z"
    assert result["bars"][0]["status"] == "failed" and result["bars"][0]["end"] == "2026-12-02T07:00:05.000Z"
    assert timeline([], now=at(0), running=False) == {"start": None, "end": None, "bars": []}


@pytest.mark.parametrize("path, public", [("/", True), ("/dashboard/static/app.js", True),
                                          ("/dashboard/static/../api/hub", False), ("/dashboard/api/hub", False),
                                          ("/dashboard/api/instances", False)])
def test_only_the_page_and_its_files_are_public(path: str, public: bool) -> None:
    import asyncio

    reached = []

    async def app(scope: dict, receive: object, send: object) -> None:
        reached.append(scope["path"])

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    guard = ApiKeyMiddleware(app, api_key="k")  # type: ignore[arg-type]
    asyncio.run(guard({"type": "http", "path": path, "headers": [], "query_string": b""}, receive, send))
    assert bool(reached) == public
    if not public:
        assert sent[0]["status"] == 401


def test_partition_owners_are_named_by_worker_id() -> None:
    from durable_kafka._dashboard_hub import worker_of

    assert worker_of("shop", "shop.orchestrations.w-1.eu", "rdkafka", "m1") == "w-1.eu"
    assert worker_of("shop", "shop.activities.w-2", "rdkafka", "m2") == "w-2"
    assert worker_of("shop", None, "billing-7", "m3") == "billing-7"
    assert worker_of("shop", None, "rdkafka", "rdkafka-abc") == "rdkafka-abc"
