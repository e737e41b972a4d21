"""What a worker hosts, and telling the hub: the worker's side of routing (docs/ROUTING.md).

Resolves the work-item filters into the names each part of the worker runs, starts the
registration view and publisher of ``<hub>.workers``, and checks a starting worker's
orchestrators and entities against the hub's other live workers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from durable_kafka._work_items import WorkItemFilters
from durable_kafka.errors import WorkItemFilterError
from durable_kafka.processors.routing import ActivityRouter, hub_set_mismatch
from durable_kafka.streams.admin import ensure_activity_topics
from durable_kafka.streams.events import WorkerRegistration
from durable_kafka.streams.registrations import RegistrationPublisher, RegistrationView
from durable_kafka.streams.topics import HubTopics

__all__ = ["AUTO", "Hosting", "HubMembership", "resolve_hosting"]

log = logging.getLogger(__name__)

#: ``Worker.use_work_item_filters()`` without an argument: generate filters from the registry
AUTO: Any = object()


@dataclass(frozen=True)
class Hosting:
    """The names each part of a worker runs. ``activities == ["*"]``: every activity (no filters)."""

    orchestrations: list[str]
    activities: list[str]
    entities: list[str]
    run_orchestrations: bool
    #: orchestrator name -> the versions its filter accepts (empty: any); None: no filters
    orchestration_versions: dict[str, list[str]] | None = None

    @property
    def all_activities(self) -> bool:
        return "*" in self.activities

    def activities_digest(self) -> str:
        """8 hex digits naming the hosted activity set (part of the activity consumer's static id)."""
        import hashlib

        return hashlib.sha256("\n".join(sorted(self.activities)).encode("utf-8")).hexdigest()[:8]

    def accepts_orchestration(self, name: str, version: str | None = None) -> bool:
        """Whether this worker's filters take work of orchestrator ``name`` at ``version``.

        For the orchestration processor's hold of work it does not accept (the versioning
        feature's REJECT path): a name or version outside the filters stays PENDING there, as
        durabletask's backend never dispatches it. Without filters everything is accepted.
        """
        if self.orchestration_versions is None:
            return True
        versions = self.orchestration_versions.get(name)
        if versions is None:
            return False
        return not versions or version in versions


def resolve_hosting(filters: Any, orchestrations: list[str], activities: list[str],
                    entities: list[str]) -> Hosting:
    """The names this worker hosts under ``filters`` (a ``WorkItemFilters``, ``AUTO`` or None).

    ``AUTO`` (the default): everything registered. ``None`` (filters cleared): every activity
    request of the hub (unregistered ones fail, as in durabletask without filters) and all
    registered orchestrators and entities; the orchestration processor always runs then.
    Explicit filters: exactly what they name (``WorkItemFilterError`` for a name not
    registered). A worker whose filters name no orchestrator does not run the orchestration
    processor, unless it hosts nothing at all (a bare worker keeps the hub's instances moving).
    """
    if filters is None:
        return Hosting(sorted(orchestrations), ["*"], sorted(entities), True, None)
    if filters is AUTO:
        chosen = WorkItemFilters.from_names(orchestrations, activities, entities)
    elif isinstance(filters, WorkItemFilters):
        filters.check_registered(orchestrations, activities, entities)
        chosen = filters
    else:
        raise WorkItemFilterError(f"work-item filters must be a WorkItemFilters, None or omitted, got {filters!r}")
    orch = sorted({f.name for f in chosen.orchestrations})
    acts = sorted({f.name for f in chosen.activities})
    ents = sorted({f.name for f in chosen.entities})
    versions = {f.name: list(f.versions) for f in chosen.orchestrations}
    return Hosting(orch, acts, ents, bool(orch) or not (acts or ents), versions)


class HubMembership:
    """This worker's registration on the hub, and its view of the other workers' registrations."""

    def __init__(self, *, hub: str, worker_id: str, bootstrap: str, kafka_config: Mapping[str, Any],
                 partitions: int, hosting: Hosting) -> None:
        self.hub = hub
        self.worker_id = worker_id
        self.bootstrap = bootstrap
        self.kafka_config = kafka_config
        self.partitions = partitions
        self.hosting = hosting
        self.topics = HubTopics(hub)
        self.view = RegistrationView(bootstrap, self.topics.workers, kafka_config=kafka_config)
        self.publisher: RegistrationPublisher | None = None

    def start_view(self, timeout: float = 30.0) -> None:
        """Read the registrations to their end, then check this worker's sets against them."""
        self.view.start()
        if not self.view.wait_caught_up(timeout):
            log.warning("hub %s: registrations not read to the end in %.0f s; checks use what was read",
                        self.hub, timeout)
        others = {w: r for w, r in self.view.live().items() if w != self.worker_id}
        if self.hosting.run_orchestrations:
            self._check("orchestrators", self.hosting.orchestrations,
                        {w: r.orchestrations for w, r in others.items()})
        self._check("entities", self.hosting.entities, {w: r.entities for w, r in others.items()})

    def _check(self, kind: str, mine: list[str], others: dict[str, list[str]]) -> None:
        problem = hub_set_mismatch(kind, mine, others)
        if problem is not None:
            raise WorkItemFilterError(f"hub {self.hub}: {problem}")
        for worker_id, theirs in sorted(others.items()):
            if theirs and mine and set(theirs) != set(mine):
                log.warning("hub %s: this worker's %s differ from live worker %s's (%s here, %s there): fine during "
                            "a rolling deploy; instances of a name only one side has fail on the other side's "
                            "partitions until every worker has it", self.hub, kind, worker_id,
                            ", ".join(sorted(set(mine) - set(theirs))) or "-",
                            ", ".join(sorted(set(theirs) - set(mine))) or "-")

    def ensure_activity_topics(self, names: list[str]) -> None:
        ensure_activity_topics(self.hub, names, self.partitions, self.bootstrap, kafka_config=self.kafka_config)

    def router(self) -> ActivityRouter:
        """The orchestration processor's router: topics created on first use, unhosted activities logged."""
        return ActivityRouter(self.hub, self.ensure_activity_topics, self.view)

    def publish(self) -> None:
        """Tell the hub what this worker hosts (after its parts are serving), then keep it fresh."""
        h = self.hosting
        if not self.view.available:
            log.warning("hub %s has no %s topic (create the hub's topics with `python -m durable_kafka topics create`):"
                        " this worker's activities are served but the hub cannot see who hosts them",
                        self.hub, self.topics.workers)
            return
        registration = WorkerRegistration(
            worker_id=self.worker_id, heartbeat_at=datetime.now(timezone.utc), heartbeat_ms=0,
            orchestrations=h.orchestrations if h.run_orchestrations else [],
            activities=[] if h.all_activities else h.activities, entities=h.entities,
            all_activities=h.all_activities)
        self.publisher = RegistrationPublisher(self.bootstrap, self.topics.workers, registration,
                                               kafka_config=self.kafka_config).start()

    def stop(self) -> None:
        if self.publisher is not None:
            self.publisher.stop()
            self.publisher = None
        self.view.stop()
