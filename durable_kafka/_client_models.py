"""The client's value types, named and shaped as in durabletask-python's client.

They are views of the ``InstanceStatus`` snapshots on ``<hub>.status``: the engine keeps user
payloads as JSON text, and these types decode them only when asked (``get_input()`` ...), so a
payload the caller never reads is never parsed.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from durable_kafka.errors import InvalidArgumentError, OrchestrationFailedError
from durable_kafka.streams.events import FailureDetails, InstanceStatus
from durable_kafka.streams.payloads import PayloadCodec, looks_like_reference
from durable_kafka.streams.status import TERMINAL_STATUSES, OrchestrationStatus

__all__ = [
    "TERMINAL_STATUSES",
    "OrchestrationQuery",
    "OrchestrationState",
    "OrchestrationStatus",
    "PurgeInstancesResult",
    "page_of",
    "state_from_status",
]


@dataclass
class OrchestrationState:
    """A point-in-time view of one orchestration instance."""

    instance_id: str
    name: str
    runtime_status: OrchestrationStatus
    created_at: datetime
    last_updated_at: datetime
    serialized_input: str | None
    serialized_output: str | None
    serialized_custom_status: str | None
    failure_details: FailureDetails | None
    #: the orchestration version it was scheduled with (docs/VERSIONING.md), None if none
    version: str | None = None

    def get_input(self) -> Any:
        """The instance's input, JSON-decoded (None when there is none or it was not fetched)."""
        return _loads(self.serialized_input)

    def get_output(self) -> Any:
        """The instance's output, JSON-decoded (None when there is none or it was not fetched)."""
        return _loads(self.serialized_output)

    def get_custom_status(self) -> Any:
        """The custom status the orchestrator set, JSON-decoded (None when unset)."""
        return _loads(self.serialized_custom_status)

    def raise_if_failed(self) -> None:
        """Raise OrchestrationFailedError (with the failure details) if the instance failed."""
        if self.failure_details is not None:
            raise OrchestrationFailedError(
                f"Orchestration '{self.instance_id}' failed: {self.failure_details.message}",
                self.failure_details,
            )


@dataclass
class OrchestrationQuery:
    """Filters and paging for ``query_orchestration_states`` / ``get_all_orchestration_states``.

    ``max_instance_count`` is the page size; ``continuation_token`` is what the previous page
    returned (None for the first page).
    """

    created_time_from: datetime | None = None
    created_time_to: datetime | None = None
    runtime_status: list[OrchestrationStatus] | None = None
    instance_id_prefix: str | None = None
    max_instance_count: int = 100
    fetch_inputs_and_outputs: bool = False
    continuation_token: str | None = None


@dataclass
class PurgeInstancesResult:
    """How many instances a purge deleted (the instance and, if recursive, its children)."""

    deleted_instance_count: int
    is_complete: bool | None = True


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def state_from_status(status: InstanceStatus, *, fetch_payloads: bool,
                      payloads: PayloadCodec | None = None) -> OrchestrationState:
    """Turn a status snapshot into the public state, leaving payloads out unless asked for.

    With ``payloads``, references to large payloads (docs/PAYLOADS.md) are resolved, so callers
    see the real input, output and custom status.
    """
    if fetch_payloads and payloads is not None and any(
            t is not None and looks_like_reference(t) for t in (status.input, status.output, status.custom_status)):
        iid = status.instance_id
        status = dataclasses.replace(status, input=_resolved(payloads, status.input, iid),
                                     output=_resolved(payloads, status.output, iid),
                                     custom_status=_resolved(payloads, status.custom_status, iid))
    try:
        runtime_status = OrchestrationStatus(status.runtime_status)
    except ValueError:
        raise InvalidArgumentError(
            f"instance {status.instance_id!r} has unknown runtime status {status.runtime_status!r}"
        ) from None
    return OrchestrationState(
        instance_id=status.instance_id,
        name=status.name,
        runtime_status=runtime_status,
        created_at=status.created_at,
        last_updated_at=status.last_updated_at,
        serialized_input=status.input if fetch_payloads else None,
        serialized_output=status.output if fetch_payloads else None,
        serialized_custom_status=status.custom_status if fetch_payloads else None,
        failure_details=status.failure_details,
        version=status.version,
    )


