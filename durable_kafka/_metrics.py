"""Prometheus metrics of a worker (``Worker(metrics_port=...)``) and of the HTTP server.

Why a registry per worker and pre-bound children: several workers can share a process (tests,
embedded use), and the hot path (one transaction, one activity) should cost a few attribute
reads and float additions, not a label lookup. Labels are bounded: orchestrator, activity and
entity names are those registered on the worker (anything else counts as ``other``), dead-letter
reasons are error type names (at most ``MAX_REASONS`` of them, then ``other``), partitions are
the hub's. docs/OPERATIONS.md lists every series with the alert to set on it.

Metrics are off unless asked for: with no registry, every hook is one ``is None`` check.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["EngineMetrics", "ProcessorMetrics", "start_metrics_server"]

OTHER = "other"
MAX_REASONS = 32
LAG_INTERVAL_S = 5.0

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LONG_SECONDS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
_RECORDS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


class _Bounded:
    """Label values from a known set (plus up to ``extra`` first-seen ones), else ``other``."""

    def __init__(self, known: Iterable[str], extra: int = 0) -> None:
        self.known = set(known)
        self.extra = extra

    def __call__(self, value: str) -> str:
        if value in self.known:
            return value
        if self.extra > 0:
            self.extra -= 1
            self.known.add(value)
            return value
        return OTHER


class EngineMetrics:
    """Every series of a worker, in one registry (exposed by :func:`start_metrics_server`)."""

    def __init__(self, registry: CollectorRegistry | None = None, *, orchestrators: Iterable[str] = (),
                 activities: Iterable[str] = (), entities: Iterable[str] = ()) -> None:
        self.registry = r = registry if registry is not None else CollectorRegistry()
        self.orchestrator_name = _Bounded(orchestrators)
        self.activity_name = _Bounded(activities)
        self.entity_name = _Bounded(entities)
        self.reason = _Bounded((), MAX_REASONS)
        self._lock = threading.Lock()
        p = "durable_kafka_"
        self.started = Counter(p + "orchestrations_started", "Orchestration executions started",
                               ["orchestrator"], registry=r)
        self.ended = Counter(p + "orchestrations_ended", "Orchestration executions ended, by final status "
                             "(completed, failed, terminated, continued_as_new)", ["orchestrator", "status"], registry=r)
        self.transaction_seconds = Histogram(p + "transaction_seconds", "One processor transaction: processing "
                                             "its batch and committing", ["processor"], buckets=_SECONDS, registry=r)
        self.batch_records = Histogram(p + "batch_records", "Source records per committed transaction",
                                       ["processor"], buckets=_RECORDS, registry=r)
        self.transactions = Counter(p + "transactions", "Processor transactions by outcome (committed, aborted)",
                                    ["processor", "outcome"], registry=r)
        self.activity_executions = Counter(p + "activity_executions", "Activity executions finished",
                                           ["activity"], registry=r)
        self.activity_failures = Counter(p + "activity_failures", "Activity executions that failed",
                                         ["activity"], registry=r)
        self.activity_seconds = Histogram(p + "activity_seconds", "Activity execution time", ["activity"],
                                          buckets=_LONG_SECONDS, registry=r)
        self.activity_queue_wait = Histogram(p + "activity_queue_wait_seconds", "From the request's write to the "
                                             "start of its execution", ["activity"], buckets=_LONG_SECONDS, registry=r)
        self.entity_operations = Counter(p + "entity_operations", "Entity operations run", ["entity"], registry=r)
        self.timers_pending = Gauge(p + "timers_pending", "Durable timers waiting in this worker's partitions",
                                    registry=r)
        self.timer_lateness = Histogram(p + "timer_lateness_seconds", "How late a timer fired after its due time",
                                        buckets=_SECONDS, registry=r)
        self.consumer_lag = Gauge(p + "consumer_lag_records", "Records behind the end of each assigned partition",
                                  ["consumer", "topic", "partition"], registry=r)
        self.deadletters = Counter(p + "deadletter_records", "Records written to the dead-letter topic, by reason "
                                   "(error type)", ["processor", "reason"], registry=r)
        self.restore_seconds = Histogram(p + "restore_seconds", "Restoring the state of newly assigned partitions "
                                         "from the changelog", ["processor"], buckets=_LONG_SECONDS, registry=r)
        self.restore_records = Counter(p + "restore_records", "Changelog records applied by restores",
                                       ["processor"], registry=r)
        self._started_by: dict[str, Any] = {}
        self._ended_by: dict[tuple[str, str], Any] = {}

    # ------------------------------------------------------------------ orchestrations
    def orchestration_started(self, name: str) -> None:
        child = self._started_by.get(name)
        if child is None:
            child = self._started_by[name] = self.started.labels(self.orchestrator_name(name))
        child.inc()

    def orchestration_ended(self, name: str, status: str) -> None:
        key = (name, status)
        child = self._ended_by.get(key)
        if child is None:
            child = self._ended_by[key] = self.ended.labels(self.orchestrator_name(name), status)
        child.inc()

    def entity_ops(self, entity_id: str, count: int) -> None:
        if count:
            name = entity_id.split("@", 2)[1] if entity_id.startswith("@") and entity_id.count("@") >= 2 else entity_id
            self.entity_operations.labels(self.entity_name(name)).inc(count)

    def deadletter(self, processor: str, error_type: str) -> None:
        with self._lock:
            reason = self.reason(error_type)
        self.deadletters.labels(processor, reason).inc()

    def processor(self, name: str) -> "ProcessorMetrics":
        return ProcessorMetrics(self, name)

    def activity(self, name: str) -> "ActivityMetrics":
        return ActivityMetrics(self, self.activity_name(name))


class ActivityMetrics:
    """Pre-bound children for one activity name."""

    __slots__ = ("executions", "failures", "seconds", "wait")

    def __init__(self, m: EngineMetrics, label: str) -> None:
        self.executions = m.activity_executions.labels(label)
        self.failures = m.activity_failures.labels(label)
        self.seconds = m.activity_seconds.labels(label)
        self.wait = m.activity_queue_wait.labels(label)


class ProcessorMetrics:
    """Pre-bound children of one processor (orchestrations, entities, triggers, activities)."""

    def __init__(self, m: EngineMetrics, name: str) -> None:
        self.engine = m
        self.name = name
        self.seconds = m.transaction_seconds.labels(name)
        self.batch = m.batch_records.labels(name)
        self.committed = m.transactions.labels(name, "committed")
        self.aborted = m.transactions.labels(name, "aborted")
        self.restore_seconds = m.restore_seconds.labels(name)
        self.restore_records = m.restore_records.labels(name)
        self._next_lag = 0.0
        self._lag_labels: set[tuple[str, str]] = set()

    def transaction(self, seconds: float, records: int) -> None:
        self.seconds.observe(seconds)
        self.batch.observe(records)
        self.committed.inc()

    def restored(self, seconds: float, records: int) -> None:
        self.restore_seconds.observe(seconds)
        self.restore_records.inc(records)

    def deadletter(self, error_type: str) -> None:
        self.engine.deadletter(self.name, error_type)

    def maybe_update_lag(self, consumer: Any) -> None:
        """Every few seconds: end offset (as last fetched) minus position, per assigned partition.

        Both numbers are local to the client (no broker round trip): the high watermark comes
        with every fetch response. A partition not fetched yet is left out.
        """
        now = time.monotonic()
        if now < self._next_lag:
            return
        self._next_lag = now + LAG_INTERVAL_S
        try:
            assignment = consumer.assignment()
            positions = consumer.position(assignment) if assignment else []
        except Exception:  # noqa: BLE001 - a consumer between rebalances: try again next time
            return
        gauge = self.engine.consumer_lag
        seen: set[tuple[str, str]] = set()
        for tp in positions:
            try:
                _low, high = consumer.get_watermark_offsets(tp, cached=True)
            except Exception:  # noqa: BLE001 - no cached watermark yet
                continue
            if high is None or high < 0 or tp.offset < 0:
                continue
            labels = (tp.topic, str(tp.partition))
            seen.add(labels)
            gauge.labels(self.name, *labels).set(max(0, high - tp.offset))
        for labels in self._lag_labels - seen:  # revoked partitions leave the series
            try:
                gauge.remove(self.name, *labels)
            except KeyError:
                pass
        self._lag_labels = seen


def start_metrics_server(registry: CollectorRegistry, port: int, addr: str = "0.0.0.0") -> Any:
    """Serve ``registry`` on ``http://addr:port/metrics`` (a daemon thread); returns the server."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return server
