"""Rewind on the real broker: a FAILED instance resumes as if its failed activities and
sub-orchestrations had not failed yet (Durable Task's semantics), recursively; rewinding an
instance that is not FAILED is a typed error."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import pytest

from durable_kafka import (
    AsyncClient,
    Client,
    InstanceNotFailedError,
    InstanceNotFoundError,
    OrchestrationStatus,
    RetryPolicy,
    Worker,
)

BROKEN: set[str] = set()  # activity inputs that fail while listed
RUNS: Counter[str] = Counter()  # activity executions by input
_lock = threading.Lock()


def step(ctx, name):
    with _lock:
        RUNS[name] += 1
    if name in BROKEN:
        raise RuntimeError(f"{name} is broken")
    return name.upper()


def two_steps(ctx, key):
    first = yield ctx.call_activity(step, input=f"{key}-first")
    second = yield ctx.call_activity(step, input=f"{key}-second")
    return [first, second]


def nested(ctx, depth):
    """depth 0: two activities; else one activity then a child one level down."""
    if depth == 0:
        return (yield from two_steps(ctx, ctx.instance_id))
    mine = yield ctx.call_activity(step, input=f"{ctx.instance_id}-own")
    below = yield ctx.call_sub_orchestrator(nested, input=depth - 1, instance_id=f"{ctx.instance_id}.c")
    return [mine, below]


def retried(ctx, key):
    policy = RetryPolicy(first_retry_interval=__import__("datetime").timedelta(milliseconds=200),
                         max_number_of_attempts=2)
    return (yield ctx.call_activity(step, input=key, retry_policy=policy))


def waits(ctx, _):
    return (yield ctx.wait_for_external_event("go"))


@pytest.fixture
def hub(module_hub):
    """Every test here shares the module's hub and worker (instance ids and activity inputs are each
    test's own)."""
    return module_hub


@pytest.fixture(scope="module")
def worker(module_hub, tmp_path_factory):
    hub = module_hub
    w = Worker(hub.bootstrap, hub=hub.name, state_dir=str(tmp_path_factory.mktemp("rewind") / "w"), worker_id="w",
               partitions=hub.partitions)
    for fn in (two_steps, nested, retried, waits):
        w.add_orchestrator(fn)
    w.add_activity(step)
    with w:
        yield w


def _events(c: Client, iid: str) -> list[str]:
    return [type(e).__name__ for e in c.get_orchestration_history(iid)]


def test_rewind_runs_the_failed_activity_again_and_not_the_one_that_succeeded(hub, worker):
    BROKEN.add("act-second")
    with Client(hub.bootstrap, hub=hub.name) as c:
        iid = c.schedule_new_orchestration(two_steps, input="act", instance_id="act")
        failed = c.wait_for_orchestration_completion(iid, timeout=60)
        assert failed.runtime_status == OrchestrationStatus.FAILED and "act-second is broken" in failed.failure_details.message
        BROKEN.discard("act-second")
        c.rewind_orchestration(iid, reason="fixed the activity")
        done = c.wait_for_orchestration_completion(iid, timeout=60)
        assert done.runtime_status == OrchestrationStatus.COMPLETED, done.failure_details
        assert done.get_output() == ["ACT-FIRST", "ACT-SECOND"] and done.failure_details is None
        assert RUNS["act-first"] == 1 and RUNS["act-second"] == 2  # only the failed task ran again
        history = c.get_orchestration_history(iid)
        rewound = [e for e in history if type(e).__name__ == "ExecutionRewound"]
        assert len(rewound) == 1 and rewound[0].reason == "fixed the activity" and len(rewound[0].reopened_task_ids) == 1
        names = [type(e).__name__ for e in history]
        # the failure stays recorded before the rewind (history is append-only), the result after it
        assert names.index("TaskFailed") < names.index("ExecutionRewound") < names.index("TaskCompleted", names.index("ExecutionRewound"))


def test_rewind_of_a_failed_sub_orchestration(hub, worker):
    BROKEN.add("sub.c-second")
    with Client(hub.bootstrap, hub=hub.name) as c:
        iid = c.schedule_new_orchestration(nested, input=1, instance_id="sub")
        assert c.wait_for_orchestration_completion(iid, timeout=60).runtime_status == OrchestrationStatus.FAILED
        assert c.get_orchestration_state("sub.c").runtime_status == OrchestrationStatus.FAILED
        BROKEN.discard("sub.c-second")
        c.rewind_orchestration(iid)
        done = c.wait_for_orchestration_completion(iid, timeout=60)
        assert done.get_output() == ["SUB-OWN", ["SUB.C-FIRST", "SUB.C-SECOND"]], done.failure_details
        assert c.get_orchestration_state("sub.c").runtime_status == OrchestrationStatus.COMPLETED
        assert "ExecutionRewound" in _events(c, "sub.c")  # the child was rewound, not started again
        assert _events(c, "sub.c").count("ExecutionStarted") == 1
        assert RUNS["sub-own"] == 1 and RUNS["sub.c-first"] == 1 and RUNS["sub.c-second"] == 2


