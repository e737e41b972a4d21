"""Payloads larger than a Kafka record (durabletask's ``durabletask.payload``; docs/PAYLOADS.md).

``Worker(payload_store=...)`` and ``Client(payload_store=...)`` (and ``AsyncClient``) take a
:class:`PayloadStore`. With none given, the hub's Kafka-native store (:class:`KafkaPayloadStore`,
chunks in ``<hub>.payloads``) is used, so a 50 MB input works with no configuration at all;
``payload_store=False`` switches large payloads off (anything that cannot fit one record is then
refused with ``PayloadTooLargeError``). Every worker and client of a hub must use the same store.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from durable_kafka.errors import ConfigurationError, PayloadUnavailableError
from durable_kafka.streams.payload_topic import KafkaPayloadStore
from durable_kafka.streams.payloads import FileSystemPayloadStore, LargePayloadStorageOptions, PayloadCodec, PayloadStore

__all__ = ["FileSystemPayloadStore", "KafkaPayloadStore", "LargePayloadStorageOptions", "PayloadStore",
           "PayloadUnavailableError", "payload_codec"]


def payload_codec(store: PayloadStore | Literal[False] | None, bootstrap: str, hub: str,
                  kafka_config: Mapping[str, Any] | None) -> PayloadCodec:
    """The codec a worker or client uses for ``payload_store=store`` (see the module docstring)."""
    if store is False:
        return PayloadCodec(None)
    if store is None:
        return PayloadCodec(KafkaPayloadStore(bootstrap, hub, kafka_config=kafka_config), owns_store=True)
    if not isinstance(store, PayloadStore):
        raise ConfigurationError(f"payload_store must be a PayloadStore, None or False, got {store!r}")
    return PayloadCodec(store)
