"""Partition-local RocksDB stores that are caches of a compacted changelog topic.

Why one database per partition: a partition is the unit Kafka moves between workers, so it is the
unit we restore, close and drop. Why the changelog offset lives inside the same write batch as
the data (``__changelog_offset__``): a crash can then never leave data and offset disagreeing,
which is the window faust leaves open. RocksDB is written only *after* the Kafka transaction
that produced the changelog records committed, so local state can lag the changelog but never
run ahead of it; restore replays the changelog from the stored offset to the end.

Key layout (sortable bytes, one prefix per family, see STYLE.md #6):

    i\\0<instance>                             -> InstanceHeader
    h\\0<instance>\\0<execution>\\0<index:08x>   -> HistoryRecord
    t\\0<due_ms:016x>\\0<instance>\\0<timer_id>   -> TimerRecord
    e\\0<entity id>                            -> EntityState
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteBatch

log = logging.getLogger(__name__)

OFFSET_KEY = b"\xff__changelog_offset__"
WRITTEN_AT_KEY = b"\xff__written_at__"
#: Local state older than this is rebuilt from scratch rather than caught up: a tombstone the
#: broker compacted away meanwhile (delete.retention.ms, 24 h by default) would otherwise leave a
#: deleted key alive in RocksDB.
MAX_STATE_AGE_S = 12 * 3600
SEP = b"\x00"


def instance_key(instance_id: str) -> bytes:
    return b"i" + SEP + instance_id.encode()


def history_prefix(instance_id: str, execution_id: str | None = None) -> bytes:
    p = b"h" + SEP + instance_id.encode() + SEP
    return p + execution_id.encode() + SEP if execution_id is not None else p


def history_key(instance_id: str, execution_id: str, index: int) -> bytes:
    return history_prefix(instance_id, execution_id) + b"%08x" % index


def waiting_prefix(instance_id: str) -> bytes:
    """Events raised to an instance id that does not exist yet (delivered when it starts)."""
    return b"w" + SEP + instance_id.encode() + SEP


def waiting_key(instance_id: str, message_id: str) -> bytes:
    return waiting_prefix(instance_id) + message_id.encode()


TIMER_PREFIX = b"t" + SEP

#: instances holding events parked by a worker whose VersioningOptions reject their version:
#: re-evaluated when the partition is assigned (docs/VERSIONING.md)
PARKED_PREFIX = b"p" + SEP


def parked_key(instance_id: str) -> bytes:
    return PARKED_PREFIX + instance_id.encode()


def timer_key(due_ms: int, instance_id: str, timer_id: int) -> bytes:
    return TIMER_PREFIX + b"%016x" % due_ms + SEP + instance_id.encode() + SEP + str(timer_id).encode()


def timer_due_ms(key: bytes) -> int:
    return due_ms_of(key)


def due_ms_of(key: bytes) -> int:
    """Due time of a key in any due-time index (``<family>\\0<due_ms:016x>...``)."""
    return int(key[2:18], 16)


def any_due(stores: "StoreSet", partitions: list[int], prefix: bytes, now_ms: int) -> bool:
    """Whether any of ``partitions`` has an entry of the due-time index ``prefix`` due by now."""
    for p in partitions:
        store = stores.get(p)
        if store is None:
            continue
        first = store.first(prefix)
        if first is not None and due_ms_of(first[0]) <= now_ms:
            return True
    return False


def take_due(store: "PartitionStore", pending: Callable[[bytes], bytes | None], delete: Callable[[bytes], None],
             prefix: bytes, now_ms: int, limit: int) -> list[tuple[bytes, bytes]]:
    """Remove and return up to ``limit`` entries of the due-time index that are due by ``now_ms``.

    ``pending`` reads through the current batch (an entry it no longer finds already fired in
    this batch); ``delete`` records the removal in the batch, so it commits with what fires.
    """
    out: list[tuple[bytes, bytes]] = []
    for k, v in store.scan(prefix):
        if due_ms_of(k) > now_ms or len(out) >= limit:
            break
        if pending(k) is None:
            continue
        delete(k)
        out.append((k, v))
    return out


def entity_key(entity_id: str) -> bytes:
    return b"e" + SEP + entity_id.encode()


@dataclass
class StoreOptions:
    """RocksDB sizing: small by default so that a worker with 12+ partitions stays lean."""

    block_cache_bytes: int = 16 * 1024 * 1024  # shared by all partitions of a store set
    write_buffer_bytes: int = 2 * 1024 * 1024
    max_write_buffers: int = 2
    _cache: Cache | None = field(default=None, repr=False)

    def rocksdb_options(self) -> Options:
        if self._cache is None:
            self._cache = Cache(self.block_cache_bytes)
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.set_write_buffer_size(self.write_buffer_bytes)
        opts.set_max_write_buffer_number(self.max_write_buffers)
        opts.set_max_open_files(64)
        table = BlockBasedOptions()
        table.set_block_cache(self._cache)
        table.set_cache_index_and_filter_blocks(True)
        opts.set_block_based_table_factory(table)
        return opts


class PartitionStore:
    """One partition's RocksDB: point reads, prefix scans, and atomic batch writes."""

    def __init__(self, path: str, options: StoreOptions) -> None:
        os.makedirs(path, exist_ok=True)
        self.path = path
        self._db = Rdict(path, options.rocksdb_options())

    def get(self, key: bytes) -> bytes | None:
        return self._db.get(key)

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        it = self._db.iter()
        it.seek(prefix)
        while it.valid():
            k = it.key()
            if not k.startswith(prefix):
                break
            yield k, it.value()
            it.next()

    def first(self, prefix: bytes) -> tuple[bytes, bytes] | None:
        for kv in self.scan(prefix):
            return kv
        return None

    @property
    def changelog_offset(self) -> int:
        """Offset of the last changelog record applied here, -1 when none."""
        raw = self._db.get(OFFSET_KEY)
        return int(raw) if raw is not None else -1

    def write(self, changes: dict[bytes, bytes | None], changelog_offset: int | None) -> None:
        """Apply puts/deletes and the new changelog offset in one atomic RocksDB batch."""
        wb = WriteBatch(raw_mode=True)
        for k, v in changes.items():
            if v is None:
                wb.delete(k)
            else:
                wb.put(k, v)
        if changelog_offset is not None:
            wb.put(OFFSET_KEY, str(changelog_offset).encode())
        wb.put(WRITTEN_AT_KEY, str(int(time.time())).encode())
        self._db.write(wb)

    @property
    def age_seconds(self) -> float | None:
        """Seconds since this store was last written, None for a store never written."""
        raw = self._db.get(WRITTEN_AT_KEY)
        return time.time() - int(raw) if raw is not None else None

    def close(self) -> None:
        try:
            self._db.close()
        except Exception:  # noqa: BLE001 - closing twice is harmless; log and go on
            log.debug("closing %s failed", self.path, exc_info=True)


class StoreSet:
    """The partition stores of one processor on one worker, under ``<state_dir>/<name>/p<N>``."""

    def __init__(self, state_dir: str, name: str, options: StoreOptions | None = None) -> None:
        self.root = os.path.join(state_dir, name)
        self.options = options or StoreOptions()
        self._stores: dict[int, PartitionStore] = {}

    def open(self, partition: int) -> PartitionStore:
        store = self._stores.get(partition)
        if store is None:
            store = PartitionStore(os.path.join(self.root, f"p{partition}"), self.options)
            self._stores[partition] = store
        return store

    def get(self, partition: int) -> PartitionStore | None:
        return self._stores.get(partition)

    def partitions(self) -> list[int]:
        return sorted(self._stores)

    def close(self, partition: int) -> None:
        store = self._stores.pop(partition, None)
        if store is not None:
            store.close()

    def close_all(self) -> None:
        for p in list(self._stores):
            self.close(p)

    def wipe(self, partition: int) -> None:
        """Drop a partition's local files (used when the stored state cannot be trusted)."""
        self.close(partition)
        shutil.rmtree(os.path.join(self.root, f"p{partition}"), ignore_errors=True)
