"""One status enum: the codec hands members out, writes plain strings, refuses unknown names."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

import durable_kafka
from durable_kafka.errors import CorruptRecordError
from durable_kafka.streams import events as ev
from durable_kafka.streams.codec import Codec
from durable_kafka.streams.status import OrchestrationStatus

NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)


def test_the_client_exports_the_engine_enum() -> None:
    assert durable_kafka.OrchestrationStatus is OrchestrationStatus
    assert str(OrchestrationStatus.RUNNING) == "RUNNING"


@pytest.mark.parametrize("status", list(OrchestrationStatus))
def test_decoded_status_fields_are_members(status: OrchestrationStatus) -> None:
    codec = Codec.default()
    header = ev.InstanceHeader("i", "n", "e", status, NOW, NOW)
    snapshot = ev.InstanceStatus("i", "n", "e", status, NOW, NOW)
    for record in (header, snapshot):
        back = codec.decode(codec.encode(record))
        assert back.runtime_status is status
    done = ev.HistoryRecord("i/e/0", "i", "e", 0, ev.ExecutionCompleted(-1, NOW, runtime_status=status))
    assert codec.decode(codec.encode(done)).event.runtime_status is status


def test_an_unknown_status_name_is_a_corrupt_record() -> None:
    codec = Codec.default()
    data = codec.encode(ev.InstanceHeader("i", "n", "e", "NOT_A_STATUS", NOW, NOW))  # type: ignore[arg-type]
    with pytest.raises(CorruptRecordError, match="NOT_A_STATUS"):
        codec.decode(data)


def test_active_and_terminal() -> None:
    assert {s for s in OrchestrationStatus if s.is_active} == {"RUNNING", "PENDING", "SUSPENDED"}
    assert {s for s in OrchestrationStatus if s.is_terminal} == {"COMPLETED", "FAILED", "TERMINATED"}
