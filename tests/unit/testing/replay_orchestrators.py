"""The orchestrators whose histories are recorded in tests/data/histories/recorded/.

The histories were recorded on the real broker by ``record_histories.py`` (beside this file);
``test_replayer.py`` replays them against this code (deterministic: no error) and against
changed copies of it (each caught, at the step where it diverges).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from durable_kafka import RetryPolicy, task, when_all, when_any
from durable_kafka.entities import EntityInstanceId


def check_stock(ctx: task.ActivityContext, item: str) -> bool:
    return item != "unobtainium"


def charge(ctx: task.ActivityContext, order: dict) -> str:
    return f"charged {order['amount']}"


def ship(ctx: task.ActivityContext, order: dict) -> str:
    return f"shipped {order['item']}"


def notify(ctx: task.ActivityContext, text: str) -> None:
    return None


def order_flow(ctx: task.OrchestrationContext, order: dict) -> Any:
    """Activities, a sub-orchestration, a timer racing an external event."""
    in_stock = yield ctx.call_activity(check_stock, input=order["item"])
    if not in_stock:
        return {"status": "rejected"}
    receipt = yield ctx.call_activity(charge, input=order)
    approval = ctx.wait_for_external_event("approved")
    timeout = ctx.create_timer(timedelta(seconds=2))
    winner = yield when_any([approval, timeout])
    if winner is timeout:
        return {"status": "not approved", "receipt": receipt}
    timeout.cancel()
    shipment = yield ctx.call_sub_orchestrator(shipping, input=order)
    return {"status": "done", "receipt": receipt, "shipment": shipment}


def shipping(ctx: task.OrchestrationContext, order: dict) -> Any:
    labels = yield when_all([ctx.call_activity(ship, input=order), ctx.call_activity(notify, input="packed")])
    return labels[0]


def counter(ctx: task.OrchestrationContext, total: int) -> Any:
    """continue_as_new: each execution waits for one event."""
    n = yield ctx.wait_for_external_event("add")
    if n is None:
        return total
    ctx.continue_as_new(total + n)


attempts: dict[str, int] = {}


def flaky(ctx: task.ActivityContext, key: str) -> str:
    attempts[key] = attempts.get(key, 0) + 1
    if attempts[key] < 3:
        raise RuntimeError(f"attempt {attempts[key]} failed")
    return f"ok after {attempts[key]}"


def retries(ctx: task.OrchestrationContext, key: str) -> Any:
    policy = RetryPolicy(first_retry_interval=timedelta(milliseconds=200), max_number_of_attempts=5)
    return (yield ctx.call_activity(flaky, input=key, retry_policy=policy))


def counter_entity(ctx: Any, value: Any) -> Any:
    if ctx.operation == "add":
        ctx.set_state(ctx.get_state(int, 0) + value)
    return ctx.get_state(int, 0)


def entity_user(ctx: task.OrchestrationContext, n: int) -> Any:
    """Signals, a call and a lock on an entity."""
    target = EntityInstanceId("counter_entity", "replay")
    ctx.signal_entity(target, "add", n)
    with (yield ctx.lock_entities([target])):
        value = yield ctx.call_entity(target, "get")
    return value


def waiter(ctx: task.OrchestrationContext, _: Any) -> Any:
    """Still running when recorded: its history ends mid-way."""
    first = yield ctx.call_activity(notify, input="started")
    second = yield ctx.wait_for_external_event("never")
    return [first, second]


ORCHESTRATORS = [order_flow, shipping, counter, retries, entity_user, waiter]
ACTIVITIES = [check_stock, charge, ship, notify, flaky]
ENTITIES = [counter_entity]
