"""Instance id rules, checked before anything is written to Kafka.

An instance id is a Kafka key and part of record ids (``<instance>/<execution>/<index>``), and
entity ids share the key space as ``@name@key``. The rules are Durable Functions' own, so ids
that work there work here: 1-100 characters, none of ``/ \\ # ?``, no control characters, and
no leading ``@`` (reserved for entities). A rejected id names the rule it broke.
"""

from __future__ import annotations

import re
import unicodedata

from durable_kafka.errors import InvalidInstanceIdError

MAX_INSTANCE_ID_LENGTH = 100
RESERVED_CHARACTERS = frozenset("/\\#?")
#: every character the loop below could reject: the reserved ones and the control characters
#: (Unicode category Cc is exactly U+0000-U+001F and U+007F-U+009F); an id without any skips it
_SUSPECT = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")


def validate_instance_id(instance_id: object) -> str:
    """Return ``instance_id`` unchanged if it follows the id rules, else raise.

    Raises InvalidInstanceIdError whose message says which rule was broken and where.
    """
    if not isinstance(instance_id, str):
        raise InvalidInstanceIdError(
            f"instance id must be a str, got {type(instance_id).__name__}: {instance_id!r}"
        )
    if not instance_id:
        raise InvalidInstanceIdError("instance id must not be empty")
    if len(instance_id) > MAX_INSTANCE_ID_LENGTH:
        raise InvalidInstanceIdError(
            f"instance id is {len(instance_id)} characters long; "
            f"the maximum is {MAX_INSTANCE_ID_LENGTH}: {instance_id[:20]!r}..."
        )
    if instance_id.startswith("@"):
        raise InvalidInstanceIdError(
            f"instance id {instance_id!r} starts with '@', which is reserved for entity ids"
        )
    if _SUSPECT.search(instance_id) is None:  # the common case: no character to look at closer
        return instance_id
    for position, char in enumerate(instance_id):
        if char in RESERVED_CHARACTERS:
            raise InvalidInstanceIdError(
                f"instance id {instance_id!r} contains the reserved character {char!r} "
                f"at position {position}; '/', '\\', '#' and '?' are not allowed"
            )
        if unicodedata.category(char) == "Cc":
            raise InvalidInstanceIdError(
                f"instance id {instance_id!r} contains the control character "
                f"U+{ord(char):04X} at position {position}"
            )
    return instance_id
