"""Where an activity request goes: its activity's own topic, created before the first request.

The orchestration step names the topic (``<hub>.activity.<name>``, a pure function of the
name, see :func:`durable_kafka.streams.topics.activity_topic`); this module makes sure the
topic exists before the transaction writes to it (a produce to a missing topic would stall the
transaction until it times out) and says, once a minute per activity, when no live worker
hosts an activity whose requests are waiting. docs/ROUTING.md explains the whole design.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException

from durable_kafka.errors import KafkaAuthorizationError
from durable_kafka.streams.events import ActivityRequest

__all__ = ["ActivityRouter", "HostLookup", "hub_set_mismatch"]

log = logging.getLogger(__name__)

#: seconds between two "no live host" lines for the same activity
UNHOSTED_LOG_INTERVAL = 60.0


class HostLookup(Protocol):
    def hosts_of_activity(self, name: str) -> list[str]: ...


class ActivityRouter:
    """Ensures request topics exist and reports activities that have no live host.

    ``ensure_topics(names)`` creates the topics of activity names (admin call, outside any
    transaction); it is called only for names not seen before by this process, so the steady
    state costs a set lookup. ``hosts`` is the registration view (None: no reporting).
    """

    def __init__(self, hub: str, ensure_topics: Callable[[list[str]], Any], hosts: HostLookup | None = None,
                 *, clock: Callable[[], float] = time.monotonic) -> None:
        self.hub = hub
        self._ensure_topics = ensure_topics
        self._hosts = hosts
        self._known: set[str] = set()
        self._lock = threading.Lock()
        self._last_warned: dict[str, float] = {}
        self._hosted_until: dict[str, float] = {}
        self._clock = clock

    def prepare(self, records: Iterable[tuple[str, Any]]) -> None:
        """Before a transaction writes ``records`` (topic, value): their activity topics exist.

        A failed creation raises a ``KafkaException`` before the transaction writes anything:
        a transport error, which the runtime aborts and retries with back-off (the input is
        never dead-lettered for it), or an authorization error, which stops the processor with
        ``KafkaAuthorizationError``. No request is written to a missing topic.
        """
        names = sorted({v.name for _t, v in records if isinstance(v, ActivityRequest)})
        if not names:
            return
        with self._lock:
            new = [n for n in names if n not in self._known]
        if new:
            try:
                self._ensure_topics(new)
            except KafkaAuthorizationError as exc:  # the processor stops and says so: a retry cannot help
                raise KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, str(exc))) from exc
            except Exception as exc:  # a Kafka error the runtime retries (abort, back off), never a dead letter
                raise KafkaException(KafkaError(
                    KafkaError._TRANSPORT, f"creating the request topics of {', '.join(new)} failed: {exc}")) from exc
            with self._lock:
                self._known.update(new)
        for name in names:
            self._report_if_unhosted(name)

    def _report_if_unhosted(self, name: str) -> None:
        if self._hosts is None:
            return
        now = self._clock()
        if self._hosted_until.get(name, 0.0) > now:  # a host was seen within the last second
            return
        if self._hosts.hosts_of_activity(name):
            self._hosted_until[name] = now + 1.0
            return
        last = self._last_warned.get(name)
        if last is not None and now - last < UNHOSTED_LOG_INTERVAL:
            return
        self._last_warned[name] = now
        log.warning("no live worker of hub %s hosts activity %r: its requests wait on their topic and run when "
                    "a worker that hosts it starts", self.hub, name)


def hub_set_mismatch(kind: str, mine: Iterable[str], others: Mapping[str, Iterable[str]]) -> str | None:
    """Why ``mine`` cannot share a hub with the ``others`` workers' sets of ``kind``, or None.

    Orchestrations and entities live on the processor partitions that own their ids, so every
    worker that runs that processor must be able to run every one of them. Two sets where one
    contains the other are a rolling deploy adding or removing names (allowed; the caller logs
    it); sets where each side has names the other lacks are two services sharing a processor,
    which would fail instances depending on which worker owns their partition.
    """
    own = set(mine)
    for worker_id, theirs in sorted(others.items()):
        other = set(theirs)
        if not other or not own:
            continue
        if own - other and other - own:
            return (f"this worker's {kind} ({', '.join(sorted(own))}) and those of live worker {worker_id} "
                    f"({', '.join(sorted(other))}) differ both ways: every worker that runs the {kind} of a hub "
                    f"must host the same set (only {kind} work is spread by partition, not routed by name). "
                    f"Give the other service its own hub, or host all of them on both (docs/ROUTING.md)")
    return None
