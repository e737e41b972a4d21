"""Versioning on the real broker: each strategy, the sub-orchestration default version, and rolling
deploys in both directions (old->new, new->old) with instances of both versions in flight on one
partition, where a worker that rejects a version leaves those instances untouched (parked in its
state, nothing skipped) until a worker that accepts them owns the partition."""

from __future__ import annotations

import pytest

from durable_kafka import (
    Client,
    OrchestrationStatus,
    VersionFailureStrategy,
    VersioningOptions,
    VersionMatchStrategy,
    Worker,
)

STRICT, OLDER, NONE = VersionMatchStrategy.STRICT, VersionMatchStrategy.CURRENT_OR_OLDER, VersionMatchStrategy.NONE
REJECT, FAIL = VersionFailureStrategy.REJECT, VersionFailureStrategy.FAIL


def echo(ctx, value):
    return value


def gated(ctx, _):
    """Waits for "go", runs an activity, reports the version it ran as."""
    got = yield ctx.wait_for_external_event("go")
    echoed = yield ctx.call_activity(echo, input=got)
    return {"version": ctx.version, "got": echoed}


def child(ctx, _):
    return ctx.version


def parent(ctx, _):
    default = yield ctx.call_sub_orchestrator(child, instance_id=f"{ctx.instance_id}-a")
    explicit = yield ctx.call_sub_orchestrator(child, instance_id=f"{ctx.instance_id}-b", version="3.0")
    return {"self": ctx.version, "default": default, "explicit": explicit}


def again(ctx, n):
    if n == 0:
        ctx.continue_as_new(1)
        return None
    return ctx.version


def _worker(hub, tmp_path, name: str, options: VersioningOptions | None) -> Worker:
    w = Worker(hub.bootstrap, hub=hub.name, state_dir=str(tmp_path / name), worker_id=name,
               partitions=hub.partitions, static_membership=False)
    for fn in (gated, child, parent, again):
        w.add_orchestrator(fn)
    w.add_activity(echo)
    w.use_versioning(options)
    return w


def _status(c: Client, iid: str) -> OrchestrationStatus:
    state = c.get_orchestration_state(iid)
    assert state is not None
    return state.runtime_status


@pytest.mark.hub_partitions(1)
@pytest.mark.parametrize(("match", "runs"), [(NONE, {"0.9", "1.0", "1.10"}), (STRICT, {"1.0"}),
                                             (OLDER, {"0.9", "1.0"})])
def test_fail_strategy_ends_the_versions_a_worker_does_not_accept(hub, tmp_path, match, runs):
    with _worker(hub, tmp_path, "w", VersioningOptions(version="1.0", match_strategy=match, failure_strategy=FAIL)), \
            Client(hub.bootstrap, hub=hub.name) as c:
        ids = {v: c.schedule_new_orchestration(gated, version=v) for v in ("0.9", "1.0", "1.10")}
        for v, iid in ids.items():
            c.raise_orchestration_event(iid, "go", data=v)
        for v, iid in ids.items():
            state = c.wait_for_orchestration_completion(iid, timeout=60)
            assert state.version == v
            if v in runs:
                assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
                assert state.get_output() == {"version": v, "got": v}
            else:
                assert state.runtime_status == OrchestrationStatus.FAILED
                assert state.failure_details.error_type == "VersionMismatch"
                assert f"'{v}'" in state.failure_details.message and "'1.0'" in state.failure_details.message


@pytest.mark.hub_partitions(1)
def test_sub_orchestrations_get_the_default_version_and_continue_as_new_keeps_it(hub, tmp_path):
    options = VersioningOptions(version="2.0", default_version="2.0", match_strategy=NONE)
    with _worker(hub, tmp_path, "w", options), Client(hub.bootstrap, hub=hub.name, default_version="1.5") as c:
        iid = c.schedule_new_orchestration(parent, version="1.0")
        state = c.wait_for_orchestration_completion(iid, timeout=60)
        assert state.get_output() == {"self": "1.0", "default": "2.0", "explicit": "3.0"}
        assert c.get_orchestration_state(f"{iid}-a").version == "2.0"
        assert c.get_orchestration_state(f"{iid}-b").version == "3.0"
        looped = c.schedule_new_orchestration(again, input=0)  # no version given: the client's default
        done = c.wait_for_orchestration_completion(looped, timeout=60)
        assert done.get_output() == "1.5" and done.version == "1.5"


