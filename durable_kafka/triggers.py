"""Trigger routes: records of any Kafka topic start, wake, signal and control instances.

A service that already publishes its facts to its own topics wires them in without a client
loop: ``worker.add_trigger(triggers.Start("shop.orders", process_order,
instance_id="order-{value.order_id}", input="{value}"))``. The worker's trigger processor
consumes the routes' topics and turns each record into one command in the same Kafka
transaction that commits the source offsets (docs/TRIGGERS.md).

Each field is a constant, a template over the record (``"{key}"``, ``"{value.order.id}"``,
``"{value}"``; exactly one placeholder keeps the value's JSON type, anything else is text) or a
callable ``(TriggerRecord) -> value``. Arguments are checked here, when the route is declared,
and wrong ones raise :class:`~durable_kafka.errors.InvalidRouteError` naming the route and the
argument.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from confluent_kafka import Message

from durable_kafka._trigger_decoders import AvroDecoder, BytesDecoder, Decoder, JsonDecoder, TextDecoder, decoder_for
from durable_kafka._trigger_fields import FieldSpec, TriggerRecord, compile_field, to_json_text
from durable_kafka.errors import InvalidRouteError, RouteCallableError, TriggerRecordError
from durable_kafka.streams import events as ev
from durable_kafka.streams.ids import validate_instance_id
from durable_kafka.streams.limits import check_payload_size
from durable_kafka.streams.topics import HubTopics

__all__ = ["AvroDecoder", "BytesDecoder", "Decoder", "JsonDecoder", "PublishCompletion", "Raise", "Resume", "Route", "Signal", "Start",
           "Suspend", "Terminate", "TextDecoder", "TriggerRecord", "REUSE_POLICIES", "route_set_digest"]

REUSE_POLICIES = ("skip", "fail", "replace")
#: namespace of command ids: uuid5(NS, "route|topic|partition|offset")
_NS = uuid.UUID("4a3c1e52-9a57-4d7e-b1f1-6f3f0c2d8e11")
_NS_BYTES = _NS.bytes


def _uuid5_hex(name: str) -> str:
    """``uuid.uuid5(_NS, name).hex``, computed without a UUID object (two per trigger record).

    The same bits: SHA-1 of namespace + name, first 16 bytes, version 5, RFC 4122 variant. Ids
    must not change between releases (a replayed source record must map to the same command id).
    """
    digest = bytearray(hashlib.sha1(_NS_BYTES + name.encode("utf-8")).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    return digest.hex()


def _uuid5_text(name: str) -> str:
    """``str(uuid.uuid5(_NS, name))`` (see :func:`_uuid5_hex`)."""
    h = _uuid5_hex(name)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Route:
    """What every route shares: source topic, name, decoder, filter; subclasses build the command."""

    kind = "route"

    def __init__(self, topic: str, *, name: str | None, decoder: Any, filter: Any) -> None:  # noqa: A002
        if not isinstance(topic, str) or not topic or len(topic) > 249:
            raise InvalidRouteError(f"{self.kind} route: topic must be a non-empty topic name, got {topic!r}")
        self.topic = topic
        if name is not None and (not isinstance(name, str) or not name or "|" in name):
            raise InvalidRouteError(f"{self.kind} route on {topic!r}: name must be a non-empty str without '|', "
                                    f"got {name!r}")
        self.name: str = name or f"{self.kind.lower()}:{topic}"
        self.decoder: Decoder = decoder_for(decoder, self._what("decoder"))
        if filter is not None and not callable(filter):
            raise InvalidRouteError(f"{self._what('filter')} must be a callable (TriggerRecord) -> bool, "
                                    f"got {filter!r}")
        self.filter: Callable[[TriggerRecord], Any] | None = filter

    def _what(self, arg: str) -> str:
        return f"route {getattr(self, 'name', None) or self.topic!r} ({self.kind}) {arg}"

    def _field(self, spec: Any, arg: str, *, required: bool = False) -> FieldSpec:
        return compile_field(spec, self._what(arg), required=required)

    # ------------------------------------------------------------------ per record
    def record_of(self, msg: Message) -> TriggerRecord:
        """The TriggerRecord of a consumed message, its value decoded by this route's decoder."""
        raw_key = msg.key()
        ts_type, ts = msg.timestamp()
        headers: dict[str, bytes | None] = {}
        raw_headers: list[Any] = list(msg.headers() or [])
        for hk, hv in raw_headers:
            headers[str(hk)] = bytes(hv) if hv is not None else None
        return TriggerRecord(
            topic=msg.topic() or self.topic, partition=msg.partition() or 0, offset=msg.offset() or 0,
            timestamp=datetime.fromtimestamp(ts / 1000, timezone.utc) if ts_type and ts and ts > 0 else None,
            key=bytes(raw_key).decode("utf-8", "replace") if raw_key is not None else None,
            value=self.decoder.decode(msg.value()), headers=headers)

    def command(self, msg: Message, now: datetime) -> tuple[str, str, Any] | None:
        """(topic suffix, key, message) for ``msg``; None when the filter skips it."""
        rec = self.record_of(msg)
        if self.filter is not None:
            try:
                keep = self.filter(rec)
            except Exception as exc:  # noqa: BLE001 - user code: the record is dead-lettered
                raise RouteCallableError(f"filter raised {type(exc).__name__}: {exc}") from exc
            if not keep:
                return None
        msg_id = _uuid5_text(f"{self.name}|{rec.topic}|{rec.partition}|{rec.offset}")
        return self.build(rec, msg_id, now)

    def build(self, rec: TriggerRecord, msg_id: str, now: datetime) -> tuple[str, str, Any]:
        raise NotImplementedError

    def bind(self, topics: HubTopics) -> "BoundRoute":
        """This route writing to one hub's topics (what the trigger processor runs)."""
        return BoundRoute(self, topics)

    def describe(self) -> str:
        """A stable text of what the route is (its part of the consumer group's digest)."""
        return f"{self.kind}|{self.name}|{self.topic}"

    def __repr__(self) -> str:
        return f"triggers.{type(self).__name__}({self.topic!r}, name={self.name!r})"


