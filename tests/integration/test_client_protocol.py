"""The Client's side of the client <-> processor protocol, on the real broker, without a processor.

These are protocol tests of the client alone: where the orchestration processor would answer,
the test writes by hand what the protocol says it writes (InstanceStatus snapshots on
``<hub>.status``, HistoryRecords on ``<hub>.history``, ClientReplies on ``<hub>.replies``), always
inside Kafka transactions as the processor does. End-to-end behaviour with the real processor
is tested elsewhere.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from durable_kafka.client import (
    Client,
    OrchestrationQuery,
    OrchestrationStatus,
    PurgeInstancesResult,
)
from durable_kafka.errors import (
    ClientError,
    InstanceAlreadyExistsError,
    InstanceNotFoundError,
    InvalidArgumentError,
    InvalidInstanceIdError,
    OrchestrationFailedError,
    TimeoutError,
)
from durable_kafka.streams.codec import Codec
from durable_kafka.streams.config import consumer_config, producer_config
from durable_kafka.streams.events import (
    ClientReply,
    EventRaised,
    ExecutionStarted,
    FailureDetails,
    HistoryRecord,
    InstanceStatus,
    OrchestratorMessage,
    OrchestratorStarted,
    PurgeOrchestration,
    RaiseEvent,
    ResumeOrchestration,
    StartOrchestration,
    SuspendOrchestration,
    TaskScheduled,
    TerminateOrchestration,
)

pytestmark = pytest.mark.integration

CODEC = Codec.default()
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def my_orchestrator(ctx: object, value: object) -> None:  # only its name is used
    return None


# --------------------------------------------------------------------------- hand-written processor output


class TxWriter:
    """Writes records the way the processor does: in committed Kafka transactions."""

    def __init__(self, bootstrap: str) -> None:
        self.producer = Producer(
            producer_config(bootstrap, **{"transactional.id": f"test-{uuid.uuid4().hex}"})
        )
        self.producer.init_transactions(30)

    def write(self, topic: str, records: list[tuple[str, object | None]], *, commit: bool = True) -> None:
        self.producer.begin_transaction()
        for key, value in records:
            encoded = None if value is None else CODEC.encode(value)
            self.producer.produce(topic, key=key.encode(), value=encoded)
        if commit:
            self.producer.commit_transaction(30)
        else:  # flush first: abort would otherwise drop the records before they reach the broker
            assert self.producer.flush(30) == 0
            self.producer.abort_transaction(30)


def status(instance_id: str, runtime_status: str = "RUNNING", *, created: datetime = T0,
           execution_id: str = "exec-1", **fields: object) -> InstanceStatus:
    return InstanceStatus(
        instance_id=instance_id,
        name="my_orchestrator",
        execution_id=execution_id,
        runtime_status=runtime_status,
        created_at=created,
        last_updated_at=created + timedelta(seconds=1),
        **fields,
    )


class FakeProcessor:
    """Consumes requests from orchestrator-events and answers those with reply_to via ``answer``."""

    def __init__(self, hub, answer: Callable[[OrchestratorMessage], ClientReply | None]) -> None:
        self.hub, self.answer = hub, answer
        self.seen: list[OrchestratorMessage] = []
        self.writer = TxWriter(hub.bootstrap)
        self.consumer = Consumer(consumer_config(hub.bootstrap, f"fake-{uuid.uuid4().hex}"))
        self.consumer.assign([TopicPartition(hub.topics.orchestrator_events, p, OFFSET_BEGINNING)
                              for p in range(hub.partitions)])
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            for message in self.consumer.consume(100, 0.1):
                if message.error() is not None:
                    continue
                request = CODEC.decode(message.value(), expected=OrchestratorMessage)
                assert message.key() == request.instance_id.encode()
                self.seen.append(request)
                reply = self.answer(request)
                if reply is not None and request.reply_to is not None:
                    self.writer.write(self.hub.topics.replies, [(request.reply_to, reply)])

    def wait_seen(self, count: int) -> list[OrchestratorMessage]:
        deadline = time.monotonic() + 30
        while len(self.seen) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.seen) >= count, f"saw {len(self.seen)} of {count} requests"
        return self.seen

    def close(self) -> None:
        self.stopping.set()
        self.thread.join()
        self.consumer.close()


@pytest.fixture
def client(hub) -> Iterator[Client]:
    with Client(hub.bootstrap, hub) as c:
        yield c


@pytest.fixture
def writer(hub) -> TxWriter:
    return TxWriter(hub.bootstrap)


def accept(request: OrchestratorMessage) -> ClientReply:
    return ClientReply(request_id=request.id, instance_id=request.instance_id, accepted=True)


@pytest.fixture
def fake(hub) -> Iterator[Callable[..., FakeProcessor]]:
    made: list[FakeProcessor] = []

    def make(answer: Callable[[OrchestratorMessage], ClientReply | None] = accept) -> FakeProcessor:
        made.append(FakeProcessor(hub, answer))
        return made[-1]

    yield make
    for processor in made:
        processor.close()


# --------------------------------------------------------------------------- argument checks (nothing is written)


BAD_IDS = ["", "a/b", "a#b", "a?b", "a\\b", "@entity@1", "x" * 101, "a\x01", None, 7]


def test_invalid_instance_ids_are_rejected_before_anything_is_written(hub, client, fake) -> None:
    processor = fake()
    for bad_id in BAD_IDS:
        calls = [
            lambda: client.raise_orchestration_event(bad_id, "go"),
            lambda: client.terminate_orchestration(bad_id),
            lambda: client.suspend_orchestration(bad_id),
            lambda: client.resume_orchestration(bad_id),
            lambda: client.restart_orchestration(bad_id),
            lambda: client.purge_orchestration(bad_id),
            lambda: client.get_orchestration_state(bad_id),
            lambda: client.get_orchestration_history(bad_id),
            lambda: client.wait_for_orchestration_start(bad_id, timeout=0),
        ]
        if bad_id is not None:  # None asks schedule_new_orchestration for a generated id
            calls.append(lambda: client.schedule_new_orchestration("o", instance_id=bad_id))
        for call in calls:
            with pytest.raises(InvalidInstanceIdError):
                call()
    client.raise_orchestration_event("marker", "after")  # a valid one, written after the bad ones
    seen = processor.wait_seen(1)
    time.sleep(0.3)  # let any wrongly written request arrive too
    assert [m.instance_id for m in processor.seen] == ["marker"] and seen[0].body.name == "after"


def test_closed_client_stops_its_threads_and_refuses_calls(hub, writer) -> None:
    writer.write(hub.topics.status, [("c", status("c"))])
    before = set(threading.enumerate())
    c = Client(hub.bootstrap, hub)
    assert c.get_orchestration_state("c") is not None
    assert set(threading.enumerate()) - before  # the status reader runs
    c.close()
    assert set(threading.enumerate()) - before == set()
    with pytest.raises(ClientError, match="closed"):
        c.get_orchestration_state("c")
    with pytest.raises(ClientError, match="closed"):
        c.raise_orchestration_event("c", "e")
    c.close()  # idempotent


@pytest.mark.parametrize(
    "kwargs",
    [
        {"orchestrator": 42},
        {"orchestrator": "my_orchestrator", "tags": {"a": 1}},
        {"orchestrator": "my_orchestrator", "tags": ["a"]},
        {"orchestrator": "my_orchestrator", "start_at": "tomorrow"},
        {"orchestrator": "my_orchestrator", "input": object()},
        {"orchestrator": "my_orchestrator", "timeout": "soon"},
        {"orchestrator": ""},
    ],
)
def test_bad_argument_types_raise_invalid_argument(kwargs: dict) -> None:
    with Client("127.0.0.1:1", "nobroker") as offline:  # proves nothing touches Kafka
        with pytest.raises(InvalidArgumentError):
            offline.schedule_new_orchestration(**kwargs)


def test_bad_arguments_of_other_calls() -> None:
    with Client("127.0.0.1:1", "nobroker") as offline:
        with pytest.raises(InvalidArgumentError):
            offline.raise_orchestration_event("i", 5)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError):
            offline.raise_orchestration_event("i", "e", data={1, 2})
        with pytest.raises(InvalidArgumentError):
            offline.terminate_orchestration("i", recursive="yes")  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError):
            offline.query_orchestration_states(OrchestrationQuery(max_instance_count=0))
        with pytest.raises(InvalidArgumentError):
            offline.get_all_orchestration_states(OrchestrationQuery(runtime_status=["RUNNING"]))


# --------------------------------------------------------------------------- the status cache


def test_state_comes_from_status_snapshots_and_tombstones_remove_it(hub, client, writer) -> None:
    assert client.get_orchestration_state("s1") is None
    writer.write(hub.topics.status, [("s1", status("s1", input='{"n": 1}'))])
    state = client.get_orchestration_state("s1")  # read-your-writes: no waiting in the test
    assert state is not None and state.runtime_status is OrchestrationStatus.RUNNING
    assert state.name == "my_orchestrator" and state.get_input() == {"n": 1}
    assert state.created_at == T0

    failure = FailureDetails(message="it broke", error_type="ValueError", stack_trace="tb")
    writer.write(hub.topics.status, [("s1", status(
        "s1", "FAILED", input='{"n": 1}', output=None, custom_status='"stage 2"',
        failure_details=failure,
    ))])
    state = client.get_orchestration_state("s1")
    assert state.runtime_status is OrchestrationStatus.FAILED
    assert state.get_custom_status() == "stage 2" and state.failure_details == failure
    with pytest.raises(OrchestrationFailedError) as info:
        state.raise_if_failed()
    assert info.value.failure_details == failure and "it broke" in str(info.value)
    lean = client.get_orchestration_state("s1", fetch_payloads=False)
    assert lean.serialized_input is None and lean.serialized_custom_status is None

    writer.write(hub.topics.status, [("s1", None)])
    assert client.get_orchestration_state("s1") is None


def test_aborted_snapshots_are_never_seen(hub, client, writer) -> None:
    writer.write(hub.topics.status, [("ab", status("ab", "RUNNING"))])
    writer.write(hub.topics.status, [("ab", status("ab", "COMPLETED"))], commit=False)
    assert client.get_orchestration_state("ab").runtime_status is OrchestrationStatus.RUNNING


def test_a_second_client_sees_existing_statuses(hub, writer) -> None:
    writer.write(hub.topics.status, [(f"m{i}", status(f"m{i}")) for i in range(5)])
    with Client(hub.bootstrap, hub) as one, Client(hub.bootstrap, hub) as two:
        assert one.get_orchestration_state("m3") is not None
        assert len(two.get_all_orchestration_states()) == 5


def test_paged_queries_filter_and_order(hub, client, writer) -> None:
    records = []
    for i in range(7):
        runtime = "COMPLETED" if i % 2 else "RUNNING"
        records.append((f"order-{i}", status(f"order-{i}", runtime, created=T0 + timedelta(minutes=i),
                                             input=str(i))))
    records.append(("other-1", status("other-1", "COMPLETED", created=T0)))
    writer.write(hub.topics.status, records)

    everything = client.get_all_orchestration_states()
    assert [s.instance_id for s in everything] == [
        "order-0", "other-1", "order-1", "order-2", "order-3", "order-4", "order-5", "order-6"]
    assert all(s.serialized_input is None for s in everything)  # fetch_inputs_and_outputs=False

    query = OrchestrationQuery(instance_id_prefix="order-", max_instance_count=2,
                               fetch_inputs_and_outputs=True)
    pages, token = [], None
    while True:
        query.continuation_token = token
        page, token = client.query_orchestration_states(query)
        pages.append([s.get_input() for s in page])
        if token is None:
            break
    assert pages == [[0, 1], [2, 3], [4, 5], [6]]

    completed = client.get_all_orchestration_states(OrchestrationQuery(
        runtime_status=[OrchestrationStatus.COMPLETED], max_instance_count=1))
    assert [s.instance_id for s in completed] == ["other-1", "order-1", "order-3", "order-5"]

    window = client.get_all_orchestration_states(OrchestrationQuery(
        created_time_from=T0 + timedelta(minutes=2), created_time_to=T0 + timedelta(minutes=4)))
    assert [s.instance_id for s in window] == ["order-2", "order-3", "order-4"]
    with pytest.raises(InvalidArgumentError):
        client.query_orchestration_states(OrchestrationQuery(continuation_token="garbage!"))


def test_waits_wake_on_new_snapshots_and_time_out(hub, client, writer) -> None:
    writer.write(hub.topics.status, [("w1", status("w1", "PENDING"))])
    with pytest.raises(TimeoutError) as info:
        client.wait_for_orchestration_completion("w1", timeout=0.5)
    assert isinstance(info.value, builtins_timeout_error()) and "w1" in str(info.value)
    with pytest.raises(TimeoutError):
        client.wait_for_orchestration_start("w1", timeout=0.3)

    def later() -> None:
        time.sleep(0.3)
        writer.write(hub.topics.status, [("w1", status("w1", "RUNNING"))])
        time.sleep(0.3)
        writer.write(hub.topics.status, [("w1", status("w1", "COMPLETED", output='"done"'))])

    thread = threading.Thread(target=later)
    thread.start()
    started = client.wait_for_orchestration_start("w1", timeout=30)
    assert started.runtime_status in (OrchestrationStatus.RUNNING, OrchestrationStatus.COMPLETED)
    assert started.serialized_output is None  # fetch_payloads=False by default here
    done = client.wait_for_orchestration_completion("w1", timeout=30)
    thread.join()
    assert done.runtime_status is OrchestrationStatus.COMPLETED and done.get_output() == "done"


def builtins_timeout_error() -> type:
    import builtins

    return builtins.TimeoutError


# --------------------------------------------------------------------------- requests and replies


def test_start_waits_for_acceptance_and_sends_the_protocol_message(hub, client, fake) -> None:
    processor = fake()
    start_at = datetime(2030, 1, 1, tzinfo=timezone.utc)
    instance_id = client.schedule_new_orchestration(
        my_orchestrator, input={"x": [1, 2]}, instance_id="start-1", start_at=start_at,
        tags={"team": "a"})
    assert instance_id == "start-1"
    [request] = processor.wait_seen(1)
    assert request.reply_to == client.client_id and request.instance_id == "start-1"
    body = request.body
    assert isinstance(body, StartOrchestration)
    assert body.name == "my_orchestrator" and json.loads(body.input) == {"x": [1, 2]}
    assert body.scheduled_start_at == start_at and body.tags == {"team": "a"}
    assert len(body.execution_id) == 32

    generated = client.schedule_new_orchestration("my_orchestrator")
    assert len(generated) == 32 and processor.wait_seen(2)[1].body.input is None


def test_start_of_an_existing_instance_raises_already_exists(hub, client, fake) -> None:
    """Protocol test of the client alone: the fake processor's reply says the id is taken."""

    def refuse(request: OrchestratorMessage) -> ClientReply:
        return ClientReply(request_id=request.id, instance_id=request.instance_id, accepted=False,
                           error_type="InstanceAlreadyExistsError",
                           message=f"instance {request.instance_id!r} is RUNNING")

    fake(refuse)
    with pytest.raises(InstanceAlreadyExistsError, match="'taken' is RUNNING"):
        client.schedule_new_orchestration("my_orchestrator", instance_id="taken")


