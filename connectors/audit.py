"""Audit a task hub by replaying its history topic: state must be a fold of the events.

An auditor does not trust the status snapshots: it reads ``<hub>.history`` from the start
(read_committed), folds each instance's current execution into a status, and compares the fold
with ``<hub>.status``. It also checks the log itself (no duplicated record ids, no gaps in any
execution's indices) and, given the orchestrator code, replays every history through the
executor to prove the code still reproduces it (non-determinism shows up as a failure here, not
in production).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import Any, Callable, Iterable

from confluent_kafka import Consumer, TopicPartition

from durable_kafka._progress import Progress
from durable_kafka.errors import CodecError
from durable_kafka.streams import events as ev
from durable_kafka.streams.codec import Codec
from durable_kafka.streams.config import bootstrap_servers, consumer_config, resolve_kafka_config
from durable_kafka.processors.instance_state import InstanceState, apply_event
from durable_kafka.streams.reading import read_to_end, watermarks
from durable_kafka.streams.payload_topic import KafkaPayloadStore
from durable_kafka.streams.payloads import PayloadCodec, bind
from durable_kafka.streams.status import OrchestrationStatus
from durable_kafka.streams.topics import HubTopics

log = logging.getLogger(__name__)


@dataclass
class FoldedInstance:
    """What the history says about one instance's latest execution.

    ``state`` is folded with the engine's own applier table
    (:mod:`durable_kafka.processors.instance_state`), the one the live step and recovery use.
    """

    instance_id: str
    execution_id: str = ""
    records: list[ev.HistoryRecord] = field(default_factory=list)
    state: InstanceState | None = None

    def __post_init__(self) -> None:
        if self.state is None:
            self.state = InstanceState(instance_id=self.instance_id)

    @property
    def name(self) -> str:
        return self.state.header.name if self.state is not None and self.state.header is not None else ""

    @property
    def runtime_status(self) -> OrchestrationStatus:
        assert self.state is not None
        return self.state.status

    @property
    def output(self) -> str | None:
        header = self.state.header if self.state is not None else None
        return header.output if header is not None else None

    @property
    def failure_message(self) -> str | None:
        header = self.state.header if self.state is not None else None
        return header.failure_details.message if header is not None and header.failure_details else None


@dataclass
class AuditReport:
    records: int = 0
    instances: int = 0
    entities: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def fold(records: Iterable[ev.HistoryRecord | ev.HistoryBatch]) -> dict[str, FoldedInstance]:
    """Fold history values (topic order; batches are taken event by event) into the latest
    execution of each instance."""
    out: dict[str, FoldedInstance] = {}
    for rec in (r for value in records for r in ev.history_records(value)):
        if rec.instance_id.startswith("@"):
            continue  # entity operations: audited by their own counters
        f = out.setdefault(rec.instance_id, FoldedInstance(rec.instance_id))
        if rec.execution_id != f.execution_id:
            if rec.index != 0:
                continue  # a late record of an older execution
            f.execution_id, f.records = rec.execution_id, []
            f.state = InstanceState(instance_id=rec.instance_id)
        f.records.append(rec)
        assert f.state is not None
        apply_event(f.state, rec.event)
    return out


def read_topic(bootstrap: str, topic: str, codec: Codec, progress: bool = False,
               on_undecodable: Callable[[Any, CodecError], None] | None = None, *,
               kafka_config: Mapping[str, Any] | None = None) -> list[Any]:
    """Every committed record of ``topic`` (values decoded; tombstones as (key, None)).

    A value that does not decode raises, unless ``on_undecodable(message, error)`` is given:
    then it is reported there and skipped, so one foreign record does not stop an audit.
    The (never joined) group id starts with the hub name, like every group of the hub, so the
    hub's prefixed ACLs cover it.
    """
    hub = topic.rsplit(".", 1)[0]
    consumer = Consumer(consumer_config(bootstrap, f"{hub}.audit-{uuid.uuid4().hex}", kafka_config=kafka_config,
                                        **{"fetch.wait.max.ms": 10}))
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        bounds = {p: watermarks(consumer, TopicPartition(topic, p)) for p in meta.partitions}
        out: list[Any] = []
        total = sum(hi - lo for lo, hi in bounds.values())  # offsets: transaction markers count too
        with Progress(f"reading {topic}", total, "offsets", enabled=progress) as bar:
            for batch in read_to_end(consumer, topic, bounds, poll_timeout=0.2):
                for m in batch:
                    try:
                        out.append((m.key(), codec.decode(m.value()) if m.value() is not None else None))
                    except CodecError as exc:
                        if on_undecodable is None:
                            raise
                        on_undecodable(m, exc)
                bar.update(len(batch))
        return out
    finally:
        consumer.close()


def audit(hub: str, bootstrap: str | None = None, *, orchestrators: Any = None,
          progress: bool = False, kafka_config: Mapping[str, Any] | None = None) -> AuditReport:
    """Replay ``<hub>.history`` and check it against ``<hub>.status`` (and the code, if given)."""
    kafka_config = resolve_kafka_config(kafka_config)
    bootstrap = bootstrap_servers(bootstrap, kafka_config)
    codec, topics, report = Codec.default(), HubTopics(hub), AuditReport()
    payloads: PayloadCodec | None = None
    def undecodable(message: Any, exc: CodecError) -> None:
        report.problems.append(f"undecodable record at {message.topic()}[{message.partition()}]@{message.offset()}: "
                               f"{exc}")

    # one HistoryBatch per orchestration step (D20), one HistoryRecord per event before it and for entities
    history = [r for _, v in read_topic(bootstrap, topics.history, codec, progress, undecodable,
                                        kafka_config=kafka_config)
               for r in ev.history_records(v)]
    report.records = len(history)
    seen: set[str] = set()
    for rec in history:
        if rec.id in seen:
            report.problems.append(f"duplicated history record {rec.id}")
        seen.add(rec.id)
    folded = fold(history)
    report.instances = len(folded)
    report.entities = len({r.instance_id for r in history if r.instance_id.startswith("@")})
    statuses: dict[str, Any] = {}
    for key, value in read_topic(bootstrap, topics.status, codec, progress, undecodable,
                                     kafka_config=kafka_config):
        if key is None:
            report.problems.append(f"a record without a key on {topics.status}")
            continue
        statuses[key.decode("utf-8", "replace")] = value  # compaction may not have run: the last one wins
    for iid, f in folded.items():
        indices = [r.index for r in f.records]
        if indices != list(range(len(indices))):
            report.problems.append(f"{iid}: history indices are not 0..n-1: {indices[:10]}...")
        status = statuses.get(iid)
        if status is None:
            continue  # purged: its history stays for audit, its state is gone
        if status.execution_id != f.execution_id:
            report.problems.append(f"{iid}: status is execution {status.execution_id}, history ends in {f.execution_id}")
            continue
        if status.runtime_status != f.runtime_status and not (f.runtime_status == OrchestrationStatus.RUNNING and status.runtime_status == OrchestrationStatus.PENDING):
            report.problems.append(f"{iid}: status says {status.runtime_status}, history folds to {f.runtime_status}")
        if f.runtime_status in (OrchestrationStatus.COMPLETED, OrchestrationStatus.TERMINATED) and status.output != f.output:
            report.problems.append(f"{iid}: status output {status.output!r} != history output {f.output!r}")
        folded_version = f.state.header.version if f.state is not None and f.state.header is not None else None
        if status.version != folded_version:
            report.problems.append(f"{iid}: status version {status.version!r} != history version {folded_version!r}")
    if orchestrators is not None:  # replay of every instance's history with the given code
        items = folded.values()
        for f in Progress.over(items, "replaying instances", len(folded), "instances", enabled=progress):
            status = statuses.get(f.instance_id)  # purged, or another execution: not replayed (as before)
            if status is None or status.execution_id != f.execution_id:
                continue
            if payloads is None:  # histories hold references to large payloads: read them, never write
                payloads = PayloadCodec(KafkaPayloadStore(bootstrap, hub, kafka_config=kafka_config),
                                        owns_store=True, read_only=True)
            with bind(payloads, f.instance_id):
                _replay(orchestrators, f, report)
    if payloads is not None:
        payloads.close()
    return report


def _replay(registry: Any, f: FoldedInstance, report: AuditReport) -> None:
    from durable_kafka.processors.executor import OrchestrationExecutor
    from durable_kafka.processors.rewind import effective_history

    if registry.get(f.name) is None:
        report.problems.append(f"{f.instance_id}: orchestrator {f.name!r} is not in the given code")
        return
    live = OrchestrationExecutor(registry).start(f.instance_id)
    live.apply(effective_history([r.event for r in f.records]))
    result = live.result([])
    if result.failure_details is not None and result.failure_details.is_caused_by("NonDeterminismError") \
            and f.failure_message != result.failure_details.message:
        report.problems.append(f"{f.instance_id}: replay with the given code: {result.failure_details.message}")
