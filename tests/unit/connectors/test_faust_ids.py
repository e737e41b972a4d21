"""The faust helpers derive every id from the event's source position, and only from it."""

from __future__ import annotations

import sys
import uuid
from types import SimpleNamespace

import pytest

from durable_kafka.errors import InvalidArgumentError
from durable_kafka.faust import (
    EventPosition,
    derived_instance_id,
    idempotency_key,
    message_id,
    position_of,
)


def _event(topic: str = "shop.orders", partition: int = 2, offset: int = 41) -> SimpleNamespace:
    """What the helpers read of a faust Event: ``event.message.topic/partition/offset``."""
    return SimpleNamespace(message=SimpleNamespace(topic=topic, partition=partition, offset=offset),
                           value={"order_id": 7})


def test_key_is_the_position() -> None:
    assert idempotency_key(_event()) == "shop.orders|2|41"
    assert position_of(_event()) == EventPosition("shop.orders", 2, 41)
    assert idempotency_key(EventPosition("t", 0, 0)) == "t|0|0"


def test_redelivery_gives_the_same_ids() -> None:
    first, again = _event(), _event()  # two deliveries of one record are distinct objects
    assert message_id(first, "start", "order-7") == message_id(again, "start", "order-7")
    assert derived_instance_id(first, "order") == derived_instance_id(again, "order")
    uuid.UUID(message_id(first, "start", "order-7"))  # a UUID, like the client's ids


@pytest.mark.parametrize("other", [_event(offset=42), _event(partition=3), _event(topic="shop.payments")])
def test_another_record_gives_other_ids(other: SimpleNamespace) -> None:
    assert message_id(other, "start", "order-7") != message_id(_event(), "start", "order-7")
    assert derived_instance_id(other, "order") != derived_instance_id(_event(), "order")


def test_effects_of_one_event_are_distinct() -> None:
    ev = _event()
    ids = {message_id(ev, "start", "order-7"), message_id(ev, "raise:paid", "order-7"),
           message_id(ev, "raise:paid", "order-8"), message_id(ev, "signal:reserve", "@stock@sku-1")}
    assert len(ids) == 4


def test_derived_instance_id_shape() -> None:
    iid = derived_instance_id(_event(), "order")
    assert iid.startswith("order-") and len(iid) == len("order-") + 32


@pytest.mark.parametrize("bad", [object(), SimpleNamespace(message=SimpleNamespace(topic="", partition=0, offset=0)),
                                 SimpleNamespace(message=SimpleNamespace(topic="t", partition=-1, offset=0)),
                                 SimpleNamespace(message=SimpleNamespace(topic="t", partition=0, offset=None))])
def test_not_an_event_is_a_typed_error(bad: object) -> None:
    with pytest.raises(InvalidArgumentError):
        idempotency_key(bad)  # type: ignore[arg-type]


def test_does_not_shadow_or_need_faust() -> None:
    import durable_kafka.connectors.faust as helpers
    import durable_kafka.faust as reexport

    assert reexport.FaustEngine is helpers.FaustEngine
    real = sys.modules.get("faust")
    assert real is None or not real.__name__.startswith("durable_kafka")
