"""Transaction.scan: the store's keys under a prefix overlaid with the open batch's writes.

The batch's keys are kept sorted so a scan finds its own writes by bisection; these tests hold
it to the plain definition (merge, newest write wins, deletes hide, key order) on random
operations.
"""

from __future__ import annotations

import random
from typing import Any, cast

from durable_kafka.processors.runtime import Transaction


class _Store:
    def __init__(self, data: dict[bytes, bytes]) -> None:
        self.data = data

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def scan(self, prefix: bytes):
        for k in sorted(self.data):
            if k.startswith(prefix):
                yield k, self.data[k]


class _Stores:
    def __init__(self, stores: dict[int, _Store]) -> None:
        self.stores = stores

    def get(self, partition: int) -> _Store | None:
        return self.stores.get(partition)


def _expected(stored: dict[bytes, bytes], pending: dict[bytes, bytes | None], prefix: bytes) -> list[tuple[bytes, bytes]]:
    merged: dict[bytes, bytes | None] = {k: v for k, v in stored.items() if k.startswith(prefix)}
    merged.update({k: v for k, v in pending.items() if k.startswith(prefix)})
    return [(k, v) for k, v in sorted(merged.items()) if v is not None]


def test_scan_overlays_the_batch_on_the_store() -> None:
    store = _Store({b"h\0a\0e\0" + b"%08x" % i: b"s%d" % i for i in range(3)} | {b"h\0ab\0x": b"other"})
    txn = Transaction(cast(Any, None), cast(Any, _Stores({0: store})))
    assert txn.scan(0, b"h\0a\0") == sorted((k, v) for k, v in store.data.items() if k.startswith(b"h\0a\0"))
    txn.put(0, b"h\0a\0e\0" + b"%08x" % 1, None)  # deleted in the batch: hidden
    txn.put(0, b"h\0a\0e\0" + b"%08x" % 2, b"new")  # overwritten: the batch's value
    txn.put(0, b"h\0a\0e\0" + b"%08x" % 5, b"added")
    txn.put(0, b"h\0a", b"shorter than the prefix")
    txn.put(0, b"h\0ab\0y", b"a longer id")
    assert txn.scan(0, b"h\0a\0") == [(b"h\0a\0e\0" + b"%08x" % 0, b"s0"), (b"h\0a\0e\0" + b"%08x" % 2, b"new"),
                                      (b"h\0a\0e\0" + b"%08x" % 5, b"added")]
    assert txn.scan(1, b"h\0a\0") == []  # no store, no writes
    txn.put(1, b"w\0a\0m", b"early")
    assert txn.scan(1, b"w\0a\0") == [(b"w\0a\0m", b"early")]


def test_scan_matches_the_definition_on_random_batches() -> None:
    rng = random.Random(7)
    alphabet = [b"a", b"b", b"\0", b"\xff", b"ab"]

    def key() -> bytes:
        return b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 5)))

    for _ in range(200):
        stored = {key(): b"s%d" % rng.randint(0, 9) for _ in range(rng.randint(0, 12))}
        txn = Transaction(cast(Any, None), cast(Any, _Stores({0: _Store(stored)})))
        pending: dict[bytes, bytes | None] = {}
        for _ in range(rng.randint(0, 30)):
            k = key()
            v = None if rng.random() < 0.3 else b"p%d" % rng.randint(0, 9)
            txn.put(0, k, v)
            pending[k] = v
            prefix = key()[:rng.randint(0, 3)]
            assert txn.scan(0, prefix) == _expected(stored, pending, prefix)
            assert txn.get(0, k) == v