def test_other_rejections_are_client_errors(hub, client, fake) -> None:
    fake(lambda r: ClientReply(request_id=r.id, instance_id=r.instance_id, accepted=False,
                               error_type="SomethingOdd", message="no way"))
    with pytest.raises(ClientError, match="SomethingOdd: no way"):
        client.schedule_new_orchestration("my_orchestrator", instance_id="odd")


def test_replies_to_other_clients_are_ignored(hub, fake) -> None:
    """Two clients in one process share the replies topic; each gets only its own answer."""
    fake()
    with Client(hub.bootstrap, hub) as one, Client(hub.bootstrap, hub) as two:
        ids: dict[str, str] = {}

        def start(name: str, c: Client) -> None:
            ids[name] = c.schedule_new_orchestration("my_orchestrator", instance_id=name)

        threads = [threading.Thread(target=start, args=(n, c)) for n, c in (("c1", one), ("c2", two))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert ids == {"c1": "c1", "c2": "c2"}


def test_no_reply_times_out(hub, client) -> None:
    with pytest.raises(TimeoutError, match="no answer to StartOrchestration"):
        client.schedule_new_orchestration("my_orchestrator", instance_id="nobody", timeout=0.5)


def test_bulk_start_does_not_wait(hub, client, fake) -> None:
    processor = fake(lambda r: None)  # never answers
    ids = [client.schedule_new_orchestration("my_orchestrator", instance_id=f"bulk-{i}",
                                             wait_for_acceptance=False) for i in range(3)]
    client.flush()
    assert ids == ["bulk-0", "bulk-1", "bulk-2"]
    assert sorted(m.instance_id for m in processor.wait_seen(3)) == ids


def test_fire_and_forget_commands(hub, client, fake) -> None:
    processor = fake()
    client.raise_orchestration_event("cmd", "approval", data={"ok": True})
    client.suspend_orchestration("cmd", reason="hold")
    client.resume_orchestration("cmd")
    client.terminate_orchestration("cmd", output="stopped", recursive=False)
    bodies = [m.body for m in processor.wait_seen(4)]  # one key, one partition: in order
    assert bodies == [
        RaiseEvent(name="approval", input='{"ok": true}'),
        SuspendOrchestration(reason="hold"),
        ResumeOrchestration(reason=None),
        TerminateOrchestration(output='"stopped"', recursive=False),
    ]
    assert all(m.reply_to is None for m in processor.seen)
    assert len({m.id for m in processor.seen}) == 4


def test_purge_reports_the_deleted_count(hub, client, fake) -> None:
    def answer(request: OrchestratorMessage) -> ClientReply:
        assert isinstance(request.body, PurgeOrchestration)
        if request.instance_id == "gone":
            return ClientReply(request_id=request.id, instance_id="gone", accepted=False,
                               error_type="InstanceNotFoundError", message="no instance 'gone'")
        return ClientReply(request_id=request.id, instance_id=request.instance_id, accepted=True,
                           message=json.dumps({"deleted": 3}))

    processor = fake(answer)
    assert client.purge_orchestration("parent") == PurgeInstancesResult(deleted_instance_count=3)
    assert processor.seen[0].body == PurgeOrchestration(recursive=True)
    assert client.purge_orchestration("gone", recursive=False).deleted_instance_count == 0


def test_restart_reuses_name_and_serialized_input(hub, client, writer, fake) -> None:
    processor = fake()
    with pytest.raises(InstanceNotFoundError):
        client.restart_orchestration("never")
    original = '{"a":1,  "b":[2]}'  # odd spacing: passed through untouched, not re-encoded
    writer.write(hub.topics.status, [("again", status("again", "COMPLETED", input=original))])
    assert client.restart_orchestration("again") == "again"
    new_id = client.restart_orchestration("again", restart_with_new_instance_id=True)
    assert new_id != "again"
    first, second = processor.wait_seen(2)
    assert (first.instance_id, second.instance_id) == ("again", new_id)
    for message in (first, second):
        assert message.body.name == "my_orchestrator" and message.body.input == original
    assert first.body.execution_id != second.body.execution_id


# --------------------------------------------------------------------------- history


def test_history_of_the_current_execution_in_order_without_duplicates(hub, client, writer) -> None:
    with pytest.raises(InstanceNotFoundError):
        client.get_orchestration_history("hist")

    def record(execution: str, index: int, event: object) -> HistoryRecord:
        return HistoryRecord(id=f"hist/{execution}/{index}", instance_id="hist",
                             execution_id=execution, index=index, event=event)

    started = ExecutionStarted(event_id=-1, timestamp=T0, name="my_orchestrator", execution_id="e2")
    episode = OrchestratorStarted(event_id=-1, timestamp=T0)
    scheduled = TaskScheduled(event_id=0, timestamp=T0, name="double", input="1")
    raised = EventRaised(event_id=-1, timestamp=T0, name="go", input=None)
    writer.write(hub.topics.history, [
        ("hist", record("e1", 0, ExecutionStarted(event_id=-1, timestamp=T0, name="old",
                                                   execution_id="e1"))),
        ("hist", record("e2", 1, episode)),
        ("hist", record("e2", 0, started)),
    ])
    writer.write(hub.topics.history, [("hist", record("e2", 2, scheduled)),
                                      ("hist", record("e2", 1, episode))])  # a redelivery
    writer.write(hub.topics.history, [("hist", record("e2", 3, raised))], commit=False)
    writer.write(hub.topics.status, [("hist", status("hist", execution_id="e2"))])

    events = client.get_orchestration_history("hist")
    assert events == [started, episode, scheduled]