@pytest.mark.hub_partitions(1)
def test_rolling_deploys_both_ways_lose_nothing_with_both_versions_in_flight(hub, tmp_path):
    """One partition, so every instance of either version lives on the partition handed over."""
    v1 = VersioningOptions(version="1.0", match_strategy=STRICT, failure_strategy=REJECT)
    v2 = VersioningOptions(version="2.0", match_strategy=STRICT, failure_strategy=REJECT)
    with Client(hub.bootstrap, hub=hub.name) as c:
        # old code runs: a v1 instance runs, a v2 one is accepted but left PENDING (parked)
        with _worker(hub, tmp_path, "old-1", v1):
            a1 = c.schedule_new_orchestration(gated, version="1.0")
            b1 = c.schedule_new_orchestration(gated, version="2.0")
            c.wait_for_orchestration_start(a1, timeout=60)
            c.raise_orchestration_event(b1, "go", data="b1")  # parked with the start
            probe = c.schedule_new_orchestration(gated, version="1.0")  # after b1's event on the partition
            c.raise_orchestration_event(probe, "go", data="probe")
            assert c.wait_for_orchestration_completion(probe, timeout=60).get_output()["got"] == "probe"
            assert _status(c, a1) == OrchestrationStatus.RUNNING
            assert _status(c, b1) == OrchestrationStatus.PENDING  # untouched, not failed

        # old -> new: the new worker takes the partition; b1 runs with no new record for it
        with _worker(hub, tmp_path, "new-1", v2):
            out = c.wait_for_orchestration_completion(b1, timeout=60)
            assert out.runtime_status == OrchestrationStatus.COMPLETED
            assert out.get_output() == {"version": "2.0", "got": "b1"}
            c.raise_orchestration_event(a1, "go", data="a1")  # a v1 instance in flight: parked
            a2 = c.schedule_new_orchestration(gated, version="1.0")  # a new v1 start: parked
            b2 = c.schedule_new_orchestration(gated, version="2.0")
            c.wait_for_orchestration_start(b2, timeout=60)
            probe = c.schedule_new_orchestration(gated, version="2.0")
            c.raise_orchestration_event(probe, "go", data="probe")
            assert c.wait_for_orchestration_completion(probe, timeout=60).get_output()["got"] == "probe"
            assert _status(c, a1) == OrchestrationStatus.RUNNING and _status(c, a2) == OrchestrationStatus.PENDING

        # new -> old (a rollback): the old worker runs the parked v1 work; b2 (v2) waits in turn
        with _worker(hub, tmp_path, "old-2", v1):
            assert c.wait_for_orchestration_completion(a1, timeout=60).get_output() == {"version": "1.0", "got": "a1"}
            c.wait_for_orchestration_start(a2, timeout=60)
            c.raise_orchestration_event(b2, "go", data="b2")
            c.raise_orchestration_event(a2, "go", data="a2")
            assert c.wait_for_orchestration_completion(a2, timeout=60).get_output() == {"version": "1.0", "got": "a2"}
            assert _status(c, b2) == OrchestrationStatus.RUNNING  # its event arrived first: parked

        # and forward again: nothing was lost or run twice
        with _worker(hub, tmp_path, "new-2", v2):
            assert c.wait_for_orchestration_completion(b2, timeout=60).get_output() == {"version": "2.0", "got": "b2"}
        for iid in (a1, a2, b1, b2):
            names = [type(e).__name__ for e in c.get_orchestration_history(iid)]
            assert names.count("ExecutionStarted") == 1 and names.count("TaskCompleted") == 1, (iid, names)
            assert names.count("EventRaised") == 1 and names.count("ExecutionCompleted") == 1, (iid, names)
