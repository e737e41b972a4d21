"""Generated Avro binary writers and readers for the shipped record types (the codec's hot path).

fastavro is a fine general Avro library, but for the small records of this engine most of its
cost is per call, not per byte: each ``schemaless_writer`` call re-registers every named type of
the schema (``HistoryRecord`` names some forty) and walks the schema dict to dispatch on type
names, so writing a 50-byte history record costs ~20 µs of CPU and reading it ~45 µs
(``bench/codec.py``). Here each shipped record type gets a straight-line Python function that
writes a dataclass straight into a ``bytearray`` and one that reads the bytes straight back
into the dataclass, generated once from the schema, with no intermediate dicts.

Scope, on purpose narrow so the equivalence is easy to check (``tests/unit/streams/
test_avro_binary.py`` compares every record type byte for byte against fastavro and the
reference ``avro`` package):

- Only the *current* schemas are compiled (never a registered writer schema, so no outside
  input becomes code). Bytes written by an older or foreign writer schema are still read by
  fastavro with schema resolution; a record type whose schema uses something not supported
  here (int/long/string/bytes/boolean/float/double/null, records, arrays, maps, enums-as-string,
  unions of null and one type, unions of records, timestamp-millis) simply has no generated
  functions and stays on fastavro.
- Writers raise ordinary Python exceptions (``TypeError``, ``AttributeError``, ``OverflowError``,
  ``KeyError``) for values that do not fit; the codec wraps them in ``RecordEncodeError``.
- Readers raise ``IndexError``/``EOFError`` when they run out of bytes and ``ValueError``
  (incl. ``UnicodeDecodeError``) or ``OverflowError`` when the bytes are not a body of the
  schema; the codec wraps them in ``CorruptRecordError``. They never loop on a length the
  remaining bytes cannot hold.
"""

from __future__ import annotations

import keyword
import struct
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

__all__ = ["BinarySource", "Unsupported"]

_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_ONE_MS = timedelta(milliseconds=1)
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_FLOAT = struct.Struct("<f")
_DOUBLE = struct.Struct("<d")


class Unsupported(Exception):
    """A schema construct this generator does not compile (that record stays on fastavro)."""


# --------------------------------------------------------------------------- runtime helpers
# Module-level functions the generated code calls; kept small and branch-light.


def _wl(out: bytearray, n: int) -> None:
    """Append ``n`` as a zig-zag varint (Avro long)."""
    if -64 <= n < 64:  # one byte: most longs of these records (indices, counts, -1 ids)
        out.append((n << 1) ^ (n >> 63))
        return
    if not _LONG_MIN <= n <= _LONG_MAX:
        raise OverflowError(f"{n} does not fit an Avro long")
    n = (n << 1) ^ (n >> 63)
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _wi(out: bytearray, n: int) -> None:
    """Append ``n`` as an Avro int (a varint with the 32-bit range checked)."""
    if not _INT_MIN <= n <= _INT_MAX:
        raise OverflowError(f"{n} does not fit an Avro int")
    _wl(out, n)


def _ws(out: bytearray, s: str) -> None:
    b = s.encode()
    n = len(b)
    if n < 0x40:  # the length's varint is one byte
        out.append(n << 1)
    else:
        _wl(out, n)
    out += b


