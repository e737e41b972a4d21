"""Workers of three "services" sharing one hub, for the routing tests (run as subprocesses).

``DK_ROUTING_ROLE`` picks what the process hosts: ``billing`` (activities ``charge`` and
``count_me``) or ``shipping`` (activity ``ship``); the orchestrators run in the test process.
Every execution appends ``role worker activity key`` to ``DK_ROUTING_LOG`` (one short
``O_APPEND`` write, so lines of concurrent processes do not mix): the tests count executions
per request from it.
"""

from __future__ import annotations

import os
import time

from durable_kafka import Worker, task


def _record(name: str, key: str) -> None:
    line = f"{os.environ['DK_ROUTING_ROLE']}\t{os.environ['DK_ROUTING_ID']}\t{name}\t{key}\n"
    fd = os.open(os.environ["DK_ROUTING_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def charge(ctx, order):
    _record("charge", ctx.orchestration_id)
    return {"charged": order["amount"]}


def ship(ctx, order):
    _record("ship", ctx.orchestration_id)
    return f"shipped {order['item']}"


def count_me(ctx, n):
    _record("count_me", f"{ctx.orchestration_id}/{n}")
    time.sleep(0.1)  # keeps a load running long enough to scale under it
    return n


# ---------------------------------------------------------------- orchestrators (test process)

def order_flow(ctx, order):
    paid = yield ctx.call_activity("charge", input=order)
    sent = yield ctx.call_activity("ship", input=order)
    return {"paid": paid["charged"], "sent": sent}


def fan(ctx, n):
    results = yield task.when_all([ctx.call_activity("count_me", input=i) for i in range(n)])
    return sum(results)


ROLES = {"billing": (charge, count_me), "shipping": (ship,)}


def make_worker() -> Worker:
    role = os.environ["DK_ROUTING_ROLE"]
    w = Worker(os.environ["DURABLE_KAFKA_BOOTSTRAP"], hub=os.environ["DK_ROUTING_HUB"],
               state_dir=os.environ["DK_ROUTING_STATE"], worker_id=os.environ["DK_ROUTING_ID"],
               partitions=int(os.environ["DK_ROUTING_PARTITIONS"]),
               max_activity_workers=int(os.environ.get("DK_ROUTING_THREADS", "4")),
               static_membership=False)  # a stopped worker's partitions move at once
    for fn in ROLES[role]:
        w.add_activity(fn)
    return w
