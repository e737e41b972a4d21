"""The instance id rules: each rejection names the rule, valid ids pass through unchanged."""

from __future__ import annotations

import pytest

from durable_kafka.errors import ClientError, InvalidInstanceIdError
from durable_kafka.streams.ids import MAX_INSTANCE_ID_LENGTH, validate_instance_id


@pytest.mark.parametrize(
    "instance_id",
    ["a", "order-42", "x" * MAX_INSTANCE_ID_LENGTH, "with space", "ünïcødé", "a@b", "3f2a9c"],
)
def test_valid_ids_are_returned_unchanged(instance_id: str) -> None:
    assert validate_instance_id(instance_id) == instance_id


@pytest.mark.parametrize(
    ("instance_id", "fragment"),
    [
        ("", "empty"),
        ("x" * (MAX_INSTANCE_ID_LENGTH + 1), "maximum is 100"),
        ("@counter@1", "reserved for entity"),
        ("a/b", "'/'"),
        ("a\\b", "'\\\\'"),
        ("a#b", "'#'"),
        ("a?b", "'?'"),
        ("a\nb", "U+000A"),
        ("a\x00b", "U+0000"),
        ("a\x7fb", "U+007F"),
        ("tab\there", "control character"),
    ],
)
def test_invalid_ids_name_the_broken_rule(instance_id: str, fragment: str) -> None:
    with pytest.raises(InvalidInstanceIdError) as info:
        validate_instance_id(instance_id)
    assert fragment in str(info.value)


@pytest.mark.parametrize("value", [None, 42, b"bytes", ["a"]])
def test_non_string_ids_are_rejected(value: object) -> None:
    with pytest.raises(InvalidInstanceIdError, match="must be a str"):
        validate_instance_id(value)


def test_error_is_a_client_error_and_a_value_error() -> None:
    with pytest.raises(ClientError):
        validate_instance_id("a/b")
    with pytest.raises(ValueError):
        validate_instance_id("a/b")


def test_the_quick_check_rejects_exactly_what_the_rules_do() -> None:
    """The regex that lets ordinary ids skip the per-character loop misses no character it rejects."""
    import sys
    import unicodedata

    from durable_kafka.streams.ids import RESERVED_CHARACTERS, _SUSPECT

    for code in range(sys.maxunicode + 1):
        char = chr(code)
        rejected = char in RESERVED_CHARACTERS or unicodedata.category(char) == "Cc"
        assert (_SUSPECT.search(char) is not None) == rejected, f"U+{code:04X}"