class BoundRoute:
    """A route and the hub whose topics it writes: the processor's CompiledRoute."""

    def __init__(self, route: Route, topics: HubTopics) -> None:
        self.route, self.topics = route, topics
        self.name, self.topic = route.name, route.topic

    def command(self, rec: Message, now: datetime) -> tuple[str, str, Any] | None:
        out = self.route.command(rec, now)
        if out is None:
            return None
        target, key, value = out
        topic = self.topics.entity_operations if target == "entity" else self.topics.orchestrator_events
        return topic, key, value


def _instance_id(value: Any, what: str) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    try:
        return validate_instance_id(value)
    except Exception as exc:
        raise TriggerRecordError(f"{what}: {exc}") from None


def _json(value: Any, what: str) -> str | None:
    if value is None:
        return None
    try:
        text = to_json_text(value)
    except (TypeError, ValueError) as exc:
        raise TriggerRecordError(f"{what} is not JSON-serializable: {exc}") from None
    check_payload_size(what, text)
    return text


def _str(value: Any, what: str) -> str:
    if value is None or (isinstance(value, str) and not value):
        raise TriggerRecordError(f"{what} is empty")
    return value if isinstance(value, str) else to_json_text(value)


def _orchestrator_name(orchestrator: Any, what: str) -> str:
    if isinstance(orchestrator, str) and orchestrator:
        return orchestrator
    if callable(orchestrator):
        name = getattr(orchestrator, "__name__", None)
        if isinstance(name, str) and name != "<lambda>":
            return name
    raise InvalidRouteError(f"{what} must be an orchestrator function or its name, got {orchestrator!r}")


def _orch(iid: str, msg_id: str, now: datetime, body: Any) -> tuple[str, str, Any]:
    return "orchestrator", iid, ev.OrchestratorMessage(id=msg_id, instance_id=iid, sent_at=now, body=body)


