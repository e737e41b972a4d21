"""The partition store: atomic batches carry the changelog offset and the write time."""

import time

from durable_kafka.processors import store as st


def test_batch_writes_data_offset_and_time_together(tmp_path):
    s = st.PartitionStore(str(tmp_path / "p0"), st.StoreOptions())
    assert s.changelog_offset == -1 and s.age_seconds is None
    s.write({st.instance_key("a"): b"1", st.instance_key("b"): b"2"}, 41)
    s.write({st.instance_key("b"): None}, 42)
    assert s.get(st.instance_key("a")) == b"1" and s.get(st.instance_key("b")) is None
    assert s.changelog_offset == 42
    assert 0 <= s.age_seconds < 5
    s.close()
    reopened = st.PartitionStore(str(tmp_path / "p0"), st.StoreOptions())
    assert reopened.changelog_offset == 42
    reopened.close()


def test_due_index_is_ordered_by_time_and_taken_once(tmp_path):
    s = st.PartitionStore(str(tmp_path / "p0"), st.StoreOptions())
    now = int(time.time() * 1000)
    keys = [st.timer_key(now + d, "i", n) for n, d in enumerate([500, -10, 0, -20])]
    s.write({k: b"x" for k in keys}, None)
    pending: dict[bytes, bytes | None] = {}
    taken = st.take_due(s, lambda k: pending.get(k, s.get(k)), lambda k: pending.__setitem__(k, None),
                        st.TIMER_PREFIX, now, limit=10)
    assert [st.due_ms_of(k) for k, _ in taken] == [now - 20, now - 10, now]  # due ones, oldest first
    again = st.take_due(s, lambda k: pending.get(k, s.get(k)), lambda k: pending.__setitem__(k, None),
                        st.TIMER_PREFIX, now, limit=10)
    assert again == []  # already taken in this batch
    s.close()
