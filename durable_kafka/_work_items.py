"""Work-item filters: which orchestrations, activities and entities a worker takes (durabletask names).

The classes mirror ``durabletask.worker``'s, field for field. What they mean on a Kafka hub
(docs/ROUTING.md): the activity filters choose the request topics the worker reads, so each
request reaches only the workers that host its activity; the orchestration and entity filters
say whether the worker runs those processors at all, and are checked against the other live
workers of the hub, because orchestrations and entities are spread by partition, not routed by
name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from durable_kafka.entities import entity_name
from durable_kafka.errors import WorkItemFilterError

__all__ = [
    "ActivityWorkItemFilter",
    "EntityWorkItemFilter",
    "OrchestrationWorkItemFilter",
    "WorkItemFilters",
]


def _check_name(kind: str, name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise WorkItemFilterError(f"a {kind} work-item filter needs a non-empty name, got {name!r}")


def _check_versions(kind: str, name: str, versions: Any) -> None:
    if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
        raise WorkItemFilterError(f"the versions of {kind} filter {name!r} must be a list of str, got {versions!r}")


@dataclass(frozen=True)
class OrchestrationWorkItemFilter:
    """Take work of orchestrator ``name`` (``versions``: the orchestration versions taken, all if empty)."""

    name: str
    versions: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_name("orchestration", self.name)
        _check_versions("orchestration", self.name, self.versions)


@dataclass(frozen=True)
class ActivityWorkItemFilter:
    """Take the requests of activity ``name``.

    ``versions`` is carried as durabletask carries it; activity requests carry no version on
    this hub, so a worker that hosts the name takes every request of it.
    """

    name: str
    versions: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_name("activity", self.name)
        _check_versions("activity", self.name, self.versions)


@dataclass(frozen=True)
class EntityWorkItemFilter:
    """Take operations of entity ``name`` (lower-cased, as entity names are)."""

    name: str

    def __post_init__(self) -> None:
        _check_name("entity", self.name)
        object.__setattr__(self, "name", entity_name(None, self.name))


@dataclass(frozen=True)
class WorkItemFilters:
    """The work a worker takes, by kind. An empty list: none of that kind."""

    orchestrations: list[OrchestrationWorkItemFilter] = field(default_factory=list)
    activities: list[ActivityWorkItemFilter] = field(default_factory=list)
    entities: list[EntityWorkItemFilter] = field(default_factory=list)

    def __post_init__(self) -> None:
        for kind, items, cls in (("orchestrations", self.orchestrations, OrchestrationWorkItemFilter),
                                 ("activities", self.activities, ActivityWorkItemFilter),
                                 ("entities", self.entities, EntityWorkItemFilter)):
            if not isinstance(items, list) or not all(isinstance(i, cls) for i in items):
                raise WorkItemFilterError(f"WorkItemFilters.{kind} must be a list of {cls.__name__}, got {items!r}")

    @classmethod
    def from_names(cls, orchestrations: list[str], activities: list[str], entities: list[str],
                   versions: list[str] | None = None) -> WorkItemFilters:
        """Filters for exactly these registered names (what a worker generates by default)."""
        v = list(versions or [])
        return cls([OrchestrationWorkItemFilter(n, list(v)) for n in orchestrations],
                   [ActivityWorkItemFilter(n, list(v)) for n in activities],
                   [EntityWorkItemFilter(n) for n in entities])

    def check_registered(self, orchestrations: list[str], activities: list[str], entities: list[str]) -> None:
        """Raise ``WorkItemFilterError`` if a filter names something this worker cannot run."""
        for kind, wanted, have in (("orchestrator", [f.name for f in self.orchestrations], orchestrations),
                                   ("activity", [f.name for f in self.activities], activities),
                                   ("entity", [f.name for f in self.entities], entities)):
            missing = sorted(set(wanted) - set(have))
            if missing:
                raise WorkItemFilterError(
                    f"the work-item filters name {kind} {', '.join(map(repr, missing))}, which this worker did not "
                    f"register (registered: {', '.join(sorted(have)) or 'none'}); a worker can only take work it "
                    f"can run")
