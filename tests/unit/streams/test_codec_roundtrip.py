"""Every record type survives encode -> decode unchanged, in the single-object byte layout."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from durable_kafka.errors import RecordEncodeError
from durable_kafka.streams import events as ev
from durable_kafka.streams.codec import HEADER_LENGTH, MARKER, Codec

T0 = datetime(2024, 5, 1, 12, 30, 15, 250_000, tzinfo=timezone.utc)
FAIL = ev.FailureDetails("card declined", "PaymentError", "Traceback (most recent call last):\n  ...")
INSTANCE, EXECUTION = "order-42", "7f3c2a9e"


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def history_events() -> list[ev.HistoryEvent]:
    """One realistic instance of every history event type, in HISTORY_EVENT_TYPES order."""
    return [
        ev.ExecutionStarted(-1, t(0), "process_order", EXECUTION, '{"order": 42}', "parent-1", "p-exec",
                            3, t(60), {"tenant": "acme", "prio": "high"}, "1.2"),
        ev.ExecutionCompleted(-1, t(1), "FAILED", None, FAIL),
        ev.ExecutionTerminated(-1, t(2), '"stopped by operator"', False),
        ev.ExecutionSuspended(-1, t(3), "maintenance"),
        ev.ExecutionResumed(-1, t(4), None),
        ev.TaskScheduled(0, t(5), "charge_card", '{"amount": 12.5}', {"region": "eu"}),
        ev.TaskCompleted(-1, t(6), 0, '{"receipt": "r-1"}'),
        ev.TaskFailed(-1, t(7), 0, FAIL),
        ev.SubOrchestrationInstanceCreated(1, t(8), "ship", "order-42:ship", '{"to": "Paris"}'),
        ev.SubOrchestrationInstanceCompleted(-1, t(9), 1, '"shipped"'),
        ev.SubOrchestrationInstanceFailed(-1, t(10), 1, ev.FailureDetails("no truck", "LogisticsError")),
        ev.TimerCreated(2, t(11), t(3600)),
        ev.TimerFired(-1, t(3600), 2, t(3600)),
        ev.EventRaised(-1, t(12), "approval", '{"ok": true}'),
        ev.EventSent(3, t(13), "other-instance", "ping", None),
        ev.OrchestratorStarted(-1, t(14)),
        ev.OrchestratorCompleted(-1, t(15)),
        ev.ContinueAsNew(-1, t(16), '{"round": 2}', True),
        ev.EntityOperationSignaled(4, t(17), "req-4", "add", "@counter@a", "5", t(120)),
        ev.EntityOperationCalled(5, t(18), "req-5", "get", "@counter@a", None, INSTANCE),
        ev.EntityOperationCompleted(-1, t(19), "req-5", "5"),
        ev.EntityOperationFailed(-1, t(20), "req-5", FAIL),
        ev.EntityLockRequested(6, t(21), "cs-1", ["@counter@a", "@counter@b"], 0, INSTANCE),
        ev.EntityLockGranted(-1, t(22), "cs-1"),
        ev.EntityUnlockSent(7, t(23), "cs-1", "@counter@a", INSTANCE),
        ev.ExecutionRewound(-1, t(24), "fixed the bug", [0, 1]),
    ]


def history_records() -> list[ev.HistoryRecord]:
    return [ev.HistoryRecord(f"{INSTANCE}/{EXECUTION}/{i}", INSTANCE, EXECUTION, i, e)
            for i, e in enumerate(history_events())]


def orchestrator_bodies() -> list[object]:
    return [
        ev.StartOrchestration("process_order", EXECUTION, '{"order": 42}', t(30), {"tenant": "acme"},
                              "parent-1", "p-exec", 9, [ev.EventRaised(-1, t(0), "approval", "true")]),
        ev.StartOrchestration("bare", "e2"),
        ev.RaiseEvent("approval", '{"ok": true}'),
        ev.TerminateOrchestration('"enough"', False),
        ev.SuspendOrchestration("maintenance"),
        ev.ResumeOrchestration(None),
        ev.PurgeOrchestration(False),
        ev.ActivityResult(EXECUTION, 0, '{"receipt": "r-1"}'),
        ev.ActivityResult(EXECUTION, 1, None, FAIL),
        ev.SubOrchestrationResult("p-exec", 9, '"done"'),
        ev.EntityResponse(EXECUTION, "req-5", "5", None, True),
        ev.RewindOrchestration("fixed the bug"),
    ]


def entity_messages() -> list[ev.EntityMessage]:
    bodies = [
        ev.SignalEntity("add", "5", t(120), INSTANCE),
        ev.CallEntity("get", "req-5", INSTANCE, EXECUTION, None),
        ev.LockEntities("cs-1", ["@counter@a", "@counter@b"], 0, INSTANCE, EXECUTION),
        ev.UnlockEntity("cs-1", INSTANCE),
    ]
    return [ev.EntityMessage(f"msg-{i}", "@counter@a", t(40 + i), b) for i, b in enumerate(bodies)]


def every_record() -> list[object]:
    """Realistic values of every top-level record, together touching every record type."""
    hist = history_records()
    return [
        *hist,
        ev.HistoryBatch(f"{INSTANCE}/{EXECUTION}/0+{len(hist)}", INSTANCE, EXECUTION, 0, [r.event for r in hist]),
        ev.HistoryBatch(f"{INSTANCE}/{EXECUTION}/7+0", INSTANCE, EXECUTION, 7, []),
        *[ev.OrchestratorMessage(f"m-{i}", INSTANCE, t(50 + i), b, "client-7" if i % 2 else None)
          for i, b in enumerate(orchestrator_bodies())],
        ev.ActivityRequest(f"{INSTANCE}/{EXECUTION}/0", INSTANCE, EXECUTION, 0, "charge_card",
                           '{"amount": 12.5}', {"region": "eu"}, 3),
        ev.TimerRecord(INSTANCE, EXECUTION, 2, t(3600)),
        *entity_messages(),
        ev.EntityState("@counter@a", "17", t(70), INSTANCE, "cs-1", entity_messages(), ["msg-0", "msg-1"]),
        ev.EntityState("@counter@b"),
        ev.InstanceStatus(INSTANCE, "process_order", EXECUTION, "FAILED", t(0), t(99), '{"order": 42}',
                          None, '"step 3"', FAIL, "parent-1", {"tenant": "acme"}, 25),
        ev.ClientReply("req-9", INSTANCE, False, "InstanceAlreadyExistsError", "order-42 is running"),
        ev.DeadLetter("orders.history/3/1200", "orders.history", 3, 1200, b"\xc3\x01\x00\xff garbage",
                      "unknown writer schema fingerprint 0x00ff", "UnknownSchemaError", t(80),
                      INSTANCE.encode(), INSTANCE),
        ev.InstanceHeader(INSTANCE, "process_order", EXECUTION, "SUSPENDED", t(0), t(99), '{"order": 42}',
                          None, None, None, "parent-1", "p-exec", 9, {"tenant": "acme"}, 25,
                          hist[:3], ["m-1", "m-2"], ["order-42:ship"]),
        ev.WorkerRegistration("w-billing-1", t(5), 10_000, ["process_order"], ["charge", "refund"],
                              ["account"], False),
    ]


def _record_types_in(value: object, found: set[type]) -> None:
    if dataclasses.is_dataclass(value):
        found.add(type(value))
        for f in dataclasses.fields(value):
            _record_types_in(getattr(value, f.name), found)
    elif isinstance(value, list):
        for item in value:
            _record_types_in(item, found)


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec.default()


def test_samples_cover_every_record_type() -> None:
    found: set[type] = set()
    _record_types_in(every_record(), found)
    assert set(ev.RECORD_TYPES) - found == set()
    assert {type(r) for r in every_record()} == set(ev.TOP_LEVEL_TYPES)


@pytest.mark.parametrize("record", every_record(), ids=lambda r: type(r).__name__ + (
    "." + type(r.event).__name__ if isinstance(r, ev.HistoryRecord) else
    "." + type(r.body).__name__ if isinstance(r, (ev.OrchestratorMessage, ev.EntityMessage)) else ""))
def test_round_trip(codec: Codec, record: object) -> None:
    data = codec.encode(record)
    assert data[:2] == MARKER
    assert int.from_bytes(data[2:HEADER_LENGTH], "little") == codec.fingerprint(type(record))
    decoded = codec.decode(data, type(record))
    assert decoded == record
    assert type(decoded) is type(record)
    assert codec.encode(decoded) == data


def test_nested_records_encode_on_their_own(codec: Codec) -> None:
    for value in [FAIL, *history_events(), *orchestrator_bodies(), *(m.body for m in entity_messages())]:
        assert codec.decode(codec.encode(value)) == value


def test_timestamps_decode_as_aware_utc_and_naive_input_means_utc(codec: Codec) -> None:
    naive = datetime(2024, 1, 2, 3, 4, 5, 678_000)
    aware_other_zone = datetime(2024, 1, 2, 5, 4, 5, 678_000, tzinfo=timezone(timedelta(hours=2)))
    for when in (naive, aware_other_zone):
        back = codec.decode(codec.encode(ev.TimerRecord("i", "e", 1, when)))
        assert back.fire_at.tzinfo is not None and back.fire_at.utcoffset() == timedelta(0)
        assert back.fire_at == datetime(2024, 1, 2, 3, 4, 5, 678_000, tzinfo=timezone.utc)


def test_timestamps_keep_milliseconds_only(codec: Codec) -> None:
    back = codec.decode(codec.encode(ev.TimerRecord("i", "e", 1, T0 + timedelta(microseconds=999))))
    assert back.fire_at == T0
    before_epoch = datetime(1969, 7, 20, 20, 17, 40, tzinfo=timezone.utc)
    assert codec.decode(codec.encode(ev.TimerRecord("i", "e", 1, before_epoch))).fire_at == before_epoch


def test_decode_accepts_bytearray_and_memoryview(codec: Codec) -> None:
    record = history_records()[5]
    data = codec.encode(record)
    assert codec.decode(bytearray(data)) == record
    assert codec.decode(memoryview(data)) == record


def test_default_codec_is_cached() -> None:
    assert Codec.default() is Codec.default()


def test_fingerprint_and_schema_lookups(codec: Codec) -> None:
    fp = codec.fingerprint(ev.HistoryRecord)
    assert fp == codec.fingerprint("HistoryRecord") == codec.fingerprint("durable_kafka.HistoryRecord")
    assert len(set(codec.known_fingerprints())) >= len(ev.RECORD_TYPES)
    schema = codec.schema_of(ev.HistoryRecord)
    assert schema == codec.schema_of(fp)
    assert schema["name"] == "HistoryRecord" and schema["namespace"] == "durable_kafka"
    event_union = schema["fields"][4]["type"]
    assert event_union[0]["name"] == "ExecutionStarted"  # inlined at first use: standalone
    schema["fields"].clear()  # a copy: the codec's own schema is untouched
    assert codec.schema_of(ev.HistoryRecord)["fields"]


@pytest.mark.parametrize("bad", [
    object(),
    ev.HistoryEvent(1, T0),  # the base class is not a record
    ev.TimerRecord("i", "e", "not-a-long", T0),  # type: ignore[arg-type]
    ev.TimerRecord("i", "e", 1, "2024-01-01"),  # type: ignore[arg-type]
    ev.HistoryRecord("x", "i", "e", 0, ev.RaiseEvent("not a history event")),  # type: ignore[arg-type]
    ev.OrchestratorMessage("m", "i", T0, None),  # type: ignore[arg-type]
    ev.ClientReply("r", "i", True, 5),  # type: ignore[arg-type]
    ev.ActivityRequest("a", "i", "e", 1, "n", tags={"k": 1}),  # type: ignore[dict-item]
    ev.ActivityRequest("a", "i", "e", 2**63, "n"),  # out of the long range
])
def test_encode_rejects_what_does_not_fit(codec: Codec, bad: object) -> None:
    with pytest.raises(RecordEncodeError):
        codec.encode(bad)
