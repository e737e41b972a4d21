"""Which transaction failures a retry can cure, and the time budget of one transaction."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException

from durable_kafka.errors import PayloadTooLargeError
from durable_kafka.processors.runtime import Transaction, _ReplaceProducer, is_incurable


def test_record_errors_and_bugs_are_incurable_broker_errors_are_not() -> None:
    assert is_incurable(KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)))
    assert is_incurable(KafkaException(KafkaError(KafkaError._FAIL, "Failed to produce: Message size too large")))
    assert is_incurable(PayloadTooLargeError("x", 2, 1))
    assert is_incurable(TypeError("a bug met by one record"))
    assert not is_incurable(KafkaException(KafkaError(KafkaError._TRANSPORT)))
    assert not is_incurable(KafkaException(KafkaError(KafkaError.NOT_COORDINATOR)))
    assert not is_incurable(KafkaException(KafkaError(KafkaError._FENCED, fatal=True)))
    assert not is_incurable(_ReplaceProducer("commit timed out"))


class _NoProducer:
    def produce(self, *args, **kwargs) -> None:  # pragma: no cover - never reached in these tests
        raise AssertionError("a record that does not fit must not reach the producer")


class _NoStores:
    def get(self, partition: int):
        return None


def test_a_transaction_refuses_records_that_cannot_fit() -> None:
    import pytest

    txn = Transaction(_NoProducer(), _NoStores(), changelog_topic="h.changelog")
    with pytest.raises(PayloadTooLargeError, match="h.changelog"):
        txn.put(0, b"k", b"v" * 2_000_000)
    with pytest.raises(PayloadTooLargeError, match="h.status"):
        txn.produce("h.status", b"k", b"v" * 2_000_000)
    assert txn.changes == {} and txn.produced == 0


def test_over_budget_follows_the_deadline() -> None:
    import time

    assert not Transaction(_NoProducer(), _NoStores()).over_budget()  # no deadline: never
    assert Transaction(_NoProducer(), _NoStores(), deadline=time.monotonic() - 1).over_budget()
    assert not Transaction(_NoProducer(), _NoStores(), deadline=time.monotonic() + 60).over_budget()


class _SlowHandler:
    def __init__(self, seconds_per_record: float) -> None:
        self.cost = seconds_per_record
        self.calls: list[int] = []

    def process(self, txn, records) -> None:
        import time

        self.calls.append(len(records))
        time.sleep(self.cost * len(records))


def _processor_with(handler):
    from durable_kafka.processors.runtime import Processor

    proc = Processor.__new__(Processor)  # the slicing logic only: no Kafka clients
    proc.handler = handler
    proc._per_record_s = 0.1
    return proc


def test_a_slow_batch_stops_at_its_budget_and_keeps_a_prefix() -> None:
    import time

    handler = _SlowHandler(0.05)  # 40 records: 2 s of work against a 0.3 s budget
    proc = _processor_with(handler)
    txn = Transaction(_NoProducer(), _NoStores(), deadline=time.monotonic() + 0.3)
    done = proc._process(txn, list(range(40)), True)
    assert 1 <= done < 40 and sum(handler.calls) == done


def test_a_fast_batch_goes_to_the_handler_whole_once_the_cost_is_known() -> None:
    import time

    handler = _SlowHandler(0.0)
    proc = _processor_with(handler)
    proc._per_record_s = 1e-5
    txn = Transaction(_NoProducer(), _NoStores(), deadline=time.monotonic() + 2.5)
    assert proc._process(txn, list(range(500)), True) == 500
    assert handler.calls == [500]  # one call: one executor episode per instance per batch


def test_a_fatal_consumer_error_stops_the_processor_instead_of_looking_idle() -> None:
    import pytest
    from confluent_kafka import KafkaError

    from durable_kafka.errors import ConsumerFatalError
    from durable_kafka.processors.runtime import Processor, ProcessorConfig

    class _Msg:
        def error(self) -> KafkaError:  # as librdkafka delivers it: code _FATAL, the flag not set
            return KafkaError(KafkaError._FATAL, "Fatal error: Broker: Static consumer fenced by other consumer")

    class _Consumer:
        def poll(self, timeout: float) -> _Msg:
            return _Msg()

        def consume(self, n: int, timeout: float) -> list[_Msg]:
            return []

    proc = Processor.__new__(Processor)  # the poll logic only: no Kafka clients
    proc.consumer = _Consumer()
    proc.config = ProcessorConfig(bootstrap="x", group_id="h.g", source_topic="h.t", changelog_topic="h.c",
                                  transactional_id="h.t.w")
    proc.name = "orchestrations"
    with pytest.raises(ConsumerFatalError, match="fenced"):
        proc._poll()
