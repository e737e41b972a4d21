"""The order service, a faust-streaming app: it publishes facts and folds the engine's results.

Run as its own process: ``python -m examples.orders.service worker -l warn --web-port P``
with ``DURABLE_KAFKA_BOOTSTRAP``, ``ORDERS_HUB`` (topic prefix) and ``ORDERS_DATADIR`` set.

* ``POST /orders/`` ``{"order_id", "sku", "qty"}`` publishes an ``OrderPlaced`` record and
  ``POST /payments/`` ``{"order_id", "amount"}`` a ``PaymentReceived`` record, keyed by order id.
  The service knows nothing of orchestrations: the engine's trigger routes read these topics.
* The ``fold`` agent reads the completion topic (one record per ended order, key = instance id)
  into the ``order-results`` Table; ``GET /orders/`` serves that table as JSON.

faust's sharp edges handled here: bytes keys so
the table and the topic agree on keys; one partition and ``concurrency=1`` so order is kept; the
fold is idempotent (it sets the order's result, so a redelivered record writes the same value);
an exception is caught per event instead of letting faust ack and skip silently. The engine's
processors write lz4-compressed batches, so aiokafka needs its lz4 codec (the ``faust`` extra
installs ``aiokafka[lz4]``).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import faust
from faust.web import Request, Response, View

from examples.orders.engine import ShopTopics

log = logging.getLogger("orders.service")

HUB = os.environ.get("ORDERS_HUB", "orders")
TOPICS = ShopTopics.of(HUB)
PAY_WITHIN_S = float(os.environ.get("ORDERS_PAY_WITHIN_S", "5"))

app = faust.App(
    f"{HUB}-service",
    broker=f"kafka://{os.environ.get('DURABLE_KAFKA_BOOTSTRAP', '127.0.0.1:9092')}",
    store="memory://",
    datadir=os.environ.get("ORDERS_DATADIR", f"{HUB}-service-data"),
    topic_partitions=1,
    web_host="127.0.0.1",
    web_bind="127.0.0.1",
    producer_acks=-1,
)
orders_topic = app.topic(TOPICS.orders, key_type=bytes, value_serializer="json")
payments_topic = app.topic(TOPICS.payments, key_type=bytes, value_serializer="json")
results_topic = app.topic(TOPICS.results, key_type=bytes, value_serializer="json")
results = app.Table("order-results", partitions=1, key_type=bytes, default=None)


@app.agent(results_topic, concurrency=1)
async def fold(stream: Any) -> None:
    """Each ended order (Durable Functions status JSON) into the table, keyed by instance id."""
    async for event in stream.events():
        try:
            status = event.value
            output = status.get("output") or {}
            results[event.key] = {"runtimeStatus": status["runtimeStatus"], **output}
            log.info("result %s: %s", event.key.decode(), results[event.key])
        except Exception:  # noqa: BLE001 - faust would ack and skip silently; say which record
            log.exception("could not fold result at %s[%s]@%s", event.message.topic, event.message.partition,
                          event.message.offset)


@app.page("/orders/")
class Orders(View):
    """GET: the folded results; POST: place an order (publishes OrderPlaced)."""

    async def get(self, request: Request) -> Response:
        return self.json({key.decode(): value for key, value in results.items()})

    async def post(self, request: Request) -> Response:
        order = await request.json()
        placed = {"type": "OrderPlaced", "order_id": int(order["order_id"]), "sku": str(order["sku"]),
                  "qty": int(order["qty"]), "pay_within_s": float(order.get("pay_within_s", PAY_WITHIN_S))}
        sent = await orders_topic.send(key=str(placed["order_id"]).encode(), value=placed)
        await sent  # the broker has it before the caller hears "accepted"
        return self.json(placed)


@app.page("/payments/")
class Payments(View):
    """POST: record a payment (publishes PaymentReceived)."""

    async def post(self, request: Request) -> Response:
        body = await request.json()
        paid = {"type": "PaymentReceived", "order_id": int(body["order_id"]), "amount": float(body["amount"])}
        sent = await payments_topic.send(key=str(paid["order_id"]).encode(), value=paid)
        await sent
        return self.json(paid)


if __name__ == "__main__":
    app.main()