def test_rewind_is_recursive_through_every_failed_level(hub, worker):
    BROKEN.add("deep.c.c-first")
    with Client(hub.bootstrap, hub=hub.name) as c:
        iid = c.schedule_new_orchestration(nested, input=2, instance_id="deep")
        assert c.wait_for_orchestration_completion(iid, timeout=60).runtime_status == OrchestrationStatus.FAILED
        BROKEN.clear()
        c.rewind_orchestration(iid, reason="all levels")
        done = c.wait_for_orchestration_completion(iid, timeout=60)
        assert done.get_output() == ["DEEP-OWN", ["DEEP.C-OWN", ["DEEP.C.C-FIRST", "DEEP.C.C-SECOND"]]]
        for level in ("deep", "deep.c", "deep.c.c"):
            assert _events(c, level).count("ExecutionRewound") == 1, level
        assert RUNS["deep-own"] == 1 and RUNS["deep.c-own"] == 1 and RUNS["deep.c.c-first"] == 2


def test_rewind_after_retries_runs_the_last_attempt_again(hub, worker):
    BROKEN.add("retry")
    with Client(hub.bootstrap, hub=hub.name) as c:
        iid = c.schedule_new_orchestration(retried, input="retry", instance_id="retry")
        assert c.wait_for_orchestration_completion(iid, timeout=60).runtime_status == OrchestrationStatus.FAILED
        assert RUNS["retry"] == 2  # both attempts of the policy
        BROKEN.discard("retry")
        c.rewind_orchestration(iid)
        assert c.wait_for_orchestration_completion(iid, timeout=60).get_output() == "RETRY"
        assert RUNS["retry"] == 3


def test_rewinding_an_instance_that_is_not_failed_is_a_typed_error(hub, worker):
    with Client(hub.bootstrap, hub=hub.name) as c:
        running = c.schedule_new_orchestration(waits, instance_id="not-failed")
        c.wait_for_orchestration_start(running, timeout=60)
        with pytest.raises(InstanceNotFailedError, match="running"):
            c.rewind_orchestration(running)
        c.raise_orchestration_event(running, "go", data=1)
        assert c.wait_for_orchestration_completion(running, timeout=60).get_output() == 1
        with pytest.raises(InstanceNotFailedError, match="completed"):
            c.rewind_orchestration(running)
        with pytest.raises(InstanceNotFoundError):
            c.rewind_orchestration("nobody-here")
        assert "ExecutionRewound" not in _events(c, running)

    async def with_async_client() -> None:
        async with AsyncClient(hub.bootstrap, hub=hub.name) as ac:
            with pytest.raises(InstanceNotFailedError):
                await ac.rewind_orchestration(running)
            BROKEN.add("async-second")
            iid = await ac.schedule_new_orchestration(two_steps, input="async", instance_id="async")
            assert (await ac.wait_for_orchestration_completion(iid, timeout=60)).runtime_status == OrchestrationStatus.FAILED
            BROKEN.discard("async-second")
            await ac.rewind_orchestration(iid, reason="async")
            assert (await ac.wait_for_orchestration_completion(iid, timeout=60)).get_output() == ["ASYNC-FIRST", "ASYNC-SECOND"]

    asyncio.run(with_async_client())


def test_rewind_twice_after_the_task_failed_again(hub, worker):
    BROKEN.add("twice-second")
    with Client(hub.bootstrap, hub=hub.name) as c:
        iid = c.schedule_new_orchestration(two_steps, input="twice", instance_id="twice")
        assert c.wait_for_orchestration_completion(iid, timeout=60).runtime_status == OrchestrationStatus.FAILED
        c.rewind_orchestration(iid, reason="first")  # still broken: fails again
        again = c.wait_for_orchestration_completion(iid, timeout=60)
        assert again.runtime_status == OrchestrationStatus.FAILED and RUNS["twice-second"] == 2
        BROKEN.discard("twice-second")
        c.rewind_orchestration(iid, reason="second")
        assert c.wait_for_orchestration_completion(iid, timeout=60).get_output() == ["TWICE-FIRST", "TWICE-SECOND"]
        assert RUNS["twice-first"] == 1 and RUNS["twice-second"] == 3
        assert _events(c, iid).count("ExecutionRewound") == 2
