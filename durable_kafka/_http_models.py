"""The HTTP API's wire shapes: parsing query values and bodies, and the JSON Durable Functions returns.

Kept apart from the routes so the names DF tools expect (camelCase fields, ``Running`` rather
than ``RUNNING``, PascalCase history fields) live in one place and can be unit-tested without
a server. Every parse error is an :class:`InvalidArgumentError` whose message names the
parameter, which the app turns into ``400`` with that reason.
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import datetime, timezone
from typing import Any

from durable_kafka._client_entities import EntityMetadata
from durable_kafka._client_models import OrchestrationState, OrchestrationStatus
from durable_kafka.errors import InvalidArgumentError
from durable_kafka.streams.events import FailureDetails, HistoryEvent

#: Our status names -> Durable Functions' ``runtimeStatus`` names.
DF_STATUS = {
    OrchestrationStatus.PENDING: "Pending",
    OrchestrationStatus.RUNNING: "Running",
    OrchestrationStatus.COMPLETED: "Completed",
    OrchestrationStatus.FAILED: "Failed",
    OrchestrationStatus.TERMINATED: "Terminated",
    OrchestrationStatus.SUSPENDED: "Suspended",
    OrchestrationStatus.CONTINUED_AS_NEW: "ContinuedAsNew",
}
_FROM_DF = {name.lower(): status for status, name in DF_STATUS.items()}

#: How long ``waitForCompletion`` may hold a request at most (a proxy would time out anyway).
MAX_WAIT_SECONDS = 600.0
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")


def parse_bool(name: str, value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise InvalidArgumentError(f"query parameter {name} must be true or false, got {value!r}")


def parse_top(value: str | None, default: int) -> int:
    if value is None or value == "":
        return default
    if not value.isdigit() or int(value) < 1 or int(value) > 10_000:
        raise InvalidArgumentError(f"query parameter top must be an integer from 1 to 10000, got {value!r}")
    return int(value)


def parse_time(name: str, value: str | None) -> datetime | None:
    """ISO 8601 (``Z`` allowed); a time without zone is UTC, as everywhere in the engine."""
    if value is None or value == "":
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise InvalidArgumentError(f"query parameter {name} must be an ISO 8601 time, got {value!r}") from None
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed


def parse_statuses(value: str | None) -> list[OrchestrationStatus] | None:
    """``runtimeStatus=Running,Pending`` (DF's names, any case; ours accepted too)."""
    if value is None or value.strip() == "":
        return None
    statuses = []
    for part in value.split(","):
        key = part.strip().lower().replace("_", "")
        if key not in _FROM_DF:
            raise InvalidArgumentError(
                f"unknown runtimeStatus {part.strip()!r}; expected one of {', '.join(DF_STATUS.values())}")
        statuses.append(_FROM_DF[key])
    return statuses


def parse_duration(value: str | None) -> float | None:
    """``waitForCompletion``: ``30s``, ``500ms``, ``2m`` or plain seconds; capped at MAX_WAIT_SECONDS."""
    if value is None or value == "":
        return None
    match = _DURATION.match(value)
    if match is None:
        raise InvalidArgumentError(f"waitForCompletion must be a duration like 30s, 500ms or 2m, got {value!r}")
    amount = float(match.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[match.group(2)]
    if amount > MAX_WAIT_SECONDS:
        raise InvalidArgumentError(f"waitForCompletion is at most {MAX_WAIT_SECONDS:.0f}s, got {value!r}")
    return amount


def parse_json_body(body: bytes, what: str) -> Any:
    """An empty body is no payload (None); anything else must be JSON."""
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise InvalidArgumentError(f"the request body ({what}) is not valid JSON: {error}") from None


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    utc = value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def status_json(state: OrchestrationState, *, show_input: bool,
                history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """DF's status object. A failed instance's ``output`` is its error message, as in DF."""
    body: dict[str, Any] = {
        "name": state.name,
        "instanceId": state.instance_id,
        "runtimeStatus": DF_STATUS[state.runtime_status],
        "input": state.get_input() if show_input else None,
        "customStatus": state.get_custom_status(),
        "output": state.get_output(),
        "createdTime": iso(state.created_at),
        "lastUpdatedTime": iso(state.last_updated_at),
    }
    if state.failure_details is not None:
        details = state.failure_details
        if body["output"] is None:
            body["output"] = details.message
        body["failureDetails"] = failure_json(details)
    if history is not None:
        body["historyEvents"] = history
    return body


def failure_json(details: FailureDetails) -> dict[str, Any]:
    """Failure details as the status JSON shows them, the cause chain under ``innerFailure``."""
    body: dict[str, Any] = {"errorType": details.error_type, "errorMessage": details.message,
                            "stackTrace": details.stack_trace}
    if details.inner_failure is not None:
        body["innerFailure"] = failure_json(details.inner_failure)
    return body


_PAYLOAD_FIELDS = {"result", "output", "input"}


def history_json(events: list[HistoryEvent], *, show_output: bool) -> list[dict[str, Any]]:
    """History as DF shows it: ``EventType``, ``Timestamp`` and the event's fields in PascalCase.

    Payload fields (inputs, results) are JSON-decoded; results and outputs only with
    ``showHistoryOutput`` (they can be large), inputs always.
    """
    out = []
    for event in events:
        item: dict[str, Any] = {"EventType": type(event).__name__}
        for field in dataclasses.fields(event):
            value = getattr(event, field.name)
            if field.name in ("result", "output") and not show_output:
                continue
            if field.name in _PAYLOAD_FIELDS and isinstance(value, str):
                value = _json_or_text(value)
            item[_pascal(field.name)] = _plain(value)
        out.append(item)
    return out


def entity_json(meta: EntityMetadata, *, fetch_state: bool) -> dict[str, Any]:
    """DF's entity list item: ``entityId {name, key}``, ``lastOperationTime``, ``state``."""
    body: dict[str, Any] = {
        "entityId": {"name": meta.id.name, "key": meta.id.key},
        "lastOperationTime": iso(meta.last_modified),
    }
    if fetch_state:
        body["state"] = meta.get_state()
    return body


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _pascal(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {_pascal(f.name): _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
