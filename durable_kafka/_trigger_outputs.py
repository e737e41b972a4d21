"""Completion routes: one record per instance that ends, in the transaction of the step that ended it.

Why in the same transaction: a service that reads the output topic (read_committed) then sees a
result exactly once and never before it is durable: the record commits together with the
history event, the status snapshot and the consumed offsets of the step that ended the instance,
or not at all. The orchestration processor only calls :func:`completion_publisher`'s function
for an instance that moved from pending/running/suspended (or from not existing) to COMPLETED,
FAILED or TERMINATED in that step; a restarted instance ends, and is published, again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from durable_kafka._client_models import state_from_status
from durable_kafka._http_models import status_json
from durable_kafka.streams.codec import Codec
from durable_kafka.streams.events import InstanceStatus
from durable_kafka.streams.limits import MAX_RECORD_BYTES

__all__ = ["completion_publisher"]

#: (topic, key, value) records to produce for one instance that ended
Records = list[tuple[str, bytes, bytes]]


def completion_publisher(routes: Sequence[Any], codec: Codec | None = None) -> Callable[[InstanceStatus], Records]:
    """The function the orchestration processor calls with the final status of an ended instance."""
    codec = codec or Codec.default()
    bound = [(r.topic, frozenset(r.orchestrators) if r.orchestrators is not None else None, r.format)
             for r in routes]

    def publish(status: InstanceStatus) -> Records:
        key = status.instance_id.encode("utf-8")
        out: Records = []
        for topic, names, fmt in bound:
            if names is not None and status.name not in names:
                continue
            out.append((topic, key, _value(status, fmt, codec, len(key))))
        return out

    return publish


def _value(status: InstanceStatus, fmt: str, codec: Codec, key_size: int) -> bytes:
    if fmt == "avro":
        data = codec.encode(status)
        if len(data) + key_size > MAX_RECORD_BYTES:  # the status fitted its own topic; keep a margin
            data = codec.encode(_without_payloads(status))
        return data
    body = status_json(state_from_status(status, fetch_payloads=True), show_input=True)
    data = json.dumps(body, separators=(",", ":")).encode("utf-8")
    if len(data) + key_size > MAX_RECORD_BYTES:
        # the status snapshot fits a record, but JSON can be larger than Avro: leave the payloads
        # out rather than lose the completion (the status topic and the history keep them)
        body = status_json(state_from_status(_without_payloads(status), fetch_payloads=True), show_input=True)
        body["payloadsOmitted"] = True
        data = json.dumps(body, separators=(",", ":")).encode("utf-8")
    return data


def _without_payloads(status: InstanceStatus) -> InstanceStatus:
    from dataclasses import replace

    return replace(status, input=None, output=None, custom_status=None)
