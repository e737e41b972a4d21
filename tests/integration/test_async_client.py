"""AsyncClient's whole surface on the real broker, with a real Worker: the same behaviour as Client."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from durable_kafka import AsyncClient, OrchestrationQuery, OrchestrationStatus
from durable_kafka._client_entities import EntityQuery
from durable_kafka.errors import (
    ClientError,
    InstanceAlreadyExistsError,
    InstanceNotFoundError,
    InvalidArgumentError,
    InvalidInstanceIdError,
    TimeoutError,
)
from durable_kafka.streams import events as ev

from client_app import approval, boom, echo, hello_sequence, make_worker


@pytest.fixture
def worker(hub, tmp_path):
    with make_worker(hub, str(tmp_path / "state")) as w:
        yield w


def run(hub, body: Callable[[AsyncClient], Awaitable[Any]]) -> Any:
    """Run ``body(client)`` on a fresh event loop with a fresh AsyncClient of the hub."""
    async def main() -> Any:
        async with AsyncClient(hub.bootstrap, hub=hub.name) as client:
            return await body(client)
    return asyncio.run(main())


def test_start_wait_read_history_and_errors(hub, worker):
    async def body(c: AsyncClient) -> None:
        iid = await c.schedule_new_orchestration(hello_sequence, instance_id="seq-1")
        started = await c.wait_for_orchestration_start(iid, timeout=60)
        assert started.runtime_status != OrchestrationStatus.PENDING
        done = await c.wait_for_orchestration_completion(iid, timeout=60)
        assert done.runtime_status == OrchestrationStatus.COMPLETED
        assert done.get_output() == ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]
        state = await c.get_orchestration_state(iid, fetch_payloads=False)
        assert state.name == "hello_sequence" and state.serialized_output is None
        history = await c.get_orchestration_history(iid)
        kinds = [type(e) for e in history]
        assert ev.ExecutionStarted in kinds and kinds.index(ev.ExecutionStarted) < kinds.index(ev.ExecutionCompleted)
        assert sum(isinstance(e, ev.TaskCompleted) for e in history) == 3

        assert await c.get_orchestration_state("nobody") is None
        with pytest.raises(InstanceNotFoundError):
            await c.get_orchestration_history("nobody")
        with pytest.raises(InvalidInstanceIdError):
            await c.get_orchestration_state("")
        with pytest.raises(InvalidArgumentError):
            await c.schedule_new_orchestration(echo, input=object())

        waiting = await c.schedule_new_orchestration(approval, instance_id="wait-1")
        with pytest.raises(InstanceAlreadyExistsError):
            await c.schedule_new_orchestration(approval, instance_id="wait-1")
        with pytest.raises(TimeoutError):
            await c.wait_for_orchestration_completion(waiting, timeout=0.5)
        still = await c.get_state_or_wait(waiting, 0.5)  # the long poll's primitive: no error, the state
        assert still.runtime_status in (OrchestrationStatus.PENDING, OrchestrationStatus.RUNNING)
        assert await c.get_state_or_wait("nobody", 30) is None
        assert (await c.get_state_or_wait(iid, 30)).get_output()[0] == "Hello Tokyo!"

        failed = await c.wait_for_orchestration_completion(
            await c.schedule_new_orchestration(boom, input="no way"), timeout=60)
        assert failed.runtime_status == OrchestrationStatus.FAILED
        assert "no way" in failed.failure_details.message

    run(hub, body)


def test_events_suspend_resume_terminate_restart_purge(hub, worker):
    async def body(c: AsyncClient) -> None:
        iid = await c.schedule_new_orchestration(approval)
        await c.wait_for_orchestration_start(iid)
        await c.suspend_orchestration(iid, reason="hold")
        await c._until(lambda: c.sync_client._status.get(iid).runtime_status == "SUSPENDED", 30)
        await c.raise_orchestration_event(iid, "Approval", data="yes")
        await c.resume_orchestration(iid, reason="go")
        done = await c.wait_for_orchestration_completion(iid)
        assert done.get_output() == {"approved": "yes"}

        again = await c.restart_orchestration(iid)
        assert again == iid
        await c.terminate_orchestration(iid, output="stopped")
        terminated = await c.wait_for_orchestration_completion(iid)
        assert terminated.runtime_status == OrchestrationStatus.TERMINATED
        new_id = await c.restart_orchestration(iid, restart_with_new_instance_id=True)
        assert new_id != iid
        await c.raise_orchestration_event(new_id, "Approval", data=1)
        assert (await c.wait_for_orchestration_completion(new_id)).get_output() == {"approved": 1}

        assert (await c.purge_orchestration(iid)).deleted_instance_count == 1
        assert await c.get_orchestration_state(iid) is None
        assert (await c.purge_orchestration(iid)).deleted_instance_count == 0
        with pytest.raises(InstanceNotFoundError):
            await c.restart_orchestration(iid)
        purged = await c.purge_orchestrations_by(runtime_status=[OrchestrationStatus.COMPLETED])
        assert purged.deleted_instance_count == 1
        assert await c.get_orchestration_state(new_id) is None

    run(hub, body)


def test_concurrent_starts_and_waits_use_no_thread_per_call(hub, worker):
    async def body(c: AsyncClient) -> None:
        await c.get_orchestration_state("warm-up")  # readers and poller started
        threads_before = threading.active_count()
        ids = await asyncio.gather(*(c.schedule_new_orchestration(echo, input=i, instance_id=f"echo-{i:03}")
                                     for i in range(60)))
        waiting = [asyncio.ensure_future(c.wait_for_orchestration_completion(i, timeout=120)) for i in ids]
        await asyncio.sleep(0)
        threads_while_waiting = threading.active_count()
        states = await asyncio.gather(*waiting)
        assert [s.get_output() for s in states] == list(range(60))
        assert threads_while_waiting <= threads_before + 1  # 60 waits in flight, no thread each

        page, token = await c.query_orchestration_states(OrchestrationQuery(instance_id_prefix="echo-",
                                                                            max_instance_count=25))
        assert len(page) == 25 and token is not None
        everything = await c.get_all_orchestration_states(OrchestrationQuery(instance_id_prefix="echo-",
                                                                             max_instance_count=7))
        assert sorted(s.instance_id for s in everything) == sorted(ids)

        queued = await c.schedule_new_orchestration(echo, input="bulk", wait_for_acceptance=False)
        await c.flush()
        assert (await c.wait_for_orchestration_completion(queued)).get_output() == "bulk"

    run(hub, body)


def test_entities(hub, worker):
    async def body(c: AsyncClient) -> None:
        assert await c.get_entity("@counter@none") is None
        for k in range(3):
            await c.signal_entity(f"@counter@k{k}", "add", k + 1)
        await c.signal_entity(entity_id="@counter@gone", operation="add", input=5)
        with pytest.raises(InvalidArgumentError):
            await c.signal_entity("@counter@k0", "")

        async def entity_state(eid: str) -> Any:
            meta = await c.get_entity(eid)
            return None if meta is None else meta.get_state(int)

        for k in range(3):
            while await entity_state(f"@counter@k{k}") != k + 1:
                await asyncio.sleep(0.1)
        while await entity_state("@counter@gone") != 5:
            await asyncio.sleep(0.1)
        await c.signal_entity("@counter@gone", "delete")
        while await c.get_entity("@counter@gone") is not None:
            await asyncio.sleep(0.1)

        page, token = await c.query_entities(EntityQuery(instance_id_starts_with="@counter@k", page_size=2))
        assert [str(m.id) for m in page] == ["@counter@k0", "@counter@k1"] and token == "@counter@k1"
        everything = await c.get_all_entities(EntityQuery(instance_id_starts_with="counter@", page_size=1))
        assert [str(m.id) for m in everything] == ["@counter@k0", "@counter@k1", "@counter@k2"]
        cleaned = await c.clean_entity_storage()
        assert (cleaned.empty_entities_removed, cleaned.orphaned_locks_released) == (1, 0)

    run(hub, body)


def test_closed_client_refuses_calls(hub):
    async def main() -> None:
        client = AsyncClient(hub.bootstrap, hub=hub.name)
        assert await client.get_orchestration_state("x") is None
        await client.close()
        with pytest.raises(ClientError):
            await client.get_orchestration_state("x")
        await client.close()  # idempotent

    asyncio.run(main())
