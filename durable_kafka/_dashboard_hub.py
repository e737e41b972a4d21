"""The dashboard's hub page from the broker: topics, consumer-group lag and owners, dead letters.

Blocking ``confluent_kafka`` admin and consumer calls, run by the dashboard on a worker thread
(they are rare and bounded by timeouts). Every client is built from the hub's resolved Kafka
settings (``admin_config``/``assigned_consumer``), so a secured cluster works as for any client.

Lag is the log-stable end offset (read_committed, what a consumer can actually reach) minus
the group's committed offset; a partition the group never committed counts from the earliest
retained offset. A partition whose last write was a transaction shows a lag of 1 once fully
consumed: the commit marker takes an offset that no consumer commits past. The owner of a
partition is the group member whose assignment holds it, named by its worker id (see
:func:`worker_of`) and host.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, IsolationLevel, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from durable_kafka._client_kafka import assigned_consumer, is_partition_eof
from durable_kafka._http_models import iso
from durable_kafka.errors import CodecError
from durable_kafka.streams.codec import Codec
from durable_kafka.streams.config import admin_config
from durable_kafka.streams.events import DeadLetter
from durable_kafka.streams.topics import HubTopics

__all__ = ["hub_overview", "latest_dead_letters", "worker_of"]

log = logging.getLogger(__name__)

_TIMEOUT = 10.0
#: Up to this many dead-letter offsets the topic is read in full to count exactly.
MAX_COUNTED = 20_000
#: The groups of a worker fleet and the topic each consumes (docs/TOPICS.md).
_GROUP_SOURCES = {"orchestrators": "orchestrator-events", "activity-workers": "activity-requests",
                  "entities": "entity-operations"}


def _admin(bootstrap: str, kafka_config: Mapping[str, Any] | None) -> AdminClient:
    return AdminClient(admin_config(bootstrap, kafka_config=kafka_config))


def _spec(which: str) -> Any:
    """``OffsetSpec.latest()`` / ``.earliest()`` (untyped in confluent-kafka's stubs)."""
    factory: Any = getattr(OffsetSpec, which)
    return factory()


def _offsets(admin: AdminClient, partitions: list[TopicPartition], spec: Any) -> dict[tuple[str, int], int]:
    if not partitions:
        return {}
    request = {tp: spec for tp in partitions}
    futures = admin.list_offsets(request, isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=_TIMEOUT)
    return {(tp.topic, tp.partition): future.result().offset for tp, future in futures.items()}


def _topics(admin: AdminClient, hub: str) -> list[dict[str, Any]]:
    metadata = admin.list_topics(timeout=_TIMEOUT)
    prefix = f"{hub}."
    topics = []
    for name in sorted(t for t in metadata.topics if t.startswith(prefix)):
        parts = metadata.topics[name].partitions
        topics.append({"name": name, "partitions": [
            {"partition": p, "leader": parts[p].leader, "replicas": list(parts[p].replicas),
             "isr": list(parts[p].isrs)} for p in sorted(parts)]})
    return topics


def worker_of(hub: str, group_instance_id: str | None, client_id: str, member_id: str) -> str:
    """The worker a group member belongs to, as an operator names it.

    Workers join with static membership by default: ``group.instance.id`` is
    ``<hub>.<processor>.<worker id>`` (the transactional id), so the worker id is its tail.
    Without it the client id says more than librdkafka's default ``rdkafka``, else the member id.
    """
    if group_instance_id and group_instance_id.startswith(f"{hub}.") and group_instance_id.count(".") >= 2:
        return group_instance_id.split(".", 2)[2]
    if group_instance_id:
        return group_instance_id
    return client_id if client_id and client_id != "rdkafka" else member_id


def _members(admin: AdminClient, hub: str, group: str) -> tuple[str, dict[tuple[str, int], dict[str, Any]]]:
    """The group's state and, per assigned partition, the member that owns it."""
    description = admin.describe_consumer_groups([group], request_timeout=_TIMEOUT)[group].result()
    owners: dict[tuple[str, int], dict[str, Any]] = {}
    for member in description.members:
        owner = {"worker": worker_of(hub, member.group_instance_id, member.client_id, member.member_id),
                 "clientId": member.client_id, "host": member.host, "memberId": member.member_id,
                 "groupInstanceId": member.group_instance_id}
        for tp in member.assignment.topic_partitions if member.assignment else []:
            owners[(tp.topic, tp.partition)] = owner
    return str(description.state.name), owners


def _group(admin: AdminClient, hub: str, group: str, source: str, partition_count: int) -> dict[str, Any]:
    state, owners = _members(admin, hub, group)
    committed_request = [ConsumerGroupTopicPartitions(group)]
    committed_result = admin.list_consumer_group_offsets(committed_request, request_timeout=_TIMEOUT)[group].result()
    committed = {(tp.topic, tp.partition): tp.offset for tp in committed_result.topic_partitions or []}
    wanted = {(source, p) for p in range(partition_count)} | set(committed) | set(owners)
    partitions = [TopicPartition(t, p) for t, p in sorted(wanted)]
    ends = _offsets(admin, partitions, _spec("latest"))
    starts = _offsets(admin, partitions, _spec("earliest"))
    rows = []
    for topic, partition in sorted(wanted):
        end = ends[(topic, partition)]
        offset = committed.get((topic, partition), -1)
        reached = offset if offset >= 0 else starts[(topic, partition)]
        rows.append({"topic": topic, "partition": partition, "committed": offset if offset >= 0 else None,
                     "end": end, "lag": max(0, end - reached), "owner": owners.get((topic, partition))})
    return {"group": group, "state": state, "members": len({o["memberId"] for o in owners.values()}),
            "totalLag": sum(r["lag"] for r in rows), "partitions": rows}


def hub_overview(bootstrap: str, kafka_config: Mapping[str, Any] | None, hub: str) -> dict[str, Any]:
    """Topics, the worker groups' lag and owners, and the dead-letter count of ``hub``."""
    admin = _admin(bootstrap, kafka_config)
    topics = _topics(admin, hub)
    counts = {t["name"]: len(t["partitions"]) for t in topics}
    groups = []
    for suffix, source_suffix in _GROUP_SOURCES.items():
        source = f"{hub}.{source_suffix}"
        try:
            groups.append(_group(admin, hub, f"{hub}.{suffix}", source, counts.get(source, 0)))
        except KafkaException as error:  # a group the fleet does not run (entities), or no ACL
            groups.append({"group": f"{hub}.{suffix}", "state": "UNKNOWN", "members": 0, "totalLag": 0,
                           "partitions": [], "error": str(error)})
    deadletter = HubTopics(hub).deadletter
    dl_partitions = [TopicPartition(deadletter, p) for p in range(counts.get(deadletter, 0))]
    ends = _offsets(admin, dl_partitions, _spec("latest"))
    starts = _offsets(admin, dl_partitions, _spec("earliest"))
    span = sum(ends[k] - starts[k] for k in ends)
    return {"hub": hub, "topics": topics, "groups": groups,
            "deadLetters": {"topic": deadletter, "offsetSpan": span}}


def latest_dead_letters(bootstrap: str, kafka_config: Mapping[str, Any] | None, hub: str, codec: Codec, *,
                        limit: int = 20, timeout: float = _TIMEOUT, max_counted: int = MAX_COUNTED
                        ) -> dict[str, Any]:
    """How many dead letters ``hub`` holds, and its ``limit`` latest letters.

    Counted by reading while the topic spans at most ``max_counted`` offsets: dead letters
    are written in transactions, whose commit markers take offsets too, and a letter written
    twice by a retried batch (same id) counts once. A larger topic (an incident, or years of
    them) is not read in full on every page load: the count is then its offset span, marked
    ``approximate``, and only each partition's tail is read for the latest letters.
    """
    topic = HubTopics(hub).deadletter
    consumer = assigned_consumer(bootstrap, "dashboard", kafka_config=kafka_config, group_prefix=hub)
    letters: dict[str, DeadLetter] = {}
    undecodable = 0
    try:
        metadata = consumer.list_topics(topic, timeout=_TIMEOUT).topics.get(topic)
        partitions = sorted(metadata.partitions) if metadata is not None and metadata.error is None else []
        marks = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=_TIMEOUT) for p in partitions}
        span = sum(high - low for low, high in marks.values())
        approximate = span > max_counted
        starts = {p: max(low, high - 2 * limit) if approximate else low
                  for p, (low, high) in marks.items() if high > low}
        remaining = set(starts)
        consumer.assign([TopicPartition(topic, p, offset) for p, offset in starts.items()])
        deadline = time.monotonic() + timeout
        while remaining and time.monotonic() < deadline:
            for message in consumer.consume(500, 0.2):
                if is_partition_eof(message.error()):
                    remaining.discard(message.partition())
                    continue
                value = message.value()
                if message.error() is not None or value is None:
                    continue
                try:
                    letter = codec.decode(value, expected=DeadLetter)
                except CodecError:
                    undecodable += 1
                    continue
                letters.setdefault(letter.id, letter)
    finally:
        consumer.close()
    newest = sorted(letters.values(), key=lambda d: d.failed_at, reverse=True)[:limit]
    return {"count": span if approximate else len(letters), "approximate": approximate,
            "undecodable": undecodable, "complete": not remaining,
            "latest": [_letter_json(d) for d in newest]}


def _letter_json(letter: DeadLetter) -> dict[str, Any]:
    return {"id": letter.id, "topic": letter.topic, "partition": letter.partition, "offset": letter.offset,
            "reason": letter.reason, "errorType": letter.error_type, "failedAt": iso(letter.failed_at),
            "instanceId": letter.instance_id, "originalSize": letter.original_size}
