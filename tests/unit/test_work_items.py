"""Work-item filters (durabletask names) and what a worker hosts under them."""

from __future__ import annotations

import pytest

from durable_kafka import (
    ActivityWorkItemFilter,
    EntityWorkItemFilter,
    OrchestrationWorkItemFilter,
    Worker,
    WorkItemFilters,
)
from durable_kafka._worker_routing import AUTO, resolve_hosting
from durable_kafka.errors import ConfigurationError, InvalidEntityIdError, WorkItemFilterError

ORCH, ACTS, ENTS = ["order_flow"], ["charge", "ship"], ["counter"]


def test_filters_have_durabletask_fields_and_defaults() -> None:
    f = WorkItemFilters()
    assert (f.orchestrations, f.activities, f.entities) == ([], [], [])
    assert OrchestrationWorkItemFilter("o").versions == [] and ActivityWorkItemFilter("a", ["1.0"]).versions == ["1.0"]
    assert EntityWorkItemFilter("Counter").name == "counter"  # entity names are lower-case
    with pytest.raises(WorkItemFilterError):
        ActivityWorkItemFilter("")
    with pytest.raises(WorkItemFilterError):
        WorkItemFilters(activities=["charge"])  # type: ignore[list-item]
    with pytest.raises(InvalidEntityIdError):  # validated as entity names are (a ValueError, as in durabletask)
        EntityWorkItemFilter("a@b")
    assert issubclass(WorkItemFilterError, ConfigurationError)


def test_by_default_a_worker_hosts_everything_it_registered() -> None:
    h = resolve_hosting(AUTO, ORCH, ACTS, ENTS)
    assert (h.orchestrations, h.activities, h.entities, h.run_orchestrations) == (ORCH, ACTS, ENTS, True)
    assert not h.all_activities


def test_explicit_filters_choose_a_subset_and_name_only_what_is_registered() -> None:
    h = resolve_hosting(WorkItemFilters(activities=[ActivityWorkItemFilter("ship")]), ORCH, ACTS, ENTS)
    assert (h.orchestrations, h.activities, h.entities, h.run_orchestrations) == ([], ["ship"], [], False)
    with pytest.raises(WorkItemFilterError, match="activity 'refund'.*registered: charge, ship"):
        resolve_hosting(WorkItemFilters(activities=[ActivityWorkItemFilter("refund")]), ORCH, ACTS, ENTS)
    with pytest.raises(WorkItemFilterError, match="orchestrator 'other'"):
        resolve_hosting(WorkItemFilters([OrchestrationWorkItemFilter("other")]), ORCH, ACTS, ENTS)


def test_cleared_filters_take_every_activity_and_run_the_orchestrations() -> None:
    h = resolve_hosting(None, [], ["charge"], [])
    assert h.all_activities and h.run_orchestrations


def test_an_activity_only_service_does_not_run_orchestrations_but_a_bare_worker_does() -> None:
    assert not resolve_hosting(AUTO, [], ACTS, []).run_orchestrations
    assert not resolve_hosting(AUTO, [], [], ENTS).run_orchestrations
    assert resolve_hosting(AUTO, [], [], []).run_orchestrations


def test_use_work_item_filters_checks_its_argument_and_is_before_start() -> None:
    w = Worker("127.0.0.1:1", hub="h")
    w.use_work_item_filters()
    w.use_work_item_filters(None)
    w.use_work_item_filters(WorkItemFilters())
    with pytest.raises(WorkItemFilterError):
        w.use_work_item_filters(["charge"])


def test_accepts_orchestration_follows_names_and_versions_of_the_filters() -> None:
    h = resolve_hosting(WorkItemFilters([OrchestrationWorkItemFilter("order_flow", ["3.0"])]), ORCH, ACTS, ENTS)
    assert h.accepts_orchestration("order_flow", "3.0")
    assert not h.accepts_orchestration("order_flow", "2.0") and not h.accepts_orchestration("order_flow")
    assert not h.accepts_orchestration("other", "3.0")
    auto = resolve_hosting(AUTO, ORCH, ACTS, ENTS)
    assert auto.accepts_orchestration("order_flow", "any") and not auto.accepts_orchestration("other")
    assert resolve_hosting(None, ORCH, ACTS, ENTS).accepts_orchestration("anything")
