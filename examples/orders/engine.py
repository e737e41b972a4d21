"""The engine side of the order example: the orchestration, the stock entity, the routes.

Everything the faust service sees of it is three topics: it publishes ``OrderPlaced`` to
``<hub>.shop.orders`` and ``PaymentReceived`` to ``<hub>.shop.payments``, and reads results
from ``<hub>.shop.order-results``. The routes are declared here, next to the orchestration they
drive; they could equally live in a TOML file (docs/TRIGGERS.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from durable_kafka import OrchestrationContext, Worker, triggers, when_any
from durable_kafka.entities import DurableEntity, EntityInstanceId


@dataclass(frozen=True)
class ShopTopics:
    """The service's own topics (hub-prefixed here only so runs and tests do not collide)."""

    orders: str
    payments: str
    results: str

    @classmethod
    def of(cls, hub: str) -> ShopTopics:
        return cls(f"{hub}.shop.orders", f"{hub}.shop.payments", f"{hub}.shop.order-results")

    def all(self) -> list[str]:
        return [self.orders, self.payments, self.results]


class Stock(DurableEntity):
    """Units on hand of one SKU (entity ``@stock@<sku>``); one operation at a time, so no oversell."""

    def restock(self, qty: int) -> int:
        on_hand = self.get_state(int, 0) + qty
        self.set_state(on_hand)
        return on_hand

    def reserve(self, qty: int) -> bool:
        on_hand = self.get_state(int, 0)
        if qty > on_hand:
            return False
        self.set_state(on_hand - qty)
        return True

    def release(self, qty: int) -> None:
        self.set_state(self.get_state(int, 0) + qty)


def process_order(ctx: OrchestrationContext, order: dict[str, Any]) -> Any:
    """Reserve stock, wait for the payment until ``pay_within_s``, give the stock back if it never comes."""
    stock = EntityInstanceId("stock", order["sku"])
    result = {"order_id": order["order_id"], "sku": order["sku"], "qty": order["qty"]}
    reserved = yield ctx.call_entity(stock, "reserve", order["qty"])
    if not reserved:
        return {**result, "status": "rejected", "reason": "out of stock"}
    payment = ctx.wait_for_external_event("payment")
    deadline = ctx.create_timer(timedelta(seconds=float(order.get("pay_within_s", 5))))
    winner = yield when_any([payment, deadline])
    if winner is payment:
        deadline.cancel()
        return {**result, "status": "paid", "amount": payment.get_result().get("amount")}
    ctx.signal_entity(stock, "release", order["qty"])
    return {**result, "status": "expired", "reason": "no payment in time"}


def make_worker(bootstrap: str, hub: str, state_dir: str) -> Worker:
    """A worker with the orchestration, the entity, two trigger routes and one completion route."""
    topics = ShopTopics.of(hub)
    worker = Worker(bootstrap, hub, state_dir=state_dir)
    worker.add_orchestrator(process_order)
    worker.add_entity(Stock)
    # one instance per order; a redelivered or replayed OrderPlaced finds it and is skipped
    worker.add_trigger(triggers.Start(topics.orders, process_order, instance_id="order-{value.order_id}",
                                      input="{value}"))
    # by business key: a payment that arrives before its order is kept until the instance starts
    worker.add_trigger(triggers.Raise(topics.payments, instance_id="order-{value.order_id}",
                                      event_name="payment", data="{value}"))
    worker.add_output(triggers.PublishCompletion(topics.results, orchestrators=[process_order]))
    return worker
