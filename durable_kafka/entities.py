"""Durable entities: small addressable state objects whose operations run one at a time.

The programming model mirrors ``durabletask.entities``:

* :class:`EntityInstanceId` names one entity: ``EntityInstanceId("counter", "c1")`` is
  ``@counter@c1`` on the wire (entity names are case-insensitive and kept lower-case, as in
  Durable Functions; keys are case-sensitive).
* A *function entity* is ``def counter(ctx: EntityContext, input)`` dispatching on
  ``ctx.operation``; a *class entity* subclasses :class:`DurableEntity` and its public methods
  are the operations, taking ``(self, input)`` or ``(self)``.
* State is JSON. An entity whose state was deleted (``ctx.delete_state()``, or the implicit
  ``delete`` operation of class entities) does not exist for clients any more.

Nothing here touches Kafka: an :class:`EntityContext` records what an operation wants
(new state, signals to other entities, orchestrations to start) and the entity processor
(``durable_kafka.processors.entities``) turns that into records only if the operation
succeeded, so a failing operation leaves no trace but its failure.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Callable, TypeVar, overload

from durable_kafka.errors import EntityOperationNotFoundError, InvalidArgumentError, InvalidEntityIdError
from durable_kafka.streams.payloads import externalize, resolve

__all__ = [
    "DurableEntity",
    "EntityContext",
    "EntityInstanceId",
    "entity_name",
    "run_operation",
]

TState = TypeVar("TState")

#: The operation every class entity understands without defining it: it deletes the state.
DELETE_OPERATION = "delete"
#: Reserved: a client's clean_entity_storage() sends it to remove a stateless, unlocked entity's
#: record (the processor handles it; entity code never sees it).
CLEAN_OPERATION = "__durable_kafka.clean__"


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidEntityIdError(f"an entity name must be a non-empty str, got {name!r}")
    if "@" in name:
        raise InvalidEntityIdError(f"entity name {name!r} must not contain '@' (it separates name and key)")
    return name.lower()


class EntityInstanceId:
    """The id of one entity: a name (lower-cased) and a key; ``str()`` gives ``@name@key``."""

    __slots__ = ("name", "key")
    name: str
    key: str

    def __init__(self, name: str, key: str) -> None:
        if not isinstance(key, str):
            raise InvalidEntityIdError(f"an entity key must be a str, got {type(key).__name__}: {key!r}")
        object.__setattr__(self, "name", _check_name(name))
        object.__setattr__(self, "key", key)

    def __setattr__(self, attr: str, value: Any) -> None:
        raise AttributeError("EntityInstanceId is immutable")

    @property
    def entity(self) -> str:
        """durabletask's name for :attr:`name`."""
        return self.name

    def __str__(self) -> str:
        return f"@{self.name}@{self.key}"

    def __repr__(self) -> str:
        return f"EntityInstanceId({self.name!r}, {self.key!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EntityInstanceId):
            return NotImplemented
        return self.name == other.name and self.key == other.key

    def __lt__(self, other: EntityInstanceId) -> bool:
        if not isinstance(other, EntityInstanceId):
            return NotImplemented
        return str(self) < str(other)

    def __hash__(self) -> int:
        return hash((self.name, self.key))

    @staticmethod
    def parse(entity_id: str) -> EntityInstanceId:
        """``"@name@key"`` -> EntityInstanceId; InvalidEntityIdError for anything else."""
        if isinstance(entity_id, EntityInstanceId):
            return entity_id
        if not isinstance(entity_id, str):
            raise InvalidEntityIdError(f"an entity id must be a str, got {type(entity_id).__name__}: {entity_id!r}")
        if not entity_id.startswith("@"):
            raise InvalidEntityIdError(f"entity id {entity_id!r} does not start with '@' (expected '@name@key')")
        name, sep, key = entity_id[1:].partition("@")
        if not sep:
            raise InvalidEntityIdError(f"entity id {entity_id!r} has no '@' between name and key")
        if not name:
            raise InvalidEntityIdError(f"entity id {entity_id!r} has an empty name")
        return EntityInstanceId(name, key)


def entity_id_of(value: Any) -> EntityInstanceId:
    """An EntityInstanceId from an EntityInstanceId or its string form."""
    if isinstance(value, EntityInstanceId):
        return value
    return EntityInstanceId.parse(value)


