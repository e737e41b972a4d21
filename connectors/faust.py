"""Start, raise and signal through the engine from a faust-streaming agent, exactly once in effect.

faust delivers at least once: a crash between an agent's side effect and faust's offset commit
(every ``broker_commit_interval``) hands the same event to the agent again. A plain
``Client.raise_orchestration_event`` would then raise the event twice. These helpers take the
faust event and derive every id from its source position (topic, partition, offset), so a
redelivered event produces byte-for-byte the same command with the same message id:

* :meth:`FaustEngine.start` sends a start with ``reuse="skip"`` semantics (the trigger routes'
  rule: an instance with that id in any state means the command was already handled), and with a
  derived instance id when none is given;
* :meth:`FaustEngine.raise_event` and :meth:`FaustEngine.signal` send messages whose id is
  derived, so the owning processor drops the second copy (it remembers the recent message ids
  of each instance and entity).

Several effects of one event stay distinct through ``action`` and the target in the derivation.
This module does not import faust (it reads ``event.message.topic/partition/offset``), so it
loads without the ``faust`` extra; install ``durable-kafka[faust]`` for the faust app itself.
Also importable as ``durable_kafka.faust``.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any, Protocol

from durable_kafka._client_async import AsyncClient
from durable_kafka._trigger_fields import to_json_text
from durable_kafka.entities import EntityInstanceId
from durable_kafka.errors import InvalidArgumentError
from durable_kafka.streams import events as ev
from durable_kafka.streams.ids import validate_instance_id

__all__ = ["FaustEngine", "EventPosition", "position_of", "idempotency_key", "message_id",
           "derived_instance_id"]

#: The namespace of every id derived here; fixed, so ids are the same across processes and releases.
FAUST_NS = uuid.UUID("7d1f6c8e-3b0a-4f52-9c61-2e5a8d4b7f03")


class _Message(Protocol):
    topic: str
    partition: int
    offset: int


class _Event(Protocol):
    message: _Message


class EventPosition(tuple[str, int, int]):
    """(topic, partition, offset) of a faust event: what makes it unique in its source topic."""

    __slots__ = ()

    def __new__(cls, topic: str, partition: int, offset: int) -> EventPosition:
        if not isinstance(topic, str) or not topic:
            raise InvalidArgumentError(f"the event's topic must be a non-empty string, got {topic!r}")
        for name, value in (("partition", partition), ("offset", offset)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidArgumentError(f"the event's {name} must be an int >= 0, got {value!r}")
        return super().__new__(cls, (topic, partition, offset))

    @property
    def topic(self) -> str:
        return self[0]

    @property
    def partition(self) -> int:
        return self[1]

    @property
    def offset(self) -> int:
        return self[2]


def position_of(event: _Event | EventPosition) -> EventPosition:
    """The source position of a faust ``Event`` (``faust.current_event()`` or ``stream.events()``)."""
    if isinstance(event, EventPosition):
        return event
    message = getattr(event, "message", None)
    if message is None:
        raise InvalidArgumentError(f"expected a faust event (with .message), got {type(event).__name__}; "
                                   "iterate with stream.events() or use faust.current_event()")
    return EventPosition(message.topic, message.partition, message.offset)


def idempotency_key(event: _Event | EventPosition) -> str:
    """``"topic|partition|offset"``: the same text for every delivery of one source record."""
    pos = position_of(event)
    return f"{pos.topic}|{pos.partition}|{pos.offset}"


def message_id(event: _Event | EventPosition, action: str, target: str) -> str:
    """The message id of effect ``action`` on ``target`` caused by ``event``: deterministic, a UUID."""
    return str(uuid.uuid5(FAUST_NS, f"{idempotency_key(event)}|{action}|{target}"))


def derived_instance_id(event: _Event | EventPosition, prefix: str) -> str:
    """An instance id for a start whose id the caller does not choose: ``<prefix>-<uuid>`` from the position."""
    if not prefix:
        raise InvalidArgumentError("prefix must not be empty")
    return validate_instance_id(f"{prefix}-{uuid.uuid5(FAUST_NS, idempotency_key(event) + '|start').hex}")


def _json(value: Any) -> str | None:
    return None if value is None else to_json_text(value)


class FaustEngine:
    """The engine as a faust agent sees it: every call takes the event that caused it.

    ``FaustEngine(bootstrap, hub=...)`` owns an :class:`AsyncClient` (or pass ``client=``);
    use it from the faust app's event loop and ``await engine.close()`` on shutdown. Each call
    waits for the broker's acknowledgement, so when the agent returns and faust commits the
    offset, the command is durable: a crash before the commit redelivers and re-sends the same
    command, which the engine drops.
    """

    def __init__(self, bootstrap_servers: str | None = None, hub: str = "default", *,
                 client: AsyncClient | None = None, kafka_config: dict[str, Any] | None = None) -> None:
        self._owned = client is None
        self.client = client if client is not None else AsyncClient(bootstrap_servers, hub,
                                                                     kafka_config=kafka_config)

    async def close(self) -> None:
        if self._owned:
            await self.client.close()

    async def start(self, event: _Event | EventPosition, orchestrator: Any, *, instance_id: str | None = None,
                    input: Any = None, prefix: str = "faust") -> str:  # noqa: A002
        """Start ``orchestrator`` once per event; an existing instance with that id means done. Returns the id."""
        name = orchestrator if isinstance(orchestrator, str) else getattr(orchestrator, "__name__", None)
        if not isinstance(name, str) or not name or name == "<lambda>":
            raise InvalidArgumentError(f"orchestrator must be a function or its name, got {orchestrator!r}")
        iid = validate_instance_id(instance_id) if instance_id is not None else derived_instance_id(event, prefix)
        msg_id = message_id(event, "start", iid)
        body = ev.StartOrchestration(name=name, execution_id=uuid.uuid5(FAUST_NS, msg_id).hex,
                                     input=_json(input), if_exists="skip", source=f"faust|{idempotency_key(event)}")
        await self._send_orchestrator(iid, msg_id, body, f"the start of {iid!r}")
        return iid

    async def raise_event(self, event: _Event | EventPosition, instance_id: str, event_name: str, *,
                          data: Any = None) -> None:
        """Raise ``event_name`` to ``instance_id`` once per faust event (kept if the instance does not exist yet)."""
        iid = validate_instance_id(instance_id)
        if not isinstance(event_name, str) or not event_name:
            raise InvalidArgumentError("event_name must be a non-empty string")
        msg_id = message_id(event, f"raise:{event_name}", iid)
        await self._send_orchestrator(iid, msg_id, ev.RaiseEvent(name=event_name, input=_json(data)),
                                      f"event {event_name!r} to {iid!r}")

    async def signal(self, event: _Event | EventPosition, entity_id: EntityInstanceId | str, operation: str, *,
                     input: Any = None) -> None:  # noqa: A002
        """Signal ``operation`` to the entity once per faust event."""
        target = str(EntityInstanceId.parse(str(entity_id)))
        if not isinstance(operation, str) or not operation:
            raise InvalidArgumentError("operation must be a non-empty string")
        msg_id = message_id(event, f"signal:{operation}", target)
        message = ev.EntityMessage(id=msg_id, entity_id=target, sent_at=datetime.now(timezone.utc),
                                   body=ev.SignalEntity(operation=operation, input=_json(input)))
        await self.client._produce(self.client._client._topics.entity_operations, target, message,
                                   f"the {operation!r} signal to {target}")

    async def _send_orchestrator(self, iid: str, msg_id: str, body: Any, what: str) -> None:
        message = ev.OrchestratorMessage(id=msg_id, instance_id=iid, sent_at=datetime.now(timezone.utc), body=body)
        await self.client._produce(self.client._client._topics.orchestrator_events, iid, message, what)
