"""Orchestrators, an entity and routes the trigger tests share (also run as a subprocess worker)."""

from __future__ import annotations

import os
from typing import Any

from durable_kafka import Worker, task, triggers


def process_order(ctx: task.OrchestrationContext, order: Any) -> Any:
    paid = yield ctx.wait_for_external_event("paid")
    return {"order": order, "paid": paid}


def echo(ctx: task.OrchestrationContext, value: Any) -> Any:
    return value
    yield  # a generator: orchestrators are


def counter(ctx: Any, input: Any) -> None:  # noqa: A002
    if ctx.operation == "add":
        ctx.set_state((ctx.get_state(int) or 0) + input)


def order_routes(orders: str, payments: str) -> list[triggers.Route]:
    return [
        triggers.Start(orders, process_order, instance_id="order-{value.order_id}", input="{value}"),
        triggers.Raise(payments, instance_id="order-{value.order_id}", event_name="paid", data="{value.amount}"),
    ]


def make_worker() -> Worker:
    """The crash test's worker: orders and payments topics from the environment."""
    worker = Worker(hub=os.environ["DK_TRIG_HUB"], state_dir=os.environ["DK_TRIG_STATE"], worker_id="trig-crash",
                    partitions=int(os.environ["DK_TRIG_PARTITIONS"]))
    worker.add_orchestrator(process_order)
    for route in order_routes(os.environ["DK_TRIG_ORDERS"], os.environ["DK_TRIG_PAYMENTS"]):
        worker.add_trigger(route)
    if os.environ.get("DK_TRIG_RESULTS"):  # results back out, in the transactions that end them
        worker.add_output(triggers.PublishCompletion(os.environ["DK_TRIG_RESULTS"]))
    return worker
