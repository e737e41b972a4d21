"""The Worker: hosts the orchestration processor, the activity worker (and entities) of one hub.

A worker is what an operator scales: start a second one with another ``worker_id`` and Kafka
gives it half of the partitions; its state is restored from the changelog topics.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Callable, Literal, TypeVar

from confluent_kafka import KafkaException

from durable_kafka._work_items import (  # noqa: F401 - durabletask imports them from its worker module
    ActivityWorkItemFilter,
    EntityWorkItemFilter,
    OrchestrationWorkItemFilter,
    WorkItemFilters,
)
from durable_kafka._worker_routing import AUTO, Hosting, HubMembership, resolve_hosting
from durable_kafka.connectors.activities import ActivityRegistry, ActivityWorker
from durable_kafka.errors import ConfigurationError
from durable_kafka.processors.actions import action_to_event
from durable_kafka.processors.executor import (
    DEFAULT_MAXIMUM_TIMER_INTERVAL,
    OrchestrationExecutor,
    OrchestratorRegistry,
    check_maximum_timer_interval,
)
from durable_kafka.processors.instance import Topics
from durable_kafka.processors.orchestrations import OrchestrationHandler
from durable_kafka.processors.runtime import Processor, ProcessorConfig
from durable_kafka.processors.store import StoreOptions, StoreSet
from durable_kafka.streams.admin import ensure_topics
from durable_kafka.streams.config import resolve_kafka_config
from durable_kafka.streams.config import bootstrap_servers as resolve_bootstrap
from durable_kafka.streams.connection import check_connection, raise_if_unauthorized
from durable_kafka.streams.payloads import PayloadStore
from durable_kafka.payload import payload_codec
from durable_kafka.streams.topics import DEFAULT_PARTITIONS, HubTopics, validate_hub_name
from durable_kafka.versioning import VersionFailureStrategy, VersioningOptions, VersionMatchStrategy

__all__ = ["VersionFailureStrategy", "VersionMatchStrategy", "VersioningOptions", "Worker", "default_state_dir"]

log = logging.getLogger(__name__)


def default_state_dir() -> str:
    return os.environ.get("DURABLE_KAFKA_STATE_DIR") or os.path.join(os.getcwd(), ".state", "worker")


class Worker:
    """Runs orchestrations, activities and entities registered on it.

    Options:
      ``state_dir``: where the RocksDB stores live (a cache of the changelog topics: deleting it
      is safe, the worker rebuilds). ``worker_id``: stable identity of this worker (its Kafka
      transactional id); two workers of one hub need different ids. ``partitions``: the hub-wide
      partition count used when the topics are created. ``max_activity_workers``: threads for
      sync activities (async ones share one event loop). ``executor_cache_size``: live
      orchestrations kept in memory between steps (bounded: a miss replays from history).
      ``stuck_after``: seconds without committed progress (one transaction blocked, or every
      transaction aborting) before :meth:`errors` reports the worker stuck (the CLI then exits
      so that a process supervisor restarts it). ``static_membership``: join the consumer
      groups with ``group.instance.id`` derived from ``worker_id``, so a worker restarted
      within the session timeout (6 s) takes its partitions back at once, without a rebalance;
      the price is that a cleanly stopped worker's partitions move on only after that timeout.
      ``kafka_config``: connection and security settings (``security.protocol``, ``sasl.*``,
      ``ssl.*``...) for every Kafka client of the worker; they take precedence over
      ``DURABLE_KAFKA_*`` variables and the ``DURABLE_KAFKA_CONFIG_FILE`` properties file
      (docs/SECURITY.md). :meth:`start` checks the connection first and raises
      ``KafkaAuthenticationError``/``KafkaTlsError``/``KafkaConnectionError`` or
      ``KafkaAuthorizationError`` (naming the topic, group or transactional id) within seconds.
      ``replication_factor`` / ``min_insync_replicas``: for topics this worker creates; by
      default 3 and 2 on a cluster of three or more brokers, else one copy per broker and 1.
      ``maximum_timer_interval``: timers longer than this are chained in durable timers of at
      most this length (durabletask's long timers; default 3 days as in durabletask, None never
      splits); replay does not depend on it, so workers may differ during a rolling change.
      ``early_dispatch``: send activity requests as soon as the step that schedules them has
      run, without waiting for its transaction to commit (the commit still waits for their
      acknowledgement). Off by default: measured on this 2-core machine it did not lower
      HelloSequence5 latency (the step's own commit stays on the critical path and the
      concurrent activity slowed it); worth trying where the activity worker and the broker
      do not share the processor's cores (docs/DECISIONS.md D14).
      ``metrics_port``: serve Prometheus metrics on ``http://<metrics_addr>:<port>/metrics``
      (off by default; docs/OPERATIONS.md lists the series); ``metrics_registry``: a
      ``prometheus_client.CollectorRegistry`` to collect them into instead of (or as well as)
      serving them. ``tracer_provider``: the OpenTelemetry tracer provider for the engine's
      spans (default: the global one; with none configured, tracing is off).

      ``payload_store``: where payloads above its threshold are kept (docs/PAYLOADS.md); None
      (default) = the hub's Kafka-native store (``<hub>.payloads``), False = large payloads off.
    """

    def __init__(
        self,
        bootstrap_servers: str | None = None,
        hub: str = "default",
        *,
        state_dir: str | None = None,
        worker_id: str | None = None,
        partitions: int = DEFAULT_PARTITIONS,
        max_activity_workers: int = 16,
        executor_cache_size: int = 2000,
        create_topics: bool = True,
        store_options: StoreOptions | None = None,
        stuck_after: float = 60.0,
        kafka_config: Mapping[str, Any] | None = None,
        static_membership: bool = True,
        replication_factor: int | None = None,
        min_insync_replicas: int | None = None,
        maximum_timer_interval: timedelta | None = DEFAULT_MAXIMUM_TIMER_INTERVAL,
        early_dispatch: bool = False,
        metrics_port: int | None = None,
        metrics_addr: str = "0.0.0.0",
        metrics_registry: Any = None,
        tracer_provider: Any = None,
        payload_store: PayloadStore | Literal[False] | None = None,
    ) -> None:
        self.kafka_config = resolve_kafka_config(kafka_config)
        self.bootstrap = resolve_bootstrap(bootstrap_servers, self.kafka_config)
        self.hub = validate_hub_name(hub)
        self.state_dir = os.path.abspath(state_dir or default_state_dir())
        if worker_id is None:
            digest = hashlib.sha1(f"{socket.gethostname()}|{self.state_dir}".encode()).hexdigest()[:12]
            worker_id = f"w{digest}"
        self.worker_id = worker_id
        self.partitions = partitions
        self.max_activity_workers = max_activity_workers
        self.executor_cache_size = executor_cache_size
        self.create_topics = create_topics
        self.store_options = store_options
        self.stuck_after = stuck_after
        self.static_membership = static_membership
        self.replication_factor = replication_factor
        self.min_insync_replicas = min_insync_replicas
        self.maximum_timer_interval = check_maximum_timer_interval(maximum_timer_interval)
        self.early_dispatch = early_dispatch
        self.topics = HubTopics(self.hub)
        self.payloads = payload_codec(payload_store, self.bootstrap, self.hub, self.kafka_config)
        self._orchestrators = OrchestratorRegistry()
        self._activities = ActivityRegistry()
        self._entities: dict[str, Any] = {}
        self._triggers: list[Any] = []  # durable_kafka.triggers.Route
        self._create_missing: set[str] = set()
        self._outputs: list[Any] = []  # triggers.PublishCompletion routes
        self._trigger_processor: Processor | None = None
        self._lock = threading.Lock()
        self._started = False
        self._orch_processor: Processor | None = None
        self._entity_processor: Processor | None = None
        self._activity_worker: ActivityWorker | None = None
        self.metrics_port, self.metrics_addr = metrics_port, metrics_addr
        self._metrics_registry, self._tracer_provider = metrics_registry, tracer_provider
        self.metrics: Any = None  # durable_kafka._metrics.EngineMetrics while started with metrics on
        self._metrics_server: Any = None
        self._tracing: Any = None
        self._work_item_filters: Any = AUTO  # docs/ROUTING.md
        self._membership: HubMembership | None = None
        #: what this worker hosts, resolved at start (``accepts_orchestration`` for version/name holds)
        self._hosting: Hosting | None = None

    # ------------------------------------------------------------------ registration
    def add_orchestrator(self, fn: Callable[..., Any], name: str | None = None) -> str:
        self._check_not_started()
        return self._orchestrators.add_orchestrator(fn, name)

    def use_versioning(self, options: VersioningOptions | None) -> None:
        """Run only the orchestration versions ``options`` accept (durabletask's name; None: all).

        For rolling deploys of orchestrator code: see docs/VERSIONING.md for what REJECT and FAIL
        do with the other versions and how partitions hand them over.
        """
        self._check_not_started()
        if options is not None and not isinstance(options, VersioningOptions):
            raise ConfigurationError(f"use_versioning takes VersioningOptions or None, got {options!r}")
        self._orchestrators.versioning = options

    @property
    def versioning(self) -> VersioningOptions | None:
        """The options given to ``use_versioning`` (None: every version runs)."""
        return self._orchestrators.versioning

    def add_activity(self, fn: Callable[..., Any], name: str | None = None) -> str:
        self._check_not_started()
        return self._activities.add_activity(fn, name)

    def add_entity(self, fn: Any, name: str | None = None) -> str:
        self._check_not_started()
        from durable_kafka.entities import entity_name

        key = entity_name(fn, name)
        self._entities[key] = fn
        return key

    def configure_scheduled_tasks(self) -> None:
        """Host recurring schedules (``durable_kafka.scheduled``): registers the schedule entity and
        its orchestrators, as durabletask's method of this name does (docs/SCHEDULES.md)."""
        from durable_kafka.scheduled import configure_scheduled_tasks

        configure_scheduled_tasks(self)

    def add_trigger(self, route: Any, *, create_missing: bool = False) -> str:
        """Turn the records of ``route.topic`` into commands (``durable_kafka.triggers``; docs/TRIGGERS.md).

        The source topic must exist when the worker starts (``SourceTopicMissingError``), or is
        created then with ``create_missing=True``. Returns the route's name; two routes of one
        worker need different names.
        """
        from durable_kafka.errors import InvalidRouteError
        from durable_kafka.triggers import Route

        self._check_not_started()
        if not isinstance(route, Route):
            raise InvalidRouteError(f"add_trigger takes a triggers.Start/Raise/Signal/Terminate/Suspend/Resume "
                                    f"route, got {route!r}")
        if any(r.name == route.name for r in self._triggers):
            raise InvalidRouteError(f"two trigger routes are named {route.name!r}; give them distinct name=")
        self._triggers.append(route)
        if create_missing:
            self._create_missing.add(route.topic)
        return str(route.name)

    def add_output(self, route: Any, *, create_missing: bool = False) -> str:
        """Publish every instance that ends to ``route.topic`` (``triggers.PublishCompletion``).

        The record is written in the same Kafka transaction as the step that ended the instance
        (exactly once, never before the result is durable). The topic must exist when the worker
        starts, or is created then with ``create_missing=True``. Returns the route's name.
        """
        from durable_kafka.errors import InvalidRouteError
        from durable_kafka.triggers import PublishCompletion

        self._check_not_started()
        if not isinstance(route, PublishCompletion):
            raise InvalidRouteError(f"add_output takes a triggers.PublishCompletion, got {route!r}")
        if any(r.name == route.name for r in self._outputs):
            raise InvalidRouteError(f"two output routes are named {route.name!r}; give them distinct name=")
        self._outputs.append(route)
        if create_missing:
            self._create_missing.add(route.topic)
        return route.name

    def use_work_item_filters(self, filters: Any = AUTO) -> None:
        """Choose the work this worker takes (durabletask's name; docs/ROUTING.md).

        Omitted (and by default): filters generated from what is registered at :meth:`start`, so
        activity requests reach only workers that host their activity. A ``WorkItemFilters``:
        exactly the orchestrators, activities and entities it names (each must be registered).
        ``None``: filters cleared; the worker takes every activity request of the hub, and fails
        those it has no function for, as before routing existed.
        """
        self._check_not_started()
        if filters is not AUTO and filters is not None and not isinstance(filters, WorkItemFilters):
            from durable_kafka.errors import WorkItemFilterError

            raise WorkItemFilterError(f"use_work_item_filters takes a WorkItemFilters, None or nothing, got {filters!r}")
        self._work_item_filters = filters

    def _check_not_started(self) -> None:
        if self._started:
            raise ConfigurationError("register orchestrators, activities and entities before start()")

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "Worker":
        with self._lock:
            if self._started:
                return self
            # wrong credentials/TLS/protocol, or a group the ACLs deny (a consumer denied its
            # group would only wait): a typed error naming it, before anything is created
            check_connection(self.bootstrap, self.kafka_config, groups=self._groups())
            if self.create_topics:
                ensure_topics(self.hub, self.partitions, bootstrap=self.bootstrap, kafka_config=self.kafka_config,
                              replication_factor=self.replication_factor,
                              min_insync_replicas=self.min_insync_replicas)
            if self._triggers:  # a missing source topic is a start-up error, before anything runs
                from durable_kafka._trigger_runtime import check_source_topics

                check_source_topics(self.bootstrap, self.kafka_config, self._triggers, self._create_missing)
            if self._outputs:  # a missing output topic too: before any instance could end
                from durable_kafka._trigger_runtime import check_source_topics

                check_source_topics(self.bootstrap, self.kafka_config, self._outputs, self._create_missing,
                                    what="output topic", hint="Worker.add_output")
            self._started = True
            try:
                self._start_observability()
                self._start_parts()
            except KafkaException as exc:  # e.g. init_transactions refused for our transactional id
                part = "entities" if self._entity_processor is not None else "orchestrations"
                self._stop_metrics_server()
                self._stop_parts()
                self._started = False
                raise_if_unauthorized(exc, {"transactional_id": f"{self.hub}.{part}.{self.worker_id}",
                                            "group": f"{self.hub}.{part}"}, f"start the {part} processor")
                raise
            except BaseException:
                self._stop_metrics_server()
                self._stop_parts()
                self._started = False
                raise
        return self

    def _groups(self) -> list[str]:
        groups = [f"{self.hub}.orchestrators", f"{self.hub}.activity-workers"]
        if self._triggers:
            from durable_kafka._trigger_runtime import trigger_group

            groups.append(trigger_group(self.hub, self._triggers))
        return groups + [f"{self.hub}.entities"] if self._entities else groups

    def _start_parts(self) -> None:
        t = self.topics
        hosting = resolve_hosting(self._work_item_filters, self._orchestrators.names(), self._activities.names(),
                                  sorted(self._entities))
        self._hosting = hosting
        # explicit filters hold back (park) orchestrations they leave out, as durabletask's backend
        # never dispatches them; by default every registered orchestrator runs
        self._orchestrators.accepts = (hosting.accepts_orchestration
                                       if isinstance(self._work_item_filters, WorkItemFilters) else None)
        self._membership = membership = HubMembership(
            hub=self.hub, worker_id=self.worker_id, bootstrap=self.bootstrap, kafka_config=self.kafka_config,
            partitions=self.partitions, hosting=hosting)
        membership.start_view()  # WorkItemFilterError when this worker's sets conflict with the hub's
        topics = Topics(t.orchestrator_events, t.activity_requests, t.entity_operations, t.history, t.status, t.replies,
                        t.deadletter, activity_topic=t.activity_topic)
        executor = OrchestrationExecutor(self._orchestrators, maximum_timer_interval=self.maximum_timer_interval)
        on_ended = None
        if self._outputs:
            from durable_kafka._trigger_outputs import completion_publisher

            on_ended = completion_publisher(self._outputs)
        options = self.store_options or StoreOptions()
        stores = StoreSet(os.path.join(self.state_dir, self.hub), "orchestrations", options)
        config = ProcessorConfig(
            bootstrap=self.bootstrap, group_id=f"{self.hub}.orchestrators", source_topic=t.orchestrator_events,
            changelog_topic=t.orchestrations_changelog, transactional_id=f"{self.hub}.orchestrations.{self.worker_id}",
            stuck_after=self.stuck_after, static_membership=self.static_membership,
            kafka_config=self.kafka_config,
            # early dispatch (docs/DECISIONS.md D14): every activity's request topic, and the
            # topic of requests written before routing
            dispatch_topics=(f"{self.hub}.activity.", t.activity_requests) if self.early_dispatch else ())
        router = membership.router()
        if hosting.run_orchestrations:
            self._orch_processor = Processor(
                config, stores,
                lambda proc: _with_payloads(OrchestrationHandler(
                    proc, topics=topics, deadletter_topic=t.deadletter, executor=executor,
                    action_to_event=_action_event_for, cache_size=self.executor_cache_size, on_ended=on_ended,
                    router=router),
                    self.payloads),
                name="orchestrations")
            self._observe(self._orch_processor)
            self._orch_processor.start()
        if hosting.entities:
            from durable_kafka.processors.entities import build_entity_processor

            self._entity_processor = build_entity_processor(self, options, hosting.entities)
            self._observe(self._entity_processor)
            self._entity_processor.start()
        if hosting.activities:
            self._activity_worker = ActivityWorker(
                self.bootstrap, self.hub, self._activities, max_workers=self.max_activity_workers,
                # the hosted set is part of the static id: a worker restarted with other activities
                # must rejoin as a new member (a static member keeps its old assignment: measured)
                group_instance_id=(f"{self.hub}.activities.{self.worker_id}.{hosting.activities_digest()}"
                                   if self.static_membership else None),
                kafka_config=self.kafka_config, hosted=hosting.activities,
                ensure_topics=membership.ensure_activity_topics)
            self._activity_worker.metrics, self._activity_worker.tracing = self.metrics, self._tracing
            self._activity_worker.payloads = self.payloads
            self._activity_worker.start()
            self._activity_worker.wait_assigned(30)  # ready to serve when start() returns
        membership.publish()
        if self._triggers:  # last: its commands go to processors that are already running
            from durable_kafka._trigger_runtime import build_trigger_processor

            self._trigger_processor = build_trigger_processor(
                hub=self.hub, worker_id=self.worker_id, bootstrap=self.bootstrap, kafka_config=self.kafka_config,
                routes=self._triggers, state_dir=self.state_dir, stuck_after=self.stuck_after,
                static_membership=self.static_membership)
            self._observe(self._trigger_processor)
            self._trigger_processor.start()
        log.info("worker %s started on hub %s", self.worker_id, self.hub)

    def _start_observability(self) -> None:
        """Metrics (registry, endpoint) and the tracer, when asked for (docs/OPERATIONS.md)."""
        from durable_kafka._tracing import Tracing

        self._tracing = Tracing.create(self._tracer_provider)
        if self.metrics_port is None and self._metrics_registry is None:
            return
        from durable_kafka._metrics import EngineMetrics, start_metrics_server

        if self.metrics is None:  # kept across stop/start: a registry takes each series once
            self.metrics = EngineMetrics(self._metrics_registry, orchestrators=self._orchestrators.names(),
                                         activities=self._activities.names(), entities=self._entities)
        if self.metrics_port is not None and self._metrics_server is None:
            self._metrics_server = start_metrics_server(self.metrics.registry, self.metrics_port, self.metrics_addr)

    def _observe(self, processor: Processor) -> None:
        """Give a processor and its handler the worker's metrics and tracer (None: off)."""
        handler = processor.handler
        if self.metrics is not None:
            processor.metrics = self.metrics.processor(processor.name)
            if hasattr(handler, "metrics"):  # the trigger handler counts on its processor's children
                handler.metrics = processor.metrics if processor.name == "triggers" else self.metrics
        if hasattr(handler, "tracing"):
            handler.tracing = self._tracing

    def _stop_metrics_server(self) -> None:
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
            self._metrics_server = None

    def stop(self) -> None:
        with self._lock:
            self._stop_metrics_server()
            if not self._started:
                return
            self._stop_parts()
            self._started = False
        log.info("worker %s stopped", self.worker_id)

    def _stop_parts(self) -> None:
        for part in (self._trigger_processor, self._activity_worker, self._entity_processor, self._orch_processor):
            if part is not None:
                try:
                    part.stop()
                except Exception:  # noqa: BLE001 - stop the other parts regardless
                    log.exception("stopping %r failed", part)
        self._activity_worker = self._entity_processor = self._orch_processor = None
        self._trigger_processor = None
        self.payloads.close()  # reopened on the next start if needed
        if self._membership is not None:  # its tombstone tells the hub at once that we host nothing
            try:
                self._membership.stop()
            except Exception:  # noqa: BLE001 - a stale registration expires by itself
                log.exception("withdrawing the worker registration failed")
            self._membership = None

    @property
    def is_running(self) -> bool:
        return self._started

    def stats(self) -> dict[str, float]:
        """Counters of the orchestration processor (episodes, executor cache hits/misses...) and its
        timings (``process_s``, ``commit_s``: seconds, hence float)."""
        if self._orch_processor is None:
            return {}
        return {**self._orch_processor.handler.stats, **self._orch_processor.stats}

    def errors(self) -> list[BaseException]:
        """Why a part of this worker stopped (or is stuck); empty while healthy."""
        found = [p.error for p in (self._orch_processor, self._entity_processor, self._trigger_processor)
                 if p is not None and p.error]
        if self._activity_worker is not None and self._activity_worker.failure is not None:
            found.append(self._activity_worker.failure)
        return found

    def __enter__(self) -> "Worker":
        """Start the worker if something is registered; else leave starting to :meth:`start`.

        Both styles work: ours registers first and lets ``with worker:`` start it; durabletask's
        enters an empty worker, registers inside the block and then calls ``w.start()``
        (starting a worker that has nothing to run would only fail its registrations).
        """
        if self._has_registrations():
            return self.start()
        return self

    def _has_registrations(self) -> bool:
        return bool(self._orchestrators.names() or self._activities.names() or self._entities
                     or self._triggers)

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _action_event_for(action: Any, timestamp: Any, instance_id: str | None = None) -> Any:
    return action_to_event(action, timestamp, instance_id)


_H = TypeVar("_H", bound=Any)


def _with_payloads(handler: _H, payloads: Any) -> _H:
    """A processor handler that stores and resolves large payloads with the worker's codec."""
    handler.payloads = payloads
    return handler
