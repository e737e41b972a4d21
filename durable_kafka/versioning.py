"""Orchestration versioning: which instances a worker runs during a rolling deploy.

The names and the rules are durabletask's (``durabletask.worker``): a worker configured with
``Worker.use_versioning(VersioningOptions(...))`` compares each instance's version (recorded in
its ExecutionStarted) with its own ``version``:

* ``VersionMatchStrategy.NONE``: no comparison, every instance runs;
* ``STRICT``: only instances of exactly the worker's version run;
* ``CURRENT_OR_OLDER``: instances of the worker's version or older run.

Versions compare as PEP 440 versions when both parse (``"1.10" > "1.9"``), else as strings; no
version is older than any version. An instance the worker does not accept is, with
``VersionFailureStrategy.FAIL``, ended FAILED (``error_type`` ``"VersionMismatch"``); with
``REJECT`` left untouched until a worker that accepts it owns its partition (docs/VERSIONING.md
says how that works on Kafka). Pure functions only: no Kafka, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from packaging.version import InvalidVersion, Version

from durable_kafka.errors import ConfigurationError
from durable_kafka.streams.events import FailureDetails

__all__ = [
    "VERSION_MISMATCH",
    "VersionFailureStrategy",
    "VersionMatchStrategy",
    "VersioningOptions",
    "compare_versions",
    "version_failure",
]

#: ``FailureDetails.error_type`` of an instance ended because its version was not accepted
VERSION_MISMATCH = "VersionMismatch"


class VersionMatchStrategy(Enum):
    """How a worker compares an instance's version with its own."""

    NONE = 1
    STRICT = 2
    CURRENT_OR_OLDER = 3


class VersionFailureStrategy(Enum):
    """What a worker does with an instance whose version it does not accept."""

    REJECT = 1  #: leave it untouched (not failed, not lost) for a worker that accepts it
    FAIL = 2  #: end it FAILED with error_type "VersionMismatch"


@dataclass(init=False)
class VersioningOptions:
    """``version``: this worker's orchestration version; ``default_version``: the version given to
    sub-orchestrations started without one; the strategies as above (None: NONE / REJECT)."""

    version: str | None
    default_version: str | None
    match_strategy: VersionMatchStrategy | None
    failure_strategy: VersionFailureStrategy | None

    def __init__(self, version: str | None = None, default_version: str | None = None,
                 match_strategy: VersionMatchStrategy | None = None,
                 failure_strategy: VersionFailureStrategy | None = None) -> None:
        for what, value in (("version", version), ("default_version", default_version)):
            if value is not None and not isinstance(value, str):
                raise ConfigurationError(f"VersioningOptions.{what} must be a str or None, got {value!r}")
        if match_strategy is not None and not isinstance(match_strategy, VersionMatchStrategy):
            raise ConfigurationError(f"match_strategy must be a VersionMatchStrategy, got {match_strategy!r}")
        if failure_strategy is not None and not isinstance(failure_strategy, VersionFailureStrategy):
            raise ConfigurationError(f"failure_strategy must be a VersionFailureStrategy, got {failure_strategy!r}")
        self.version = version
        self.default_version = default_version
        self.match_strategy = match_strategy
        self.failure_strategy = failure_strategy

    @property
    def rejects(self) -> bool:
        """True when a mismatch leaves the instance for another worker (the default)."""
        return self.failure_strategy in (None, VersionFailureStrategy.REJECT)


def compare_versions(source: str | None, worker: str | None) -> int:
    """-1, 0 or 1 as ``source`` is older than, equal to or newer than ``worker`` (durabletask's rule)."""
    if not source and not worker:
        return 0
    if not source:
        return -1
    if not worker:
        return 1
    try:
        a, b = Version(source), Version(worker)
        return (a > b) - (a < b)
    except InvalidVersion:
        return (source > worker) - (source < worker)


def version_failure(options: VersioningOptions | None, version: str | None) -> FailureDetails | None:
    """Why a worker with ``options`` does not accept an instance of ``version`` (None: it does)."""
    if options is None or options.match_strategy in (None, VersionMatchStrategy.NONE):
        return None
    cmp = compare_versions(version, options.version)
    if options.match_strategy == VersionMatchStrategy.STRICT and cmp != 0:
        return FailureDetails(f"The orchestration version '{version}' does not match the worker version "
                              f"'{options.version}'.", VERSION_MISMATCH)
    if options.match_strategy == VersionMatchStrategy.CURRENT_OR_OLDER and cmp > 0:
        return FailureDetails(f"The orchestration version '{version}' is greater than the worker version "
                              f"'{options.version}'.", VERSION_MISMATCH)
    return None
