"""durable_kafka.faust on the real broker: a redelivered faust event does not double an effect."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

from durable_kafka import Client, OrchestrationStatus, Worker
from durable_kafka.faust import EventPosition, FaustEngine

from trigger_app import counter, process_order

WAIT = 60


def test_redelivered_events_start_raise_and_signal_once(hub, tmp_path):
    w = Worker(hub.bootstrap, hub.name, state_dir=str(tmp_path / "state"), partitions=hub.partitions)
    w.add_orchestrator(process_order)
    w.add_entity(counter)
    placed = SimpleNamespace(message=SimpleNamespace(topic="shop.orders", partition=1, offset=10))
    paid_first = EventPosition("shop.payments", 0, 5)
    paid_other = EventPosition("shop.payments", 0, 6)

    async def drive() -> str:
        engine = FaustEngine(hub.bootstrap, hub.name)
        try:
            for _ in range(3):  # faust redelivers: the same events, again and again
                iid = await engine.start(placed, process_order, instance_id="order-1", input={"n": 1})
                await engine.signal(placed, "@counter@stock", "add", input=1)
            await engine.signal(paid_other, "@counter@stock", "add", input=10)
            for _ in range(3):
                await engine.raise_event(paid_first, iid, "paid", data=1)
            return iid
        finally:
            await engine.close()

    with w, Client(hub.bootstrap, hub=hub.name) as c:
        iid = asyncio.run(drive())
        state = c.wait_for_orchestration_completion(iid, timeout=WAIT, fetch_payloads=True)
        assert state is not None and state.runtime_status == OrchestrationStatus.COMPLETED
        out: Any = json.loads(state.serialized_output)
        assert out == {"order": {"n": 1}, "paid": 1}
        entity = None
        for _ in range(WAIT * 10):
            entity = c.get_entity("@counter@stock")
            if entity is not None and entity.get_state(int) == 11:
                break
            asyncio.run(asyncio.sleep(0.1))
        assert entity is not None and entity.get_state(int) == 11  # 1 once (not 3), plus 10
