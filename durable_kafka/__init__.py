"""durable-kafka: Durable Functions for Python, where Kafka is the database.

The programming model mirrors the Durable Task SDK for Python (``durabletask``): orchestrators
are generator functions over an :class:`OrchestrationContext`, activities are plain (or async)
functions, a :class:`Worker` hosts them and a :class:`Client` starts and manages instances.
"""

from durable_kafka import errors, task
from durable_kafka.errors import (
    DurableKafkaError,
    InstanceAlreadyExistsError,
    InstanceNotFailedError,
    InstanceNotFoundError,
    InvalidInstanceIdError,
    NonDeterminismError,
    OrchestrationFailedError,
    TaskFailedError,
)
from durable_kafka.streams.events import FailureDetails
from durable_kafka.task import (
    ActivityContext,
    OrchestrationContext,
    RetryPolicy,
    get_name,
    when_all,
    when_any,
)
from durable_kafka.client import (
    Client,
    OrchestrationQuery,
    OrchestrationState,
    OrchestrationStatus,
    PurgeInstancesResult,
)
from durable_kafka._client_async import AsyncClient
from durable_kafka.worker import Worker
from durable_kafka.versioning import VersionFailureStrategy, VersioningOptions, VersionMatchStrategy
from durable_kafka._work_items import (
    ActivityWorkItemFilter,
    EntityWorkItemFilter,
    OrchestrationWorkItemFilter,
    WorkItemFilters,
)
from durable_kafka.entities import DurableEntity, EntityContext, EntityInstanceId
from durable_kafka._client_entities import CleanEntityStorageResult, EntityMetadata, EntityQuery
from durable_kafka import triggers
from durable_kafka import payload
from durable_kafka.payload import FileSystemPayloadStore, KafkaPayloadStore, LargePayloadStorageOptions, PayloadStore

__all__ = [
    "ActivityContext",
    "ActivityWorkItemFilter",
    "AsyncClient",
    "CleanEntityStorageResult",
    "Client",
    "DurableEntity",
    "DurableKafkaError",
    "EntityContext",
    "EntityInstanceId",
    "EntityMetadata",
    "EntityQuery",
    "EntityWorkItemFilter",
    "FailureDetails",
    "FileSystemPayloadStore",
    "InstanceAlreadyExistsError",
    "InstanceNotFailedError",
    "InstanceNotFoundError",
    "InvalidInstanceIdError",
    "KafkaPayloadStore",
    "LargePayloadStorageOptions",
    "NonDeterminismError",
    "OrchestrationContext",
    "OrchestrationFailedError",
    "OrchestrationQuery",
    "OrchestrationState",
    "OrchestrationStatus",
    "OrchestrationWorkItemFilter",
    "PayloadStore",
    "PurgeInstancesResult",
    "RetryPolicy",
    "TaskFailedError",
    "VersionFailureStrategy",
    "VersionMatchStrategy",
    "VersioningOptions",
    "WorkItemFilters",
    "Worker",
    "errors",
    "get_name",
    "payload",
    "task",
    "triggers",
    "when_all",
    "when_any",
]
