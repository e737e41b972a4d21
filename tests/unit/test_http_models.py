"""The HTTP API's parsing and JSON shapes, and serve's bind check (no server, no broker)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from durable_kafka._cli_serve import check_bind, is_loopback
from durable_kafka._client_models import OrchestrationState, OrchestrationStatus
from durable_kafka._http_models import (
    history_json,
    parse_bool,
    parse_duration,
    parse_json_body,
    parse_statuses,
    parse_time,
    parse_top,
    status_json,
)
from durable_kafka.errors import ConfigurationError, InvalidArgumentError
from durable_kafka.streams.events import FailureDetails, TaskCompleted, TaskFailed

T = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)


def test_durations_statuses_bools_times_and_top() -> None:
    assert parse_duration("30s") == 30 and parse_duration("500ms") == 0.5 and parse_duration("2m") == 120
    assert parse_duration("7") == 7 and parse_duration(None) is None
    for bad in ("soon", "-1s", "1h", "601s"):
        with pytest.raises(InvalidArgumentError, match="waitForCompletion"):
            parse_duration(bad)
    assert parse_statuses("Running, pending,ContinuedAsNew") == [
        OrchestrationStatus.RUNNING, OrchestrationStatus.PENDING, OrchestrationStatus.CONTINUED_AS_NEW]
    with pytest.raises(InvalidArgumentError, match="Bogus"):
        parse_statuses("Running,Bogus")
    assert parse_bool("x", "TRUE", False) is True and parse_bool("x", None, True) is True
    with pytest.raises(InvalidArgumentError, match="showInput"):
        parse_bool("showInput", "maybe", False)
    assert parse_time("t", "2026-01-02T03:04:05Z") == T.replace(microsecond=0)
    assert parse_time("t", "2026-01-02T03:04:05").tzinfo == timezone.utc
    with pytest.raises(InvalidArgumentError, match="createdTimeFrom"):
        parse_time("createdTimeFrom", "yesterday")
    assert parse_top("5", 100) == 5 and parse_top(None, 100) == 100
    for bad in ("0", "-3", "x", "10001"):
        with pytest.raises(InvalidArgumentError, match="top"):
            parse_top(bad, 100)
    assert parse_json_body(b"  ", "input") is None and parse_json_body(b'{"a":1}', "input") == {"a": 1}
    with pytest.raises(InvalidArgumentError, match="not valid JSON"):
        parse_json_body(b"{", "input")


def test_status_json_uses_durable_functions_names() -> None:
    state = OrchestrationState("i1", "orders", OrchestrationStatus.FAILED, T, T, '{"n": 1}', None, '"half"',
                               FailureDetails(message="boom", error_type="builtins.ValueError"))
    body = status_json(state, show_input=True)
    assert body == {"name": "orders", "instanceId": "i1", "runtimeStatus": "Failed", "input": {"n": 1},
                    "customStatus": "half", "output": "boom", "createdTime": "2026-01-02T03:04:05.678Z",
                    "lastUpdatedTime": "2026-01-02T03:04:05.678Z",
                    "failureDetails": {"errorType": "builtins.ValueError", "errorMessage": "boom",
                                       "stackTrace": None}}
    assert status_json(state, show_input=False)["input"] is None


def test_failure_json_shows_the_cause_chain_as_inner_failures() -> None:
    inner = FailureDetails(message="disk full", error_type="builtins.OSError", stack_trace="t2")
    state = OrchestrationState("i1", "orders", OrchestrationStatus.FAILED, T, T, None, None, None,
                               FailureDetails("save failed", "orders.SaveError", "t1", inner_failure=inner))
    assert status_json(state, show_input=True)["failureDetails"] == {
        "errorType": "orders.SaveError", "errorMessage": "save failed", "stackTrace": "t1",
        "innerFailure": {"errorType": "builtins.OSError", "errorMessage": "disk full", "stackTrace": "t2"}}
    failed = TaskFailed(event_id=-1, timestamp=T, task_scheduled_id=1, failure_details=state.failure_details)
    shown = history_json([failed], show_output=True)[0]["FailureDetails"]
    assert shown["InnerFailure"] == {"Message": "disk full", "ErrorType": "builtins.OSError", "StackTrace": "t2",
                                     "InnerFailure": None}


def test_history_json_hides_results_unless_asked() -> None:
    event = TaskCompleted(event_id=-1, timestamp=T, task_scheduled_id=3, result='"hi"')
    assert history_json([event], show_output=True) == [
        {"EventType": "TaskCompleted", "EventId": -1, "Timestamp": "2026-01-02T03:04:05.678Z",
         "TaskScheduledId": 3, "Result": "hi"}]
    assert "Result" not in history_json([event], show_output=False)[0]


def test_serve_needs_a_key_beyond_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", "key")
    with pytest.raises(ConfigurationError, match="API key"):
        check_bind("0.0.0.0", None)