def _resolved(payloads: PayloadCodec, text: str | None, owner: str) -> str | None:
    return None if text is None else payloads.resolve(text, owner)


# --------------------------------------------------------------------------- query paging


def _as_utc(value: datetime) -> datetime:
    """Naive datetimes are taken as UTC, so callers may pass either kind."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def _sort_key(status: InstanceStatus) -> tuple[datetime, str]:
    return (_as_utc(status.created_at), status.instance_id)


def encode_token(status: InstanceStatus) -> str:
    """An opaque token naming the last item of a page (its sort key)."""
    created, instance_id = _sort_key(status)
    raw = json.dumps([created.isoformat(), instance_id]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_token(token: str) -> tuple[datetime, str]:
    """The sort key a continuation token names; InvalidArgumentError if it is not one of ours."""
    try:
        created, instance_id = json.loads(base64.urlsafe_b64decode(token.encode()))
        return _as_utc(datetime.fromisoformat(created)), str(instance_id)
    except (ValueError, TypeError) as error:
        raise InvalidArgumentError(f"invalid continuation token {token!r}: {error}") from None


def validate_query(query: OrchestrationQuery) -> None:
    """Reject queries of the wrong shape before touching the cache."""
    if not isinstance(query, OrchestrationQuery):
        raise InvalidArgumentError(
            f"query must be an OrchestrationQuery, got {type(query).__name__}"
        )
    if not isinstance(query.max_instance_count, int) or query.max_instance_count < 1:
        raise InvalidArgumentError(
            f"max_instance_count must be a positive int, got {query.max_instance_count!r}"
        )
    for label, value in (("created_time_from", query.created_time_from),
                         ("created_time_to", query.created_time_to)):
        if value is not None and not isinstance(value, datetime):
            raise InvalidArgumentError(f"{label} must be a datetime, got {type(value).__name__}")
    if query.runtime_status is not None and not all(
        isinstance(s, OrchestrationStatus) for s in query.runtime_status
    ):
        raise InvalidArgumentError(
            f"runtime_status must be a list of OrchestrationStatus, got {query.runtime_status!r}"
        )
    if query.instance_id_prefix is not None and not isinstance(query.instance_id_prefix, str):
        raise InvalidArgumentError("instance_id_prefix must be a str")


def _matches(status: InstanceStatus, query: OrchestrationQuery) -> bool:
    created = _as_utc(status.created_at)
    if query.created_time_from is not None and created < _as_utc(query.created_time_from):
        return False
    if query.created_time_to is not None and created > _as_utc(query.created_time_to):
        return False
    if query.runtime_status and status.runtime_status not in query.runtime_status:
        return False
    prefix = query.instance_id_prefix
    return prefix is None or status.instance_id.startswith(prefix)


def page_of(
    statuses: list[InstanceStatus], query: OrchestrationQuery, payloads: PayloadCodec | None = None
) -> tuple[list[OrchestrationState], str | None]:
    """One page of matching states in (created_at, instance_id) order, and the next token."""
    validate_query(query)
    matching = sorted((s for s in statuses if _matches(s, query)), key=_sort_key)
    if query.continuation_token is not None:
        after = decode_token(query.continuation_token)
        matching = [s for s in matching if _sort_key(s) > after]
    page = matching[: query.max_instance_count]
    more = len(matching) > len(page)
    token = encode_token(page[-1]) if more and page else None
    states = [state_from_status(s, fetch_payloads=query.fetch_inputs_and_outputs, payloads=payloads) for s in page]
    return states, token
