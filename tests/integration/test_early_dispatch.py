"""Activity requests dispatched before the step commits, with transactions aborted on purpose.

Early dispatch (docs/DECISIONS.md) sends a step's activity requests with a plain producer while
its transaction is still open. The argument for safety is that an aborted step only ever costs
an extra execution (activities are at least once) and that its result is accepted only for a
task of the committed history. Here every third transaction that dispatched something is aborted
*after* its requests were acknowledged by the broker (so the activity worker does see them), on
the real broker: every instance must still complete once with the right output, no history may
hold a duplicate event, and the extra executions are counted (and must exist, or the test did
not exercise what it claims to).
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter

from confluent_kafka import KafkaError, KafkaException

from durable_kafka import Client, OrchestrationStatus, Worker
from durable_kafka.processors import runtime
from durable_kafka.streams import events as ev
from durable_kafka.connectors.audit import read_topic
from durable_kafka.streams.codec import Codec

N = 40
STEPS = 5

_lock = threading.Lock()
_executions: Counter[tuple[str, int]] = Counter()


def hop(ctx, arg):
    iid, step = arg
    with _lock:
        _executions[(iid, step)] += 1
    return step * 10


def sequence(ctx, _):
    total = 0
    for step in range(STEPS):
        total += yield ctx.call_activity(hop, input=[ctx.instance_id, step])
    return total


def test_aborts_between_dispatch_and_commit_lose_and_double_nothing(hub, tmp_path, monkeypatch):
    aborted = {"n": 0, "confirmed": 0}
    original = runtime.Transaction.confirm_dispatched

    def confirm_then_maybe_abort(self, timeout):
        original(self, timeout)  # the requests are on the broker now: the activity worker will run them
        if self.dispatched:
            aborted["confirmed"] += 1
            if aborted["confirmed"] % 3 == 0:
                aborted["n"] += 1
                raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT, "injected abort after dispatch"))

    monkeypatch.setattr(runtime.Transaction, "confirm_dispatched", confirm_then_maybe_abort)
    _executions.clear()
    worker = Worker(hub.bootstrap, hub=hub.name, state_dir=str(tmp_path / "state"), partitions=hub.partitions,
                    early_dispatch=True)
    worker.add_orchestrator(sequence)
    worker.add_activity(hop)
    ids = [f"ed-{uuid.uuid4().hex[:8]}-{i}" for i in range(N)]
    with worker, Client(hub.bootstrap, hub=hub.name) as client:
        for iid in ids:
            client.schedule_new_orchestration(sequence, instance_id=iid)
        for iid in ids:
            state = client.wait_for_orchestration_completion(iid, timeout=120)
            assert state is not None and state.runtime_status == OrchestrationStatus.COMPLETED, (iid, state)
            assert state.serialized_output == str(sum(10 * s for s in range(STEPS)))
        assert worker.errors() == [] if hasattr(worker, "errors") else True

    assert aborted["n"] > 0
    with _lock:
        missing = [(iid, s) for iid in ids for s in range(STEPS) if _executions[(iid, s)] == 0]
        extra = sum(c - 1 for c in _executions.values() if c > 1)
    assert not missing
    print(f"\n{aborted['n']} transactions aborted after dispatch; {extra} extra activity executions "
          f"of {N * STEPS} (at least once, as the contract allows)")
    assert extra > 0, "aborted steps had dispatched requests, so some activity must have run twice"

    records = [r for _, v in read_topic(hub.bootstrap, hub.topics.history, Codec.default()) for r in ev.history_records(v)]
    mine = [r for r in records if r.instance_id in set(ids)]
    assert not [k for k, c in Counter(r.id for r in mine).items() if c > 1], "duplicated history records"
    per_instance = Counter(r.instance_id for r in mine)
    for iid in ids:
        recs = [r for r in mine if r.instance_id == iid]
        assert [r.index for r in recs] == list(range(per_instance[iid]))
        done = Counter(r.event.task_scheduled_id for r in recs if isinstance(r.event, ev.TaskCompleted))
        assert len(done) == STEPS and all(c == 1 for c in done.values()), f"{iid}: a task completed twice"