class Start(Route):
    """Start ``orchestrator`` as ``instance_id``; ``reuse`` says what an existing id means.

    ``"skip"`` (default): an instance with that id in any state means the record was handled
    (redelivery and source replays are harmless); ``"fail"``: the record goes to the dead-letter
    topic with the reason; ``"replace"``: a running instance is terminated and started anew.
    The orchestration processor decides, where the instance state is.
    """

    kind = "Start"

    def __init__(self, topic: str, orchestrator: Callable[..., Any] | str, *, instance_id: Any,
                 input: Any = None, reuse: str = "skip", name: str | None = None,  # noqa: A002
                 decoder: Any = "json", filter: Any = None) -> None:  # noqa: A002
        super().__init__(topic, name=name, decoder=decoder, filter=filter)
        self.orchestrator = _orchestrator_name(orchestrator, self._what("orchestrator"))
        self.instance_id = self._field(instance_id, "instance_id", required=True)
        self.input = self._field(input, "input")
        if reuse not in REUSE_POLICIES:
            raise InvalidRouteError(f"{self._what('reuse')} must be one of {', '.join(REUSE_POLICIES)}, "
                                    f"got {reuse!r}")
        self.reuse = reuse

    def build(self, rec: TriggerRecord, msg_id: str, now: datetime) -> tuple[str, str, Any]:
        iid = _instance_id(self.instance_id.resolve(rec), "instance_id")
        body = ev.StartOrchestration(
            name=self.orchestrator, execution_id=_uuid5_hex(msg_id),
            input=_json(self.input.resolve(rec), "input"), if_exists=self.reuse,
            source=f"{self.name}|{rec.topic}|{rec.partition}|{rec.offset}")
        return _orch(iid, msg_id, now, body)

    def describe(self) -> str:
        return f"{super().describe()}|{self.orchestrator}"


class Raise(Route):
    """Raise ``event_name`` with ``data`` to ``instance_id`` (kept until it starts if it does not exist yet)."""

    kind = "Raise"

    def __init__(self, topic: str, *, instance_id: Any, event_name: Any, data: Any = None,
                 name: str | None = None, decoder: Any = "json", filter: Any = None) -> None:  # noqa: A002
        super().__init__(topic, name=name, decoder=decoder, filter=filter)
        self.instance_id = self._field(instance_id, "instance_id", required=True)
        self.event_name = self._field(event_name, "event_name", required=True)
        self.data = self._field(data, "data")

    def build(self, rec: TriggerRecord, msg_id: str, now: datetime) -> tuple[str, str, Any]:
        iid = _instance_id(self.instance_id.resolve(rec), "instance_id")
        body = ev.RaiseEvent(name=_str(self.event_name.resolve(rec), "event_name"),
                             input=_json(self.data.resolve(rec), "data"))
        return _orch(iid, msg_id, now, body)


class Signal(Route):
    """Signal ``operation`` with ``input`` to the entity ``entity_id`` (``"@name@key"``)."""

    kind = "Signal"

    def __init__(self, topic: str, *, entity_id: Any, operation: Any, input: Any = None,  # noqa: A002
                 name: str | None = None, decoder: Any = "json", filter: Any = None) -> None:  # noqa: A002
        super().__init__(topic, name=name, decoder=decoder, filter=filter)
        self.entity_id = self._field(entity_id, "entity_id", required=True)
        self.operation = self._field(operation, "operation", required=True)
        self.input = self._field(input, "input")
        if self.entity_id.is_constant:
            self._entity(self.entity_id.constant, InvalidRouteError)

    @staticmethod
    def _entity(value: Any, error: type[Exception]) -> str:
        from durable_kafka.entities import EntityInstanceId

        try:
            return str(EntityInstanceId.parse(str(value)))
        except Exception as exc:
            raise error(f"entity_id: {exc}") from None

    def build(self, rec: TriggerRecord, msg_id: str, now: datetime) -> tuple[str, str, Any]:
        target = self._entity(self.entity_id.resolve(rec), TriggerRecordError)
        body = ev.SignalEntity(operation=_str(self.operation.resolve(rec), "operation"),
                               input=_json(self.input.resolve(rec), "input"))
        return "entity", target, ev.EntityMessage(id=msg_id, entity_id=target, sent_at=now, body=body)


