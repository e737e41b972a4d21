"""Trigger routes declared in a TOML file (``python -m durable_kafka worker M:W --triggers FILE``).

For teams that configure rather than code. Each ``[[route]]`` table is one route; its keys
are the route's arguments (``kind`` picks the route). Every error names the file, the line of
the route's ``[[route]]`` header and the route, and is raised before the worker starts, so an
invalid file never consumes a record. Callables are not expressible in TOML except ``filter``,
which may name a function as ``"module:function"``.

    [[route]]
    kind = "start"                      # start | raise | signal | terminate | suspend | resume
    topic = "shop.orders"
    orchestrator = "process_order"
    instance_id = "order-{value.order_id}"
    input = "{value}"
    reuse = "skip"                      # skip | fail | replace
    decoder = "json"                    # json | text | bytes | { avro = "schemas/order.avsc" }
    create_missing = false
"""

from __future__ import annotations

import importlib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from durable_kafka import triggers
from durable_kafka.errors import DurableKafkaError, TriggerFileError

__all__ = ["LoadedRoute", "load_routes"]

_KINDS: dict[str, tuple[type[triggers.Route], set[str], set[str]]] = {
    # kind: (class, required keys, optional keys) besides topic/name/decoder/filter/create_missing
    "start": (triggers.Start, {"orchestrator", "instance_id"}, {"input", "reuse"}),
    "raise": (triggers.Raise, {"instance_id", "event_name"}, {"data"}),
    "signal": (triggers.Signal, {"entity_id", "operation"}, {"input"}),
    "terminate": (triggers.Terminate, {"instance_id"}, {"reason"}),
    "suspend": (triggers.Suspend, {"instance_id"}, {"reason"}),
    "resume": (triggers.Resume, {"instance_id"}, {"reason"}),
}
_COMMON = {"kind", "topic", "name", "decoder", "filter", "create_missing"}


@dataclass(frozen=True)
class LoadedRoute:
    route: triggers.Route
    create_missing: bool
    line: int


def _route_lines(text: str) -> list[int]:
    return [n for n, line in enumerate(text.splitlines(), start=1) if re.match(r"\s*\[\[\s*route\s*\]\]", line)]


def load_routes(path: str | Path, *, orchestrators: Callable[[str], bool] | None = None) -> list[LoadedRoute]:
    """Parse and check every route of ``path``; TriggerFileError naming the line and route otherwise.

    ``orchestrators``: a check that an orchestrator name is registered (a Start route naming
    one the worker does not have would only fail its instances later).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TriggerFileError(f"{path}: cannot read the routes file: {exc}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TriggerFileError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(doc) - {"route"}
    if unknown:
        raise TriggerFileError(f"{path}: unknown top-level key(s) {sorted(unknown)}; routes are [[route]] tables")
    tables = doc.get("route", [])
    if not isinstance(tables, list) or not tables:
        raise TriggerFileError(f"{path}: no routes: declare each one as a [[route]] table")
    lines = _route_lines(text)
    out = []
    for n, table in enumerate(tables):
        line = lines[n] if n < len(lines) else 0
        where = f"{path}:{line}: route #{n + 1}" + (f" ({table.get('name')!r})" if table.get("name") else "")
        try:
            out.append(LoadedRoute(_route(table, orchestrators), bool(table.get("create_missing", False)), line))
        except TriggerFileError as exc:
            raise TriggerFileError(f"{where}: {exc}") from None
        except DurableKafkaError as exc:
            raise TriggerFileError(f"{where}: {exc}") from None
    names = [r.route.name for r in out]
    dup = next((x for x in names if names.count(x) > 1), None)
    if dup is not None:
        raise TriggerFileError(f"{path}: two routes are named {dup!r}; give them distinct name =")
    return out


def _route(table: dict[str, Any], orchestrators: Callable[[str], bool] | None) -> triggers.Route:
    kind = table.get("kind")
    if kind not in _KINDS:
        raise TriggerFileError(f"kind must be one of {', '.join(_KINDS)}, got {kind!r}")
    cls, required, optional = _KINDS[kind]
    missing = sorted(({"topic"} | required) - set(table))
    if missing:
        raise TriggerFileError(f"missing key(s) {missing} for a {kind} route")
    extra = sorted(set(table) - _COMMON - required - optional)
    if extra:
        raise TriggerFileError(f"unknown key(s) {extra} for a {kind} route (allowed: "
                               f"{', '.join(sorted(_COMMON | required | optional))})")
    if "create_missing" in table and not isinstance(table["create_missing"], bool):
        raise TriggerFileError("create_missing must be true or false")
    kwargs = {k: v for k, v in table.items() if k not in ("kind", "topic", "create_missing")}
    kwargs["decoder"] = _decoder(table.get("decoder", "json"))
    if "filter" in table:
        kwargs["filter"] = _import(table["filter"])
    topic = table["topic"]
    if kind == "start":
        name = kwargs.pop("orchestrator")
        if orchestrators is not None and isinstance(name, str) and not orchestrators(name):
            raise TriggerFileError(f"orchestrator {name!r} is not registered on the worker")
        return triggers.Start(topic, name, **kwargs)
    return cls(topic, **kwargs)


def _decoder(spec: Any) -> Any:
    if isinstance(spec, dict):
        if set(spec) != {"avro"} or not isinstance(spec["avro"], str):
            raise TriggerFileError(f"decoder table must be {{ avro = \"path/to/schema.avsc\" }}, got {spec!r}")
        return triggers.AvroDecoder(spec["avro"])
    return spec


def _import(ref: Any) -> Any:
    if not isinstance(ref, str) or ref.count(":") != 1:
        raise TriggerFileError(f"filter must name a function as \"module:function\", got {ref!r}")
    module_name, attr = ref.split(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise TriggerFileError(f"filter {ref!r} cannot be imported: {exc}") from None
    if not callable(fn):
        raise TriggerFileError(f"filter {ref!r} is not callable")
    return fn
