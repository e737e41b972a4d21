"""A worker for trying the HTTP API: ``python -m durable_kafka worker examples.http_hello:worker``.

Its hub is ``$HUB`` (default ``hello``); serve the same hub with ``durable-kafka serve --hub hello``
and drive it with curl (README, docs/HTTP.md).
"""

from __future__ import annotations

import os

from durable_kafka import ActivityContext, OrchestrationContext, Worker


def say_hello(ctx: ActivityContext, name: str) -> str:
    return f"Hello {name}!"


def hello_cities(ctx: OrchestrationContext, cities: list[str] | None):
    """Greets each city in turn (Durable Functions' HelloSequence), waiting on each activity."""
    greetings = []
    for city in cities or ["Tokyo", "Seattle", "London"]:
        ctx.set_custom_status({"greeting": city})
        greetings.append((yield ctx.call_activity(say_hello, input=city)))
    return greetings


def approval(ctx: OrchestrationContext, _: object):
    """Runs until an 'Approval' event arrives, then returns its data."""
    decision = yield ctx.wait_for_external_event("Approval")
    return {"approved": decision}


worker = Worker(hub=os.environ.get("HUB", "hello"))
worker.add_orchestrator(hello_cities)
worker.add_orchestrator(approval)
worker.add_activity(say_hello)
