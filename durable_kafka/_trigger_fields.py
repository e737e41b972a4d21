"""Route fields: a constant, a template over the record, or a callable of the record.

Why compile once: a route is validated when it is declared (a template that names an unknown
part of the record is a start-up error, not a dead letter per record), and each record then
only walks the prepared path. A template that is exactly one placeholder yields the value with
its JSON type (``input="{value}"`` passes the decoded object on); anything else yields text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from durable_kafka.errors import InvalidRouteError, RouteCallableError, TemplateFieldMissingError

__all__ = ["TriggerRecord", "FieldSpec", "compile_field", "to_json_text"]

#: what a placeholder may start with; ``value`` and ``headers`` take a dotted path after them
_ROOTS = ("key", "value", "topic", "partition", "offset", "timestamp", "headers")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class TriggerRecord:
    """One source record as routes see it: coordinates, key as text, value decoded."""

    topic: str
    partition: int
    offset: int
    timestamp: datetime | None
    key: str | None
    value: Any
    headers: dict[str, bytes | None] = field(default_factory=dict)


class _Missing(Exception):
    """A path step that the record does not have (turned into TemplateFieldMissingError)."""


def _walk(rec: TriggerRecord, path: tuple[str, ...]) -> Any:
    current: Any = getattr(rec, path[0])
    if path[0] == "key" and current is None:
        raise _Missing("the record has no key")
    for i, step in enumerate(path[1:], start=1):
        where = ".".join(path[:i])
        if isinstance(current, dict):
            if step not in current:
                raise _Missing(f"{where} has no field {step!r}")
            current = current[step]
        elif isinstance(current, list) and step.isdigit():
            if int(step) >= len(current):
                raise _Missing(f"{where} has no element {step}")
            current = current[int(step)]
        else:
            raise _Missing(f"{where} is a {type(current).__name__}, not an object with {step!r}")
    if isinstance(current, bytes) and path[0] == "headers":
        return current.decode("utf-8", "replace")
    return current


def _text(value: Any) -> str:
    return value if isinstance(value, str) else to_json_text(value)


def to_json_text(value: Any) -> str:
    """JSON text of a decoded value (Avro datetimes/bytes/decimals included, as strings)."""
    return json.dumps(value, default=_json_default, separators=(",", ":"))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1")
    return str(value)


@dataclass(frozen=True)
class FieldSpec:
    """A prepared field: call :meth:`resolve` with a record."""

    what: str
    constant: Any = None
    parts: tuple[str | tuple[str, ...], ...] | None = None  # template: literal text and paths
    fn: Callable[[TriggerRecord], Any] | None = None

    def resolve(self, rec: TriggerRecord) -> Any:
        if self.fn is not None:
            try:
                return self.fn(rec)
            except Exception as exc:  # noqa: BLE001 - the user's code: the record is dead-lettered
                raise RouteCallableError(f"{self.what}: the callable raised {type(exc).__name__}: {exc}") from exc
        if self.parts is None:
            return self.constant
        try:
            if len(self.parts) == 1 and isinstance(self.parts[0], tuple):
                return _walk(rec, self.parts[0])  # exactly one placeholder: the value, its own type
            return "".join(p if isinstance(p, str) else _text(_walk(rec, p)) for p in self.parts)
        except _Missing as exc:
            raise TemplateFieldMissingError(f"{self.what}: {exc}") from None

    @property
    def is_constant(self) -> bool:
        return self.parts is None and self.fn is None


def _parse_template(text: str, what: str) -> tuple[str | tuple[str, ...], ...] | None:
    """The parts of a template, or None when ``text`` holds no placeholder ("{{"/"}}" are braces)."""
    if "{" not in text and "}" not in text:
        return None
    parts: list[str | tuple[str, ...]] = []
    pos = 0
    literal = ""
    while pos < len(text):
        if text.startswith("{{", pos) or text.startswith("}}", pos):
            literal += text[pos]
            pos += 2
            continue
        m = _PLACEHOLDER.match(text, pos)
        if m is None:
            if text[pos] in "{}":
                raise InvalidRouteError(f"{what}: unbalanced brace at position {pos} of template {text!r}")
            literal += text[pos]
            pos += 1
            continue
        path = tuple(m.group(1).strip().split("."))
        if path[0] not in _ROOTS or any(not step for step in path):
            raise InvalidRouteError(
                f"{what}: template {text!r} refers to {{{m.group(1)}}}; a placeholder is one of "
                f"{', '.join('{' + r + '}' for r in _ROOTS)}, with a dotted path after value or headers "
                "(e.g. {value.order.id})")
        if len(path) > 1 and path[0] not in ("value", "headers"):
            raise InvalidRouteError(f"{what}: {{{m.group(1)}}}: only value and headers have fields")
        if literal:
            parts.append(literal)
            literal = ""
        parts.append(path)
        pos = m.end()
    if literal:
        parts.append(literal)
    if not any(isinstance(p, tuple) for p in parts):  # only escaped braces: a constant
        return ("".join(p for p in parts if isinstance(p, str)),)
    return tuple(parts)


def compile_field(spec: Any, what: str, *, required: bool = False) -> FieldSpec:
    """Prepare a route argument: callable, template string, or constant (checked JSON-able)."""
    if callable(spec) and not isinstance(spec, (str, bytes, type)):
        return FieldSpec(what, fn=spec)
    if spec is None:
        if required:
            raise InvalidRouteError(f"{what} is required (a constant, a template like '{{value.id}}', or a callable)")
        return FieldSpec(what)
    if isinstance(spec, str):
        parts = _parse_template(spec, what)
        if parts is None:
            return FieldSpec(what, constant=spec)
        if len(parts) == 1 and isinstance(parts[0], str):  # only escaped braces
            return FieldSpec(what, constant=parts[0])
        return FieldSpec(what, parts=parts)
    try:
        json.dumps(spec)
    except (TypeError, ValueError) as exc:
        raise InvalidRouteError(f"{what}: the constant {spec!r} is not JSON-serializable ({exc})") from None
    return FieldSpec(what, constant=spec)