def _wy(out: bytearray, b: bytes) -> None:
    if not isinstance(b, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected bytes, got {type(b).__name__}")
    _wl(out, len(b))
    out += b


#: the last datetime written and its bytes: a step stamps most of what it writes with the one
#: datetime of its batch (created, updated, every event's timestamp), so most writes repeat it.
#: A (value, bytes) tuple swapped whole, so threads writing at once never see half of one.
_last_time: tuple[datetime | None, bytes] = (None, b"")


def _wt(out: bytearray, value: datetime) -> None:
    """A datetime as timestamp-millis; a naive datetime is taken as UTC (never local time)."""
    global _last_time
    last = _last_time
    if last[0] is value:  # the same (immutable) object, held by the cache: same bytes
        out += last[1]
        return
    one = bytearray()
    _wl(one, (value - (_EPOCH_NAIVE if value.tzinfo is None else _EPOCH)) // _ONE_MS)
    _last_time = (value, bytes(one))
    out += one


def _wf(out: bytearray, x: float) -> None:
    out += _FLOAT.pack(x)


def _wd(out: bytearray, x: float) -> None:
    out += _DOUBLE.pack(x)


def _rl(b: bytes, p: int) -> tuple[int, int]:
    """Read a zig-zag varint at ``p``; returns (value, next position)."""
    x = b[p]
    if x < 0x80:
        return (x >> 1) ^ -(x & 1), p + 1
    n = x & 0x7F
    shift = 7
    while True:
        p += 1
        x = b[p]
        n |= (x & 0x7F) << shift
        if x < 0x80:
            return (n >> 1) ^ -(n & 1), p + 1
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _ri(b: bytes, p: int) -> tuple[int, int]:
    n, p = _rl(b, p)
    if not _INT_MIN <= n <= _INT_MAX:
        raise ValueError(f"{n} does not fit an Avro int")
    return n, p


def _rn(b: bytes, p: int) -> tuple[int, int, int]:
    """A byte length and the span it covers: (start, end, next position == end)."""
    n, p = _rl(b, p)
    e = p + n
    if n < 0:
        raise ValueError(f"negative length {n}")
    if e > len(b):
        raise EOFError(f"a length of {n} runs past the end of the record")
    return p, e, e


def _rs(b: bytes, p: int) -> tuple[str, int]:
    x = b[p]
    if x < 0x80 and not x & 1:  # a short non-negative length: the common case
        s = p + 1
        e = s + (x >> 1)
        if e > len(b):
            raise EOFError(f"a string of {x >> 1} bytes runs past the end of the record")
        return str(b[s:e], "utf-8"), e
    s, e, p = _rn(b, p)
    return str(b[s:e], "utf-8"), e


def _ry(b: bytes, p: int) -> tuple[bytes, int]:
    s, e, p = _rn(b, p)
    return bytes(b[s:e]), e


def _rb(b: bytes, p: int) -> tuple[bool, int]:
    x = b[p]
    if x > 1:
        raise ValueError(f"boolean byte {x}")
    return x == 1, p + 1


#: the last timestamp read and its datetime (immutable, so shared): the records of one batch,
#: and the several timestamps of one record, mostly carry the same millisecond
_last_read_time: tuple[int, datetime] = (0, _EPOCH)


def _rt(b: bytes, p: int) -> tuple[datetime, int]:
    global _last_read_time
    n, p = _rl(b, p)
    last = _last_read_time
    if last[0] == n:
        return last[1], p
    value = _EPOCH + timedelta(milliseconds=n)
    _last_read_time = (n, value)
    return value, p


def _rf(b: bytes, p: int) -> tuple[float, int]:
    if p + 4 > len(b):
        raise EOFError("a float runs past the end of the record")
    return _FLOAT.unpack_from(b, p)[0], p + 4


def _rd(b: bytes, p: int) -> tuple[float, int]:
    if p + 8 > len(b):
        raise EOFError("a double runs past the end of the record")
    return _DOUBLE.unpack_from(b, p)[0], p + 8


def _rcount(b: bytes, p: int) -> tuple[int, int]:
    """The item count of an array or map block (a negative count is followed by a byte size)."""
    n, p = _rl(b, p)
    if n < 0:
        n = -n
        _, p = _rl(b, p)
    if n > len(b) - p:  # every item of our schemas takes at least one byte
        raise EOFError(f"a block of {n} items cannot fit in the {len(b) - p} bytes left")
    return n, p


def _bad_branch(i: int, where: str) -> Any:
    raise ValueError(f"union branch {i} does not exist in {where}")


_HELPERS: dict[str, Any] = {
    "_wl": _wl, "_wi": _wi, "_ws": _ws, "_wy": _wy, "_wt": _wt, "_wf": _wf, "_wd": _wd,
    "_rl": _rl, "_ri": _ri, "_rs": _rs, "_ry": _ry, "_rb": _rb, "_rt": _rt, "_rf": _rf,
    "_rd": _rd, "_rcount": _rcount, "_bad_branch": _bad_branch,
}

# Avro type -> (writer helper, reader helper) for the primitives and logical types handled by one call.
_SIMPLE: dict[str, tuple[str, str]] = {
    "long": ("_wl", "_rl"), "int": ("_wi", "_ri"), "string": ("_ws", "_rs"), "bytes": ("_wy", "_ry"),
    "float": ("_wf", "_rf"), "double": ("_wd", "_rd"), "timestamp-millis": ("_wt", "_rt"),
}


# --------------------------------------------------------------------------- the generator


class BinarySource:
    """Generates ``W_<name>(o, out)`` and ``R_<name>(b, p) -> (obj, p)`` for every record it can.

    ``named`` maps full record names to their (shipped, non-standalone) schemas, which reference
    other records by full name; ``classes`` maps the same names to the dataclasses; ``enums``
    maps (full name, field) to the str Enum a string field is decoded into.
    """

    def __init__(self, named: Mapping[str, Mapping[str, Any]], classes: Mapping[str, type],
                 enums: Mapping[tuple[str, str], type]) -> None:
        self.named, self.classes, self.enums = named, classes, enums
        self.env: dict[str, Any] = dict(_HELPERS)
        self._tables = 0

    @staticmethod
    def fn(prefix: str, full: str) -> str:
        return f"{prefix}_{full.replace('.', '_')}"

    def build(self) -> tuple[dict[str, Callable[[Any, bytearray], None]],
                             dict[str, Callable[[bytes, int], tuple[Any, int]]]]:
        """Compile every supported record; returns (writers, readers) by full name."""
        supported = self._supported()
        lines: list[str] = []
        for full in supported:
            self.env[self.fn("C", full)] = self.classes[full]
            lines += self._writer(full)
            lines += self._reader(full)
        exec(compile("\n".join(lines), "<durable_kafka.avro_binary>", "exec"), self.env)  # noqa: S102
        for key, value in list(self.env.items()):  # union tables were filled with names: resolve them
            if key.startswith("_WU"):
                self.env[key] = {self.classes[r]: (tag, self.env[self.fn("W", r)]) for r, tag in value}
            elif key.startswith("_RU"):
                self.env[key] = tuple(self.env[self.fn("R", r)] for r in value)
        return ({full: self.env[self.fn("W", full)] for full in supported},
                {full: self.env[self.fn("R", full)] for full in supported})

    def _supported(self) -> list[str]:
        """Records whose schema (and every record they reach) this generator compiles."""
        ok: dict[str, bool] = {}

        def check(full: str, stack: tuple[str, ...]) -> bool:
            if full in ok:
                return ok[full]
            if full in stack:  # recursion: decided by the rest of the cycle
                return True
            try:
                for f in self.named[full]["fields"]:
                    if not f["name"].isidentifier() or keyword.iskeyword(f["name"]):
                        raise Unsupported(f"field {f['name']!r}")
                    for ref in self._refs(f["type"]):
                        if not check(ref, (*stack, full)):
                            raise Unsupported(f"uses {ref}")
            except Unsupported:
                ok[full] = False
                return False
            ok[full] = True
            return True

        return [full for full in self.named if check(full, ())]

    def _refs(self, t: Any) -> list[str]:
        """The records ``t`` references; raises Unsupported for constructs not compiled here."""
        if isinstance(t, str):
            if t in _PRIMITIVES:
                return []
            if t not in self.named:
                raise Unsupported(f"unknown named type {t!r}")
            return [t]
        if isinstance(t, list):
            rest = [m for m in t if m != "null"]
            if len(rest) > 1 and ("null" in t or not all(isinstance(m, str) and m in self.named for m in rest)):
                raise Unsupported(f"union {t}")
            return [r for m in rest for r in self._refs(m)]
        if isinstance(t, dict):
            kind = t.get("type")
            if t.get("logicalType") == "timestamp-millis" and kind == "long":
                return []
            if "logicalType" in t:
                raise Unsupported(f"logical type {t['logicalType']}")
            if kind == "array":
                return self._refs(t["items"])
            if kind == "map":
                return self._refs(t["values"])
            if isinstance(kind, str) and kind in _PRIMITIVES:
                return []
        raise Unsupported(f"type {t!r}")

    # ------------------------------------------------------------------ writers

    def _writer(self, full: str) -> list[str]:
        body: list[str] = []
        for f in self.named[full]["fields"]:
            body += self._w(f["type"], f"o.{f['name']}", 1, 0)
        return [f"def {self.fn('W', full)}(o, out):", *(body or ["    pass"])]

    def _w(self, t: Any, x: str, ind: int, depth: int) -> list[str]:
        """Statements appending value ``x`` of Avro type ``t`` to ``out``."""
        pad = "    " * ind
        if isinstance(t, str):
            if t == "null":
                return [f"{pad}if {x} is not None: raise TypeError('expected None')"]
            if t == "boolean":
                return [f"{pad}out.append(1 if {x} else 0)"]
            if t in _SIMPLE:
                return [f"{pad}{_SIMPLE[t][0]}(out, {x})"]
            return [f"{pad}{self.fn('W', t)}({x}, out)"]
        if isinstance(t, list):
            return self._w_union(t, x, ind, depth)
        if t.get("logicalType") == "timestamp-millis":
            return [f"{pad}_wt(out, {x})"]
        kind, var = t["type"], f"_v{depth}"
        if kind in ("array", "map"):
            items = t["items"] if kind == "array" else t["values"]
            lines = [f"{pad}{var}s = {x}", f"{pad}if len({var}s):", f"{pad}    _wl(out, len({var}s))"]
            if kind == "array":
                lines.append(f"{pad}    for {var} in {var}s:")
            else:
                lines += [f"{pad}    for _k{depth}, {var} in {var}s.items():", f"{pad}        _ws(out, _k{depth})"]
            return [*lines, *self._w(items, var, ind + 2, depth + 1), f"{pad}out.append(0)"]
        return self._w(kind, x, ind, depth)

    def _w_union(self, t: list[Any], x: str, ind: int, depth: int) -> list[str]:
        pad = "    " * ind
        rest = [m for m in t if m != "null"]
        if len(rest) == 1:
            other = t.index(rest[0])
            lines = []
            if "null" in t:
                lines += [f"{pad}if {x} is None:", f"{pad}    out.append({t.index('null') << 1})", f"{pad}else:"]
                pad, ind = pad + "    ", ind + 1
            return [*lines, f"{pad}out.append({other << 1})", *self._w(rest[0], x, ind, depth)]
        self._tables += 1
        table = f"_WU{self._tables}"
        self.env[table] = [(m, t.index(m) << 1) for m in rest]  # resolved to {class: (tag, writer)} in build
        var = f"_u{depth}"
        lines = [f"{pad}{var} = {x}"]
        inner = [f"{pad}_tag, _wr = {table}[type({var})]", f"{pad}out.append(_tag)", f"{pad}_wr({var}, out)"]
        if "null" in t:
            return [*lines, f"{pad}if {var} is None:", f"{pad}    out.append({t.index('null') << 1})",
                    f"{pad}else:", *["    " + line for line in inner]]
        return [*lines, *inner]

    # ------------------------------------------------------------------ readers

    def _reader(self, full: str) -> list[str]:
        body: list[str] = []
        args: list[str] = []
        for i, f in enumerate(self.named[full]["fields"]):
            var = f"f{i}"
            body += self._r(f["type"], var, 1, 0, full)
            enum = self.enums.get((full, f["name"]))
            if enum is not None:
                if f["type"] != "string":
                    raise Unsupported(f"{full}.{f['name']}: enum field must be a string")
                self.env[f"_N_{enum.__name__}"] = dict(enum._value2member_map_)  # faster than enum(value)
                var = f"_N_{enum.__name__}[{var}]"
            args.append(var)
        return [f"def {self.fn('R', full)}(b, p):", *body,
                f"    return {self.fn('C', full)}({', '.join(args)}), p"]

    def _r(self, t: Any, var: str, ind: int, depth: int, where: str) -> list[str]:
        """Statements reading a value of Avro type ``t`` at ``p`` into ``var`` (advancing ``p``)."""
        pad = "    " * ind
        if isinstance(t, str):
            if t == "null":
                return [f"{pad}{var} = None"]
            if t == "boolean":
                return [f"{pad}{var}, p = _rb(b, p)"]
            if t in _SIMPLE:
                return [f"{pad}{var}, p = {_SIMPLE[t][1]}(b, p)"]
            return [f"{pad}{var}, p = {self.fn('R', t)}(b, p)"]
        if isinstance(t, list):
            rest = [m for m in t if m != "null"]
            # a branch index is one byte (unions of up to 64 types): read inline, _rl for the rest
            lines = [f"{pad}_i = b[p]", f"{pad}if _i < 0x80:", f"{pad}    p += 1",
                     f"{pad}    _i = (_i >> 1) ^ -(_i & 1)", f"{pad}else:", f"{pad}    _i, p = _rl(b, p)"]
            if len(rest) == 1:
                branches = [(t.index(m), m) for m in t]
                for n, (idx, m) in enumerate(branches):
                    lines.append(f"{pad}{'if' if n == 0 else 'elif'} _i == {idx}:")
                    lines += self._r(m, var, ind + 1, depth, where)
                lines += [f"{pad}else:", f"{pad}    _bad_branch(_i, {where!r})"]
                return lines
            self._tables += 1
            table = f"_RU{self._tables}"
            self.env[table] = list(t)  # resolved to a tuple of readers in build (null has none)
            if "null" in t:
                raise Unsupported("a union of null and several records")  # not in the shipped schemas
            return [*lines, f"{pad}if not 0 <= _i < {len(t)}: _bad_branch(_i, {where!r})",
                    f"{pad}{var}, p = {table}[_i](b, p)"]
        if t.get("logicalType") == "timestamp-millis":
            return [f"{pad}{var}, p = _rt(b, p)"]
        kind = t["type"]
        if kind in ("array", "map"):
            items = t["items"] if kind == "array" else t["values"]
            item = f"_x{depth}"
            lines = [f"{pad}{var} = {'[]' if kind == 'array' else '{}'}", f"{pad}while True:",
                     f"{pad}    _n{depth}, p = _rcount(b, p)", f"{pad}    if not _n{depth}: break",
                     f"{pad}    for _ in range(_n{depth}):"]
            if kind == "map":
                lines.append(f"{pad}        _k{depth}, p = _rs(b, p)")
            lines += self._r(items, item, ind + 2, depth + 1, where)
            lines.append(f"{pad}        {var}.append({item})" if kind == "array"
                         else f"{pad}        {var}[_k{depth}] = {item}")
            return lines
        return self._r(kind, var, ind, depth, where)