def entity_name(fn_or_class: Any, name: str | None = None) -> str:
    """The (lower-case) name an entity function or class is registered under."""
    if name is not None:
        return _check_name(name)
    inferred = getattr(fn_or_class, "__name__", None)
    if not isinstance(inferred, str) or inferred == "<lambda>" or not callable(fn_or_class):
        raise InvalidArgumentError(
            f"cannot infer an entity name from {fn_or_class!r}; pass name= explicitly")
    return _check_name(inferred)


def _to_json(value: Any, what: str) -> str:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as error:
        raise InvalidArgumentError(f"{what} is not JSON-serializable: {error}") from None


def convert_state(value: Any, intended_type: type | None) -> Any:
    """Shape a decoded JSON value as ``intended_type`` (dataclasses from dicts, else a cast)."""
    if intended_type is None or value is None or isinstance(value, intended_type):
        return value
    try:
        if dataclasses.is_dataclass(intended_type) and isinstance(value, dict):
            return intended_type(**value)
        return intended_type(value)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"cannot convert state of type {type(value).__name__} to {intended_type.__name__}: {error}"
        ) from error


@dataclass
class SignalRequest:
    """A signal an operation sends to another entity (sent only if the operation succeeds)."""

    entity_id: str
    operation: str
    input: str | None
    scheduled_time: datetime | None = None


@dataclass
class OrchestrationRequest:
    """An orchestration an operation starts (started only if the operation succeeds)."""

    name: str
    instance_id: str
    input: str | None


@dataclass
class _Outcome:
    signals: list[SignalRequest] = field(default_factory=list)
    orchestrations: list[OrchestrationRequest] = field(default_factory=list)


class EntityContext:
    """``ctx`` of one entity operation: its id, the operation, the state, and what it may send.

    ``get_state`` decodes the state as it was when the operation began (or as set by this
    operation); ``set_state`` / ``delete_state`` only take effect if the operation returns
    normally.
    """

    def __init__(self, entity_id: EntityInstanceId, operation: str, state: str | None,
                 orchestration_id: str | None = None) -> None:
        self._entity_id = entity_id
        self._operation = operation
        self._state_json = state
        self._orchestration_id = orchestration_id
        self._state_changed = False
        self._outcome = _Outcome()

    @property
    def entity_id(self) -> EntityInstanceId:
        return self._entity_id

    @property
    def operation(self) -> str:
        return self._operation

    @property
    def orchestration_id(self) -> str | None:
        """The orchestration (or entity) that sent this operation; None for a client signal."""
        return self._orchestration_id

    @property
    def has_state(self) -> bool:
        return self._state_json is not None

    @overload
    def get_state(self, intended_type: type[TState], default: TState) -> TState: ...

    @overload
    def get_state(self, intended_type: type[TState]) -> TState | None: ...

    @overload
    def get_state(self, intended_type: None = None, default: Any = None) -> Any: ...

    def get_state(self, intended_type: type | None = None, default: Any = None) -> Any:
        """The state (a fresh copy each call), ``default`` if the entity has none."""
        if self._state_json is None:
            return default
        return convert_state(json.loads(resolve(self._state_json) or ""), intended_type)

    def set_state(self, value: Any) -> None:
        """Replace the state; ``None`` deletes it (as :meth:`delete_state`)."""
        self._state_json = None if value is None else _to_json(value, "entity state")
        self._state_changed = True

    def delete_state(self) -> None:
        """Remove the state: the entity stops existing for clients after this operation."""
        self._state_json = None
        self._state_changed = True

    def signal_entity(self, entity_id: EntityInstanceId | str, operation: str, input: Any = None,  # noqa: A002
                      signal_time: datetime | None = None) -> None:
        """Send a one-way operation to another (or this) entity once this operation succeeds.

        With ``signal_time`` the target runs it at that time (a durable scheduled signal: the
        recurring schedules of :mod:`durable_kafka.scheduled` re-arm themselves this way).
        """
        target = entity_id_of(entity_id)
        if not isinstance(operation, str) or not operation:
            raise InvalidArgumentError(f"operation must be a non-empty str, got {operation!r}")
        if signal_time is not None:
            if not isinstance(signal_time, datetime):
                raise InvalidArgumentError(f"signal_time must be a datetime, got {signal_time!r}")
            signal_time = (signal_time.replace(tzinfo=timezone.utc) if signal_time.tzinfo is None
                           else signal_time.astimezone(timezone.utc))
        payload = None if input is None else externalize(_to_json(input, "signal input"), str(target))
        self._outcome.signals.append(SignalRequest(str(target), operation, payload, signal_time))

    def schedule_new_orchestration(self, orchestration_name: str | Callable[..., Any], input: Any = None,  # noqa: A002
                                   instance_id: str | None = None) -> str:
        """Start an orchestration once this operation succeeds; returns its instance id."""
        if callable(orchestration_name):
            from durable_kafka.task import get_name

            orchestration_name = get_name(orchestration_name)
        if not isinstance(orchestration_name, str) or not orchestration_name:
            raise InvalidArgumentError(f"orchestration name must be a non-empty str, got {orchestration_name!r}")
        iid = instance_id or uuid.uuid4().hex
        payload = None if input is None else externalize(_to_json(input, "orchestration input"), iid)
        self._outcome.orchestrations.append(OrchestrationRequest(orchestration_name, iid, payload))
        return iid

    # ------------------------------------------------------------------ for the processor
    @property
    def state_json(self) -> str | None:
        return self._state_json

    @property
    def state_changed(self) -> bool:
        return self._state_changed

    @property
    def outcome(self) -> _Outcome:
        return self._outcome