class _Control(Route):
    """Terminate, Suspend, Resume: an instance id and an optional reason."""

    def __init__(self, topic: str, *, instance_id: Any, reason: Any = None, name: str | None = None,
                 decoder: Any = "json", filter: Any = None) -> None:  # noqa: A002
        super().__init__(topic, name=name, decoder=decoder, filter=filter)
        self.instance_id = self._field(instance_id, "instance_id", required=True)
        self.reason = self._field(reason, "reason")

    def body(self, reason: Any) -> Any:
        raise NotImplementedError

    def build(self, rec: TriggerRecord, msg_id: str, now: datetime) -> tuple[str, str, Any]:
        iid = _instance_id(self.instance_id.resolve(rec), "instance_id")
        return _orch(iid, msg_id, now, self.body(self.reason.resolve(rec)))


class Terminate(_Control):
    """Terminate ``instance_id``; ``reason`` becomes its output (JSON), as ``Client.terminate_orchestration``."""

    kind = "Terminate"

    def body(self, reason: Any) -> Any:
        return ev.TerminateOrchestration(output=_json(reason, "reason"), recursive=True)


class Suspend(_Control):
    """Suspend ``instance_id`` (events are kept until it is resumed)."""

    kind = "Suspend"

    def body(self, reason: Any) -> Any:
        return ev.SuspendOrchestration(reason=None if reason is None else _str(reason, "reason"))


class Resume(_Control):
    """Resume a suspended ``instance_id``."""

    kind = "Resume"

    def body(self, reason: Any) -> Any:
        return ev.ResumeOrchestration(reason=None if reason is None else _str(reason, "reason"))


class PublishCompletion:
    """An output route: one record on ``topic`` for every instance that ends (docs/TRIGGERS.md).

    ``orchestrators``: the orchestrators (functions or names) whose instances are published;
    None publishes all. ``format``: ``"json"`` (Durable Functions' status object: ``instanceId``,
    ``name``, ``runtimeStatus`` as ``Completed``/``Failed``/``Terminated``, ``input``, ``output``,
    ``failureDetails``, ``createdTime``, ``lastUpdatedTime``) or ``"avro"`` (the engine's
    ``InstanceStatus`` record, single-object encoded, schemas/InstanceStatus.avsc). The key is
    the instance id. Records are written in the transaction of the step that ended the instance:
    exactly once, never before the result is durable. Register with ``Worker.add_output``.
    """

    FORMATS = ("json", "avro")

    def __init__(self, topic: str, *, orchestrators: Sequence[Any] | None = None, format: str = "json",  # noqa: A002
                 name: str | None = None) -> None:
        if not isinstance(topic, str) or not topic.strip():
            raise InvalidRouteError(f"PublishCompletion: topic must be a non-empty str, got {topic!r}")
        if format not in self.FORMATS:
            raise InvalidRouteError(f"PublishCompletion({topic!r}): format must be one of {self.FORMATS}, "
                                    f"got {format!r}")
        if orchestrators is not None:
            if isinstance(orchestrators, (str, bytes)) or not isinstance(orchestrators, Sequence):
                raise InvalidRouteError(f"PublishCompletion({topic!r}): orchestrators must be a list of "
                                        f"orchestrators or names, or None for all; got {orchestrators!r}")
            names = [_orchestrator_name(o, f"PublishCompletion({topic!r}): orchestrators[{n}]")
                     for n, o in enumerate(orchestrators)]
        self.topic = topic
        self.orchestrators: list[str] | None = names if orchestrators is not None else None
        self.format = format
        self.name = name or f"completion:{topic}"

    def __repr__(self) -> str:
        return (f"PublishCompletion({self.topic!r}, orchestrators={self.orchestrators!r}, "
                f"format={self.format!r})")


def route_set_digest(routes: Sequence[Route]) -> str:
    """A short digest of a route set: its consumer group is ``<hub>.triggers.<digest>``.

    Workers with the same routes share the group (and split the source partitions); a changed
    route set is a new group, which starts from the beginning of its topics (starts are then
    skipped by id; see docs/TRIGGERS.md).
    """
    text = "\n".join(sorted(r.describe() for r in routes))
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]
