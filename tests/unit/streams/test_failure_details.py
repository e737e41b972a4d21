"""FailureDetails as durabletask reports them: qualified type names, cause chains, is_caused_by."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from pathlib import Path

import fastavro
import pytest

from durable_kafka.errors import InvalidArgumentError, TaskFailedError
from durable_kafka.processors import history_json
from durable_kafka.processors.context import failure_details_of
from durable_kafka.streams import events as ev
from durable_kafka.streams.codec import MARKER, Codec, _defined_names, _expand, schema_fingerprint
from durable_kafka.streams.events import FailureDetails
from durable_kafka.streams.failures import qualified_name

ROOT = Path(__file__).resolve().parents[3]
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


class BaseOrderError(Exception):
    pass


class OutOfStock(BaseOrderError):
    pass


def _fd(error_type: str) -> FailureDetails:
    return FailureDetails(message="boom", error_type=error_type)


def _raised(error: BaseException) -> BaseException:
    try:
        raise error
    except BaseException as caught:  # noqa: BLE001 - the test wants the traceback attached
        return caught


# --------------------------------------------------------------------------- names


def test_qualified_names_keep_builtins_and_nested_qualnames() -> None:
    class Outer:
        class Inner(Exception):
            pass

    assert qualified_name(ValueError) == "builtins.ValueError"
    assert qualified_name(OutOfStock) == f"{__name__}.OutOfStock"
    assert qualified_name(Outer.Inner).endswith(".Outer.Inner")
    assert qualified_name(TaskFailedError) == "durable_kafka.errors.TaskFailedError"


def test_from_exception_records_the_qualified_type_message_and_stack() -> None:
    details = FailureDetails.from_exception(_raised(OutOfStock("no widgets")))
    assert details.error_type == f"{__name__}.OutOfStock"
    assert details.message == "no widgets"
    assert "OutOfStock: no widgets" in (details.stack_trace or "") and details.inner_failure is None


# --------------------------------------------------------------------------- cause chains


def test_explicit_cause_becomes_the_inner_failure() -> None:
    try:
        try:
            raise KeyError("sku-1")
        except KeyError as inner:
            raise OutOfStock("no widgets") from inner
    except OutOfStock as outer:
        details = FailureDetails.from_exception(outer)
    assert details.inner_failure is not None
    assert details.inner_failure.error_type == "builtins.KeyError"
    assert details.inner_failure.message == "'sku-1'"
    assert "KeyError" in (details.inner_failure.stack_trace or "")
    assert details.inner_failure.inner_failure is None


def test_implicit_context_is_followed_unless_suppressed() -> None:
    try:
        try:
            raise KeyError("a")
        except KeyError:
            raise ValueError("while handling")  # noqa: B904 - the implicit context is the point
    except ValueError as error:
        assert FailureDetails.from_exception(error).inner_failure.error_type == "builtins.KeyError"
    try:
        try:
            raise KeyError("a")
        except KeyError:
            raise ValueError("detached") from None
    except ValueError as error:
        assert FailureDetails.from_exception(error).inner_failure is None


def test_a_cyclic_or_very_long_chain_stops() -> None:
    a, b = ValueError("a"), KeyError("b")
    a.__cause__, b.__cause__ = b, a
    details = FailureDetails.from_exception(a)
    assert details.inner_failure.error_type == "builtins.KeyError" and details.inner_failure.inner_failure is None
    errors = [ValueError(str(i)) for i in range(30)]
    for outer, inner in zip(errors, errors[1:]):
        outer.__cause__ = inner
    depth, link = 0, FailureDetails.from_exception(errors[0])
    while link.inner_failure is not None:
        depth, link = depth + 1, link.inner_failure
    assert depth == 10


def test_an_unhandled_task_failure_keeps_the_task_failure_as_inner() -> None:
    activity_failure = FailureDetails(message="no widgets", error_type=f"{__name__}.OutOfStock", stack_trace="remote")
    error = _raised(TaskFailedError("inst: Activity task #1 failed: no widgets", activity_failure))
    details = failure_details_of(error)
    assert details.error_type == "durable_kafka.errors.TaskFailedError"
    assert details.inner_failure == activity_failure
    assert "Caused by" in (details.stack_trace or "")  # the remote stack stays readable in one text
    assert details.is_caused_by(TaskFailedError) and details.inner_failure.is_caused_by(BaseOrderError)


# --------------------------------------------------------------------------- is_caused_by


def test_is_caused_by_a_type_matches_the_type_and_its_bases() -> None:
    details = FailureDetails.from_exception(OutOfStock("x"))
    assert details.is_caused_by(OutOfStock) and details.is_caused_by(BaseOrderError)
    assert details.is_caused_by(Exception) and details.is_caused_by(BaseException)
    assert not details.is_caused_by(KeyError)
    assert not _fd(qualified_name(BaseOrderError)).is_caused_by(OutOfStock)  # not a more derived type
    assert _fd("builtins.FileNotFoundError").is_caused_by(OSError)


def test_is_caused_by_a_qualified_name_from_another_module_does_not_match_a_local_type() -> None:
    assert not _fd("some.other.module.ValueError").is_caused_by(ValueError)
    assert not _fd("pkg_a.Foo").is_caused_by("pkg_b.Foo")


def test_is_caused_by_a_name_matches_the_qualified_or_short_name() -> None:
    details = _fd("builtins.ValueError")
    assert details.is_caused_by("builtins.ValueError") and details.is_caused_by("ValueError")
    assert not details.is_caused_by("KeyError") and not details.is_caused_by("")


def test_bare_names_of_older_histories_still_match() -> None:
    assert _fd("ValueError").is_caused_by(ValueError)
    assert _fd("FileNotFoundError").is_caused_by(OSError)
    assert _fd("ValueError").is_caused_by("builtins.ValueError")
    assert not _fd("").is_caused_by(ValueError)


def test_is_caused_by_rejects_what_is_not_an_exception_type() -> None:
    for bad in (int, 123, ValueError("x")):
        with pytest.raises(TypeError):
            _fd("builtins.ValueError").is_caused_by(bad)  # type: ignore[arg-type]


def test_engine_errors_are_matched_by_their_class() -> None:
    details = _fd(qualified_name(InvalidArgumentError))
    assert details.is_caused_by(InvalidArgumentError) and details.is_caused_by(ValueError)


# --------------------------------------------------------------------------- wire format


def test_the_chain_round_trips_through_avro_and_history_json() -> None:
    chain = FailureDetails("outer", "a.B", "t", inner_failure=FailureDetails("inner", "builtins.KeyError", None))
    event = ev.TaskFailed(-1, T0, task_scheduled_id=3, failure_details=chain)
    codec = Codec.default()
    assert codec.decode(codec.encode(event)) == event
    assert history_json.from_json(history_json.to_json(event)) == event


def test_a_failure_recorded_before_inner_failures_existed_still_decodes() -> None:
    """The previous release's TaskFailed (FailureDetails without inner_failure) reads with the new field None."""
    codec = Codec.default()
    named = dict(codec._named)
    old = json.loads((ROOT / "schemas" / "previous" / "r2" / "FailureDetails.avsc").read_text())
    named["durable_kafka.FailureDetails"] = old
    schema = named["durable_kafka.TaskFailed"]
    standalone = _expand(dict(schema), named, _defined_names(schema), set())
    buf = io.BytesIO()
    buf.write(MARKER + schema_fingerprint(standalone).to_bytes(8, "little"))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(standalone), {
        "event_id": -1, "timestamp": T0, "task_scheduled_id": 2,
        "failure_details": {"message": "m", "error_type": "ValueError", "stack_trace": None}})
    data = buf.getvalue()
    assert data[2:10] != codec.encode(ev.TaskFailed(-1, T0, 2, FailureDetails("m", "ValueError")))[2:10]
    decoded = codec.decode(data, ev.TaskFailed)
    assert decoded.failure_details == FailureDetails("m", "ValueError")
    assert decoded.failure_details.is_caused_by(ValueError)  # the bare name of an old record still matches
    old_json = {"type": "FailureDetails", "message": "m", "error_type": "ValueError", "stack_trace": None}
    assert history_json.from_json(old_json).inner_failure is None


def test_a_task_failed_error_built_from_an_exception_describes_it() -> None:
    err = TaskFailedError("failed", ValueError("boom"))
    assert err.details.error_type == "builtins.ValueError"
    assert err.details.is_caused_by(ValueError) and err.details.is_caused_by(Exception)
    assert not err.details.is_caused_by(KeyError)