class DurableEntity:
    """Base of class entities: public methods are operations, ``(self, input)`` or ``(self)``.

    A fresh instance serves each operation, so keep data in ``self.get_state()`` /
    ``self.set_state()``, never in attributes.
    """

    entity_context: EntityContext

    def _initialize_entity_context(self, context: EntityContext) -> None:
        self.entity_context = context

    @overload
    def get_state(self, intended_type: type[TState], default: TState) -> TState: ...

    @overload
    def get_state(self, intended_type: type[TState]) -> TState | None: ...

    @overload
    def get_state(self, intended_type: None = None, default: Any = None) -> Any: ...

    def get_state(self, intended_type: type | None = None, default: Any = None) -> Any:
        return self.entity_context.get_state(intended_type, default)

    def set_state(self, state: Any) -> None:
        self.entity_context.set_state(state)

    def delete_state(self) -> None:
        self.entity_context.delete_state()

    def signal_entity(self, entity_instance_id: EntityInstanceId | str, operation: str, input: Any = None,  # noqa: A002
                      signal_time: datetime | None = None) -> None:
        self.entity_context.signal_entity(entity_instance_id, operation, input, signal_time)

    def schedule_new_orchestration(self, orchestration_name: str | Callable[..., Any], input: Any = None,  # noqa: A002
                                   instance_id: str | None = None) -> str:
        return self.entity_context.schedule_new_orchestration(orchestration_name, input, instance_id=instance_id)


_BASE_MEMBERS = frozenset(dir(DurableEntity))


@lru_cache(maxsize=1024)
def _operation_of(cls: type, operation: str) -> tuple[str, bool] | None:
    """(method name, takes an input) for ``operation`` on ``cls``, None if there is none.

    Names match exactly first, then case-insensitively (Durable Functions treats operation
    names of class entities case-insensitively).
    """
    candidates = [operation] + sorted(n for n in dir(cls) if n.lower() == operation.lower() and n != operation)
    for attr in candidates:
        if attr.startswith("_") or attr in _BASE_MEMBERS:
            continue
        member = getattr(cls, attr, None)
        if not callable(member):
            continue
        params = [p for p in inspect.signature(member).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
        return attr, len(params) > 1  # the first is self
    return None


def run_operation(entity: Any, ctx: EntityContext, input: Any) -> Any:  # noqa: A002
    """Run one operation of a function or class entity; returns the operation's result."""
    if isinstance(entity, type) and issubclass(entity, DurableEntity):
        cls: type = entity  # as plain ``type``: mypy takes type[DurableEntity] for unhashable (lru_cache key)
        found = _operation_of(cls, ctx.operation)
        if found is None:
            if ctx.operation.lower() == DELETE_OPERATION:
                ctx.delete_state()
                return None
            raise EntityOperationNotFoundError(
                f"entity {ctx.entity_id} ({entity.__name__}) has no operation {ctx.operation!r}")
        attr, takes_input = found
        instance = entity()
        instance._initialize_entity_context(ctx)
        method = getattr(instance, attr)
        return method(input) if takes_input else method()
    return entity(ctx, input)
