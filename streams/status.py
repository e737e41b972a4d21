"""The runtime status of an orchestration instance: one enum for engine, topics and client.

It is a ``str`` enum whose values are the names written in the Avro string fields
(``InstanceHeader``, ``InstanceStatus``, ``ExecutionCompleted``), so the schemas stay plain
strings. The codec turns the string back into a member when it decodes a record; nowhere
else does a status exist as a bare string.
"""

from __future__ import annotations

from enum import Enum


class OrchestrationStatus(str, Enum):
    """The runtime status of an orchestration instance (the names used on ``<hub>.status``)."""

    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TERMINATED = "TERMINATED"
    CONTINUED_AS_NEW = "CONTINUED_AS_NEW"
    PENDING = "PENDING"
    SUSPENDED = "SUSPENDED"

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        """Pending, running or suspended: the instance may still change (and may not be replaced)."""
        return self in ACTIVE_STATUSES

    @property
    def is_terminal(self) -> bool:
        """Completed, failed or terminated: the instance has ended for good."""
        return self in TERMINAL_STATUSES


ACTIVE_STATUSES = frozenset(
    {OrchestrationStatus.RUNNING, OrchestrationStatus.PENDING, OrchestrationStatus.SUSPENDED}
)
TERMINAL_STATUSES = frozenset(
    {OrchestrationStatus.COMPLETED, OrchestrationStatus.FAILED, OrchestrationStatus.TERMINATED}
)


def status_from_wire(text: str) -> OrchestrationStatus:
    """The member named ``text`` (the codec's decoder); ValueError for an unknown name."""
    return OrchestrationStatus(text)
