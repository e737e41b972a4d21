"""Orchestrations that give the dashboard something to show: fan-out, a timer, a child, an event
wait, a failure with a stack trace, and a counter entity. ``make_worker(hub, state_dir)``."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from durable_kafka import Worker, task
from durable_kafka.entities import EntityContext


def reserve(ctx: Any, item: dict[str, Any]) -> str:
    time.sleep(item["seconds"])  # visible lengths on the timeline
    return f"reserved {item['sku']}"


def ship(ctx: Any, order: Any):
    label = yield ctx.call_activity(reserve, input={"sku": "label", "seconds": 0.1})
    return {"shipped": order, "label": label}


def process_order(ctx: Any, order: dict[str, Any]):
    """Fan out, wait a second, run a child, then wait for an approval event."""
    ctx.set_custom_status({"stage": "reserving"})
    items = [{"sku": sku, "seconds": 0.2 * (i + 1)} for i, sku in enumerate(order["skus"])]
    reserved = yield task.when_all([ctx.call_activity(reserve, input=item) for item in items])
    yield ctx.create_timer(ctx.current_utc_datetime + timedelta(seconds=1))
    shipped = yield ctx.call_sub_orchestrator(ship, input=order["id"], instance_id=f"{ctx.instance_id}:ship")
    ctx.set_custom_status({"stage": "awaiting approval"})
    approval = yield ctx.wait_for_external_event("Approval")
    ctx.set_custom_status({"stage": "done"})
    return {"reserved": reserved, "shipped": shipped, "approval": approval}


def echo(ctx: Any, value: Any):
    return value
    yield  # a generator, like every orchestrator


def check_payment(ctx: Any, order: Any):
    yield ctx.call_activity(reserve, input={"sku": "card", "seconds": 0.05})
    raise ValueError(f"payment declined for order {order}")


def counter(ctx: EntityContext, value: Any) -> Any:
    state = ctx.get_state(int, 0)
    if ctx.operation == "add":
        ctx.set_state(state + value)
    return state


def make_worker(hub: Any, state_dir: str) -> Worker:
    worker = Worker(hub.bootstrap, hub=hub.name, state_dir=state_dir, partitions=hub.partitions)
    for orchestrator in (process_order, ship, echo, check_payment):
        worker.add_orchestrator(orchestrator)
    worker.add_activity(reserve)
    worker.add_entity(counter)
    return worker
