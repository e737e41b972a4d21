"""Kafka murmur2 partitioning in pure Python must match the Java client bit for bit."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner

from durable_kafka.errors import ConfigurationError
from durable_kafka.streams.config import murmur2, partition_for

# Signed 32-bit results of Java's org.apache.kafka.common.utils.Utils.murmur2 (Kafka's own
# UtilsTest and the librdkafka test vectors).
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
    b"1": -1993445489,
    b"12": 126087238,
    b"123": -267702483,
    b"1234": -1614185708,
    b"12345": -1188365604,
    b"kafka": -798503068,
    # computed with kafka-clients 4.1.1 Utils.murmur2 on the project machine
    b"": 275646681,
    b"instance-1": 119242039,
    "order-ü-42".encode(): -2073482569,
}


@pytest.mark.parametrize(("key", "expected"), sorted(JAVA_MURMUR2.items()))
def test_murmur2_matches_java(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected


@pytest.mark.parametrize(("key", "expected"), sorted(JAVA_MURMUR2.items()))
def test_partition_is_java_to_positive_modulo(key: bytes, expected: int) -> None:
    for partitions in (1, 3, 12, 100):
        assert partition_for(key, partitions) == (expected & 0x7FFFFFFF) % partitions


def test_known_partitions() -> None:
    # -973932308 & 0x7fffffff = 1173551340; % 12 = 0, % 7 = 4
    assert partition_for(b"21", 12) == 1173551340 % 12
    assert partition_for(b"21", 7) == 1173551340 % 7
    assert partition_for(b"", 12) == 9  # Java: Utils.toPositive(Utils.murmur2(new byte[0])) % 12
    assert partition_for(b"instance-1", 12) == 7


def test_agrees_with_aiokafka_default_partitioner() -> None:
    """aiokafka (faust's transport) is an independent implementation of the same hash."""
    rng = random.Random(1234)
    partitions = list(range(12))
    for _ in range(2000):
        key = rng.randbytes(rng.randrange(0, 40))
        assert partition_for(key, 12) == DefaultPartitioner()(key, partitions, partitions)


def test_utf8_instance_ids() -> None:
    key = "order-ü-42".encode()
    assert 0 <= partition_for(key, 5) < 5
    assert partition_for(key, 5) == DefaultPartitioner()(key, list(range(5)), list(range(5)))


@pytest.mark.parametrize("bad", [0, -1])
def test_partition_count_must_be_positive(bad: int) -> None:
    with pytest.raises(ConfigurationError, match=str(bad)):
        partition_for(b"x", bad)
