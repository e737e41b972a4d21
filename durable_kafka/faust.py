"""``durable_kafka.faust``: the faust-streaming helpers (:mod:`durable_kafka.connectors.faust`).

A thin re-export so users write ``from durable_kafka.faust import FaustEngine``. Absolute
imports only: this module is named ``faust`` and must not shadow the real faust package.
"""

from __future__ import annotations

from durable_kafka.connectors.faust import (
    FAUST_NS,
    EventPosition,
    FaustEngine,
    derived_instance_id,
    idempotency_key,
    message_id,
    position_of,
)

__all__ = ["FAUST_NS", "EventPosition", "FaustEngine", "derived_instance_id", "idempotency_key", "message_id",
           "position_of"]
