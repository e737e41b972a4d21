"""Orchestrators, activities and an entity shared by the AsyncClient, HTTP and CLI tests.

``make_worker(hub, state_dir)`` registers them all on a Worker for the test's hub.
"""

from __future__ import annotations

from typing import Any

from durable_kafka import Worker
from durable_kafka.entities import EntityContext


def hello(ctx: Any, name: str) -> str:
    return f"Hello {name}!"


def hello_sequence(ctx: Any, _: Any):
    """Three activities in a row: the classic HelloSequence."""
    results = []
    for city in ("Tokyo", "Seattle", "London"):
        results.append((yield ctx.call_activity(hello, input=city)))
    return results


def echo(ctx: Any, value: Any):
    return value
    yield  # a generator, like every orchestrator


def approval(ctx: Any, _: Any):
    """Waits for an 'Approval' event and returns its data (running until then)."""
    ctx.set_custom_status({"stage": "waiting"})
    data = yield ctx.wait_for_external_event("Approval")
    return {"approved": data}


def boom(ctx: Any, message: str):
    raise ValueError(message)
    yield  # a generator, like every orchestrator


def counter(ctx: EntityContext, value: Any) -> Any:
    state = ctx.get_state(int, 0)
    if ctx.operation == "add":
        ctx.set_state(state + value)
    elif ctx.operation == "delete":
        ctx.delete_state()
    return state


ORCHESTRATORS = [hello_sequence, echo, approval, boom]


def make_worker(hub: Any, state_dir: str) -> Worker:
    worker = Worker(hub.bootstrap, hub=hub.name, state_dir=state_dir, partitions=hub.partitions)
    for orchestrator in ORCHESTRATORS:
        worker.add_orchestrator(orchestrator)
    worker.add_activity(hello)
    worker.add_entity(counter)
    return worker
