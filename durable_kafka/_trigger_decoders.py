"""Decoders: how a route turns a source record's value bytes into the ``value`` its fields see.

``"json"`` (the default), ``"text"`` (UTF-8), ``"bytes"`` (as is), and :class:`AvroDecoder`
for Avro single-object encoding (``C3 01`` + the schema's 8-byte CRC-64-AVRO fingerprint,
little-endian + the Avro body) with a schema the user gives (a ``.avsc`` path, its JSON text or
a parsed dict). The fingerprint in each record is checked against the schema's, so a record
written with another schema is a dead letter naming both, not a misread.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Protocol

import fastavro

from durable_kafka.errors import InvalidRouteError, TriggerDecodeError
from durable_kafka.streams.codec import schema_fingerprint

__all__ = ["Decoder", "JsonDecoder", "TextDecoder", "BytesDecoder", "AvroDecoder", "decoder_for"]


class Decoder(Protocol):
    """Turns a record's value (None for a tombstone) into a Python value, or raises TriggerDecodeError."""

    name: str

    def decode(self, data: bytes | None) -> Any: ...


class JsonDecoder:
    name = "json"

    def decode(self, data: bytes | None) -> Any:
        if data is None:
            raise TriggerDecodeError("the record has no value (a tombstone), expected JSON")
        try:
            return json.loads(data)
        except (UnicodeDecodeError, ValueError) as exc:
            raise TriggerDecodeError(f"not JSON: {exc}") from None


class TextDecoder:
    name = "text"

    def decode(self, data: bytes | None) -> Any:
        if data is None:
            return None
        try:
            return bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TriggerDecodeError(f"not UTF-8 text: {exc}") from None


class BytesDecoder:
    name = "bytes"

    def decode(self, data: bytes | None) -> Any:
        return None if data is None else bytes(data)


class AvroDecoder:
    """Avro single-object encoding with the given writer schema (``AvroDecoder("order.avsc")``)."""

    name = "avro"

    def __init__(self, schema: str | Path | dict[str, Any]) -> None:
        if isinstance(schema, dict):
            raw: Any = schema
            self.source = "<dict>"
        else:
            text = str(schema)
            if text.lstrip().startswith("{"):
                self.source = "<json>"
            else:
                path = Path(text)
                if not path.is_file():
                    raise InvalidRouteError(f"AvroDecoder: schema file {text!r} does not exist")
                self.source = str(path)
                text = path.read_text(encoding="utf-8")
            try:
                raw = json.loads(text)
            except ValueError as exc:
                raise InvalidRouteError(f"AvroDecoder: {self.source} is not JSON: {exc}") from None
        try:
            self.schema = fastavro.parse_schema(raw)
            self.fingerprint = schema_fingerprint(raw)
        except Exception as exc:  # noqa: BLE001 - fastavro raises several types for a bad schema
            raise InvalidRouteError(f"AvroDecoder: {self.source} is not a valid Avro schema: {exc}") from None

    def decode(self, data: bytes | None) -> Any:
        if data is None:
            raise TriggerDecodeError("the record has no value (a tombstone), expected Avro")
        data = bytes(data)
        if len(data) < 10 or data[:2] != b"\xc3\x01":
            raise TriggerDecodeError("not Avro single-object encoding (no C3 01 marker)")
        fp = int.from_bytes(data[2:10], "little")
        if fp != self.fingerprint:
            raise TriggerDecodeError(f"written with schema fingerprint {fp:#018x}, the route's schema "
                                     f"({self.source}) has {self.fingerprint:#018x}")
        buf = io.BytesIO(data[10:])
        try:
            value = fastavro.schemaless_reader(buf, self.schema)
        except Exception as exc:  # noqa: BLE001 - any failure of the body is a bad record
            raise TriggerDecodeError(f"Avro body does not decode: {type(exc).__name__}: {exc}") from None
        if buf.tell() != len(data) - 10:
            raise TriggerDecodeError("Avro body has trailing bytes")
        return value

    def __repr__(self) -> str:
        return f"AvroDecoder({self.source!r})"


_NAMED: dict[str, type] = {"json": JsonDecoder, "text": TextDecoder, "bytes": BytesDecoder}


def decoder_for(spec: Any, what: str) -> Decoder:
    """A decoder from a name ("json", "text", "bytes") or a decoder object (e.g. AvroDecoder)."""
    if isinstance(spec, str):
        cls = _NAMED.get(spec)
        if cls is None:
            raise InvalidRouteError(f"{what}: unknown decoder {spec!r}; use 'json', 'text', 'bytes' "
                                    "or triggers.AvroDecoder('schema.avsc')")
        decoder: Decoder = cls()
        return decoder
    if callable(getattr(spec, "decode", None)):
        return spec  # type: ignore[no-any-return]
    raise InvalidRouteError(f"{what}: decoder must be a name or an object with decode(bytes), got {spec!r}")
